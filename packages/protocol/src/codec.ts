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
 * A top-level `data` field at least this large is encoded by `encodeValue` outside
 * msgpackr (see there). Below it msgpackr's own buffer is cheaper than a second pass.
 */
export const largeDataBytesMin = 64 * 1024;

/** msgpack's "bin 32" marker and the empty "bin 8" that stands in for the data. */
const bin32 = 0xc6;
const emptyBin8 = [0xc4, 0x00] as const;

/**
 * Encodes any value as plain msgpack, refusing anything over `bytesMax`.
 *
 * A map whose `data` field is a large byte array (a chunk on its way to a sled) is
 * encoded with `data` as its last key, as one allocation of the exact size: msgpackr
 * grows its buffer to four times what it needs and copies the bytes on each growth, so
 * a 4 MiB chunk cost a fresh 16 MiB buffer, page faults and garbage for every copy sent
 * (profiles of the write path: a sixth of the primary's CPU). The bytes are the same
 * plain msgpack any decoder reads; only the key order differs.
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

function encodeLargeData(value: unknown): Uint8Array | undefined {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return undefined;
  const data = (value as { data?: unknown }).data;
  if (!(data instanceof Uint8Array) || data.byteLength < largeDataBytesMin) return undefined;
  if (Object.getPrototypeOf(value) !== Object.prototype) return undefined;
  // The rest of the map, then `data` as an empty byte string whose two bytes end the
  // encoding: they are replaced by a bin 32 header and the bytes themselves.
  const { data: _, ...rest } = value as Record<string, unknown>;
  const head = packr.pack({ ...rest, data: emptyBytes });
  const headBytes = head.byteLength - emptyBin8.length;
  if (head[headBytes] !== emptyBin8[0] || head[headBytes + 1] !== emptyBin8[1]) return undefined;
  // Not zero-filled: every byte is written below.
  const encoded = Buffer.allocUnsafeSlow(headBytes + 5 + data.byteLength);
  encoded.set(head.subarray(0, headBytes), 0);
  const view = new DataView(encoded.buffer, encoded.byteOffset, encoded.byteLength);
  view.setUint8(headBytes, bin32);
  view.setUint32(headBytes + 1, data.byteLength);
  encoded.set(data, headBytes + 5);
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
