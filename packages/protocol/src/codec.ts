// The edge. Bytes from the bus become typed messages here, exactly once, or become a
// BallastError with a code that says why not; nothing past this module re-validates.
// zod checks every message but the write path's three, which hot-path.ts checks by hand
// (never more loosely: what it is unsure of goes to zod).
//
// msgpack is plain: no record extension, no JavaScript-only types, so any msgpack
// library can produce and read Ballast messages. Decoded binary fields alias the
// incoming buffer (msgpackr does not copy), so a handler that keeps data beyond the
// message's lifetime must copy it.

import { Packr, Unpackr } from "msgpackr";
import type { z } from "zod";
import { BallastError, ErrorCode } from "./errors.ts";
import { acceptHotPath, hotPathTypes } from "./hot-path.ts";
import { messageBytesMax } from "./limits.ts";
import { Message, type MessageType, messageSchemas } from "./messages/index.ts";

const packr = new Packr({ useRecords: false, moreTypes: false, int64AsType: "number" });
const unpackr = new Unpackr({
  useRecords: false,
  moreTypes: false,
  int64AsType: "number",
  mapsAsObjects: true,
});

/**
 * A `data` field (one byte array, or an array of them) of at least this many bytes is
 * encoded by `encodeValue` outside msgpackr (see there). Below it msgpackr's own buffer
 * is cheaper than a second pass.
 */
export const largeDataBytesMin = 64 * 1024;

/** msgpack's "bin 32" and "array 32" markers. */
const bin32 = 0xc6;
const array32 = 0xdd;
/** The empty "bin 8" and the empty fixarray that stand in for the data. */
const emptyBin8 = [0xc4, 0x00] as const;
const emptyFixArray = 0x90;

/**
 * Encodes any value as plain msgpack, refusing anything over `bytesMax`.
 *
 * A map whose `data` field holds large byte arrays (a chunk on its way to a sled) is
 * encoded with `data` as its last key, as one allocation of the exact size: msgpackr
 * grows its buffer to four times what it needs and copies the bytes on each growth, so
 * a 4 MiB chunk cost a fresh 16 MiB buffer, page faults and garbage for every copy sent
 * (profiles of the write path: a sixth of the primary's CPU). The same holds for a
 * reply's `result.data` (a sled's chunk read, a primary's `volume.read.v1` answer, whose
 * `data` is an array of byte arrays): profiles of 1 MiB reads found the garbage
 * collector at 37 to 53 % of the sled, primary and gateway. The bytes are the same
 * plain msgpack any decoder reads; only the key order differs (and bin 32 and array 32
 * headers where a shorter one would do, which msgpack allows).
 */
export function encodeValue(value: unknown, bytesMax: number = messageBytesMax): Uint8Array {
  const encoded = encodeLargeData(value) ?? packr.pack(value);
  if (encoded.byteLength > bytesMax) {
    throw new BallastError(
      ErrorCode.PayloadTooLarge,
      `cannot send a message of ${encoded.byteLength} bytes: the limit is ${bytesMax}`,
      { details: { bytes: encoded.byteLength, bytesMax } },
    );
  }
  return encoded;
}

function isPlainMap(value: unknown): value is Record<string, unknown> {
  return (
    typeof value === "object" &&
    value !== null &&
    !Array.isArray(value) &&
    Object.getPrototypeOf(value) === Object.prototype
  );
}

/** The bytes of `data` when it is one byte array or an array of them; else -1. */
function dataBytes(data: unknown): number {
  if (data instanceof Uint8Array) return data.byteLength;
  if (!Array.isArray(data)) return -1;
  let bytes = 0;
  for (const item of data) {
    if (!(item instanceof Uint8Array)) return -1;
    bytes += item.byteLength;
  }
  return bytes;
}

function encodeLargeData(value: unknown): Uint8Array | undefined {
  if (!isPlainMap(value)) return undefined;
  // The data is the map's own `data`, or its `result`'s (a reply envelope): either way
  // moved to the very end of the encoding, `result` last in the envelope.
  let data = value.data;
  let head: Record<string, unknown>;
  if (dataBytes(data) >= largeDataBytesMin) {
    const { data: _, ...rest } = value;
    head = { ...rest, data: data instanceof Uint8Array ? emptyBytes : [] };
  } else {
    const result = value.result;
    if (!isPlainMap(result)) return undefined;
    data = result.data;
    if (dataBytes(data) < largeDataBytesMin) return undefined;
    const { result: _, ...rest } = value;
    const { data: __, ...resultRest } = result;
    head = {
      ...rest,
      result: { ...resultRest, data: data instanceof Uint8Array ? emptyBytes : [] },
    };
  }
  // The rest, then `data` as an empty byte string (or empty array) whose bytes end the
  // encoding: they are replaced by a bin 32 (array 32) header and the bytes themselves.
  const packed = packr.pack(head);
  const items = data instanceof Uint8Array ? undefined : (data as Uint8Array[]);
  let headBytes: number;
  let total: number;
  if (items === undefined) {
    headBytes = packed.byteLength - emptyBin8.length;
    if (packed[headBytes] !== emptyBin8[0] || packed[headBytes + 1] !== emptyBin8[1]) {
      return undefined;
    }
    total = headBytes + 5 + (data as Uint8Array).byteLength;
  } else {
    headBytes = packed.byteLength - 1;
    if (packed[headBytes] !== emptyFixArray) return undefined;
    total = headBytes + 5 + items.length * 5 + dataBytes(items);
  }
  // Not zero-filled: every byte is written below.
  const encoded = Buffer.allocUnsafeSlow(total);
  encoded.set(packed.subarray(0, headBytes), 0);
  const view = new DataView(encoded.buffer, encoded.byteOffset, encoded.byteLength);
  let at = headBytes;
  const putBin = (bytes: Uint8Array) => {
    view.setUint8(at, bin32);
    view.setUint32(at + 1, bytes.byteLength);
    encoded.set(bytes, at + 5);
    at += 5 + bytes.byteLength;
  };
  if (items === undefined) {
    putBin(data as Uint8Array);
  } else {
    view.setUint8(at, array32);
    view.setUint32(at + 1, items.length);
    at += 5;
    for (const item of items) putBin(item);
  }
  return encoded;
}

const emptyBytes = new Uint8Array(0);

/** Decodes plain msgpack; any failure becomes MalformedMessage, never another throw. */
export function decodeValue(bytes: Uint8Array, bytesMax: number = messageBytesMax): unknown {
  if (bytes.byteLength > bytesMax) {
    throw new BallastError(
      ErrorCode.PayloadTooLarge,
      `refused a message of ${bytes.byteLength} bytes: the limit is ${bytesMax}`,
      { details: { bytes: bytes.byteLength, bytesMax } },
    );
  }
  if (bytes.byteLength === 0) {
    throw new BallastError(ErrorCode.MalformedMessage, "refused an empty message");
  }
  try {
    // unpack (not unpackMultiple) throws on trailing bytes only in some versions, so
    // the length check is explicit: one message is exactly one msgpack value.
    const values = unpackr.unpackMultiple(bytes as Buffer) as unknown[];
    if (values.length !== 1) {
      throw new Error(`expected one msgpack value, found ${values.length}`);
    }
    const value = values[0];
    if (!isPlainData(value)) {
      // msgpackr turns the reserved byte 0xc1 into a marker object rather than failing.
      throw new Error("found a reserved msgpack code");
    }
    return value;
  } catch (error) {
    throw new BallastError(
      ErrorCode.MalformedMessage,
      `refused a message that is not valid msgpack: ${(error as Error).message}`,
      { cause: error },
    );
  }
}

export function encodeMessage(message: Message, bytesMax: number = messageBytesMax): Uint8Array {
  return encodeValue(message, bytesMax);
}

export interface DecodeOptions {
  /** The message types this subject takes; others answer UnexpectedMessageType. */
  accept?: ReadonlySet<MessageType>;
  bytesMax?: number;
}

/** Bytes → a validated message, or a BallastError naming what was wrong. */
export function decodeMessage(bytes: Uint8Array, options: DecodeOptions = {}): Message {
  const value = decodeValue(bytes, options.bytesMax ?? messageBytesMax);
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new BallastError(
      ErrorCode.MalformedMessage,
      `refused a message that is not a msgpack map (found ${describe(value)})`,
    );
  }
  const type = (value as { type?: unknown }).type;
  if (typeof type !== "string") {
    throw new BallastError(
      ErrorCode.MalformedMessage,
      `refused a message without a string "type" field (found ${describe(type)})`,
    );
  }
  if (!Object.hasOwn(messageSchemas, type)) {
    throw new BallastError(
      ErrorCode.UnknownMessageType,
      `refused a message of unknown type ${JSON.stringify(type.slice(0, 80))}`,
      { details: { type: type.slice(0, 80) } },
    );
  }
  if (options.accept !== undefined && !options.accept.has(type as MessageType)) {
    throw new BallastError(
      ErrorCode.UnexpectedMessageType,
      `refused a ${type} message: this subject takes ${[...options.accept].join(", ")}`,
      { details: { type } },
    );
  }
  // The write path's messages get a cheap check of exactly what their schemas ask
  // (hot-path.ts); anything it is not sure of, zod decides and explains.
  if (hotPathTypes.has(type as MessageType)) {
    const accepted = acceptHotPath(value);
    if (accepted !== undefined) return accepted;
  }
  return parseWith(Message, value, `a ${type} message`);
}

/** Validates a decoded value against a schema; failures become InvalidMessage. */
export function parseWith<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const path = issue && issue.path.length > 0 ? issue.path.join(".") : "(root)";
    const problem = issue?.message ?? "invalid";
    throw new BallastError(ErrorCode.InvalidMessage, `refused ${what}: ${path}: ${problem}`, {
      details: { path, problem, issues: parsed.error.issues.length },
    });
  }
  return parsed.data;
}

function isPlainData(value: unknown): boolean {
  if (value === null || typeof value !== "object") return true;
  if (Array.isArray(value) || value instanceof Uint8Array) return true;
  return Object.getPrototypeOf(value) === Object.prototype;
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (value instanceof Uint8Array) return `${value.byteLength} bytes of binary`;
  return typeof value;
}
