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

/** msgpack's "bin 32", "array 32" and "map 32" markers. */
const bin32 = 0xc6;
const array32 = 0xdd;
const map32 = 0xdf;
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
  const encoded = largeParts(value)?.assemble() ?? packr.pack(value);
  checkEncodedSize(encoded.byteLength, bytesMax);
  return encoded;
}

/**
 * The least size of a byte array that `encodeLargeValueParts` hands on by reference
 * rather than copying into the run around it. A large value's data may be many small
 * arrays (a read reply to a batch of 4 KiB reads is 64 KiB or more of them): sent each
 * as a part, every one would cost a socket write request and a header buffer, more than
 * copying its bytes (a 4 KiB copy is a fraction of a microsecond).
 */
export const referencedBytesMin = 16 * 1024;

/**
 * `encodeValue`'s bytes, after `reserveBytes` bytes of room at the front (left for the
 * caller to fill), as a buffer and the large byte arrays of the value that follow it,
 * by reference: `framed` is the room and the encoding up to the first of them, and
 * `tail` the rest (the large byte arrays themselves, and between them what is not large,
 * each run in one buffer). Only byte arrays of `referencedBytesMin` or more go by
 * reference; smaller data is copied into its run. Undefined when the value has no large
 * data (the caller then encodes it its own way). The journal frames a note with large
 * data this way: its record header goes in the room, and the note's data is written to
 * disk from where it is, not copied into an encoding.
 */
export function encodeLargeValueParts(
  value: unknown,
  reserveBytes: number,
  bytesMax: number = messageBytesMax,
): { framed: Uint8Array; tail: Uint8Array[] } | undefined {
  const parts = largeParts(value);
  if (parts === undefined) return undefined;
  checkEncodedSize(parts.bytes, bytesMax);
  return parts.split(reserveBytes);
}

function checkEncodedSize(bytes: number, bytesMax: number): void {
  if (bytes > bytesMax) {
    throw new BallastError(
      ErrorCode.PayloadTooLarge,
      `cannot send a message of ${bytes} bytes: the limit is ${bytesMax}`,
      { details: { bytes, bytesMax } },
    );
  }
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

/**
 * A large value's encoding, as the parts it is assembled from: byte arrays that are
 * either msgpack the value's own bytes are copied from (the large data, by reference)
 * or encodings made here; `bytes` is their sum.
 */
class Parts {
  readonly list: Uint8Array[] = [];
  /**
   * Positions in `list` of the value's own byte arrays of referencedBytesMin or more (not
   * copies): what `split` hands on by reference.
   */
  readonly large: number[] = [];
  bytes = 0;

  push(part: Uint8Array): void {
    this.list.push(part);
    this.bytes += part.byteLength;
  }

  /** A "bin 32", "array 32" or "map 32" header. */
  header(marker: number, count: number): void {
    // Big-endian by hand: a DataView per header was one more object per byte array (a
    // read reply carries one per 4 KiB read).
    const header = new Uint8Array(5);
    header[0] = marker;
    header[1] = count >>> 24;
    header[2] = (count >>> 16) & 0xff;
    header[3] = (count >>> 8) & 0xff;
    header[4] = count & 0xff;
    this.push(header);
  }

  bin(bytes: Uint8Array): void {
    this.header(bin32, bytes.byteLength);
    if (bytes.byteLength >= referencedBytesMin) this.large.push(this.list.length);
    this.push(bytes);
  }

  /** See `encodeLargeValueParts`. */
  split(reserveBytes: number): { framed: Uint8Array; tail: Uint8Array[] } {
    const large = this.large;
    const firstLarge = large[0] ?? this.list.length;
    const framed = Buffer.allocUnsafeSlow(reserveBytes + bytesOf(this.list, 0, firstLarge));
    copyInto(framed, reserveBytes, this.list, 0, firstLarge);
    const tail: Uint8Array[] = [];
    let runStart = firstLarge;
    for (const [index, at] of large.entries()) {
      if (at > runStart) tail.push(this.run(runStart, at));
      tail.push(this.list[at]!);
      runStart = at + 1;
      if (index === large.length - 1 && runStart < this.list.length) {
        tail.push(this.run(runStart, this.list.length));
      }
    }
    return { framed, tail };
  }

  /**
   * A copy of parts [start, end) in one buffer. A short run (a bin header between two
   * large arrays) takes a slice of Node's pool rather than an ArrayBuffer of its own:
   * pooled memory is handed out once and never rewritten, so it is as stable as its own.
   */
  private run(start: number, end: number): Uint8Array {
    const bytes = bytesOf(this.list, start, end);
    const run =
      bytes < referencedBytesMin ? Buffer.allocUnsafe(bytes) : Buffer.allocUnsafeSlow(bytes);
    copyInto(run, 0, this.list, start, end);
    return run;
  }

  /** One buffer of exactly the parts (not zero-filled: all written). */
  assemble(): Uint8Array {
    const encoded = Buffer.allocUnsafeSlow(this.bytes);
    copyInto(encoded, 0, this.list, 0, this.list.length);
    return encoded;
  }
}

function bytesOf(list: readonly Uint8Array[], start: number, end: number): number {
  let bytes = 0;
  for (let index = start; index < end; index += 1) bytes += list[index]!.byteLength;
  return bytes;
}

function copyInto(
  target: Uint8Array,
  at: number,
  list: readonly Uint8Array[],
  start: number,
  end: number,
): void {
  let position = at;
  for (let index = start; index < end; index += 1) {
    target.set(list[index]!, position);
    position += list[index]!.byteLength;
  }
}

/**
 * The value's encoding as parts (`Parts`: assembled in one allocation of the exact size,
 * or split around its large byte arrays), when it carries large data; undefined
 * otherwise (msgpackr's path).
 *
 * Two shapes. (1) A map whose `data` field, or whose `result`'s (a reply envelope), holds
 * at least `largeDataBytesMin` in one byte array or an array of them: a chunk on its
 * way to a sled, a sled's chunk read, a primary's `volume.read.v1` answer. (2) Failing
 * that, byte arrays of at least `nestedDataBytesMin` anywhere within
 * `nestedDepthMax` levels of maps and arrays, together at least `largeDataBytesMin`: a
 * `volume.write.v1` (`writes[].data`) or a `replica.notes.v1` (`notes[].data`) of large
 * writes, which msgpackr encoded into a growth buffer (four times the size needed, the
 * bytes copied on each growth, and every later small message a view of that buffer).
 */
function largeParts(value: unknown): Parts | undefined {
  if (!isPlainMap(value)) return undefined;
  const parts = new Parts();
  if (!topLevelData(value, parts) && !nestedData(value, parts)) return undefined;
  return parts;
}

function topLevelData(value: Record<string, unknown>, parts: Parts): boolean {
  // The data is the map's own `data`, or its `result`'s (a reply envelope): either way
  // moved to the very end of the encoding, `result` last in the envelope.
  let data = value.data;
  let head: Record<string, unknown>;
  if (dataBytes(data) >= largeDataBytesMin) {
    const { data: _, ...rest } = value;
    head = { ...rest, data: data instanceof Uint8Array ? emptyBytes : [] };
  } else {
    const result = value.result;
    if (!isPlainMap(result)) return false;
    data = result.data;
    if (dataBytes(data) < largeDataBytesMin) return false;
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
  if (data instanceof Uint8Array) {
    const headBytes = packed.byteLength - emptyBin8.length;
    if (packed[headBytes] !== emptyBin8[0] || packed[headBytes + 1] !== emptyBin8[1]) {
      return false;
    }
    parts.push(packed.subarray(0, headBytes));
    parts.bin(data);
    return true;
  }
  const items = data as Uint8Array[];
  const headBytes = packed.byteLength - 1;
  if (packed[headBytes] !== emptyFixArray) return false;
  parts.push(packed.subarray(0, headBytes));
  parts.header(array32, items.length);
  for (const item of items) parts.bin(item);
  return true;
}

/** A nested byte array of at least this many bytes is copied once, into the encoding. */
export const nestedDataBytesMin = 16 * 1024;

/** How deep `nestedData` looks: the message, an array in it, a map in that, its bytes. */
const nestedDepthMax = 3;

/** The bytes of byte arrays of `nestedDataBytesMin` or more within `depth` levels. */
function nestedBytes(value: unknown, depth: number): number {
  if (value instanceof Uint8Array) {
    return value.byteLength >= nestedDataBytesMin ? value.byteLength : 0;
  }
  if (depth === 0) return 0;
  let bytes = 0;
  if (Array.isArray(value)) {
    for (const item of value) bytes += nestedBytes(item, depth - 1);
  } else if (isPlainMap(value)) {
    // for-in, not Object.keys: this walks every message encoded (each note of a notes
    // message, each write of a request), and an array of keys per map was garbage.
    // A plain map's prototype is Object.prototype, which has no enumerable keys.
    for (const key in value) bytes += nestedBytes(value[key], depth - 1);
  }
  return bytes;
}

function nestedData(value: Record<string, unknown>, parts: Parts): boolean {
  if (nestedBytes(value, nestedDepthMax) < largeDataBytesMin) return false;
  encodeNested(value, nestedDepthMax, parts);
  return true;
}

/**
 * Encodes `value` into `parts`: large byte arrays by reference behind a bin 32 header,
 * the maps and arrays that lead to them by hand (map 32, array 32; in a map, the keys
 * without large data first, packed together by msgpackr), everything else by msgpackr.
 */
function encodeNested(value: unknown, depth: number, parts: Parts): void {
  if (value instanceof Uint8Array && value.byteLength >= nestedDataBytesMin) {
    parts.bin(value);
    return;
  }
  if (depth === 0 || nestedBytes(value, depth) === 0) {
    parts.push(packr.pack(value));
    return;
  }
  if (Array.isArray(value)) {
    parts.header(array32, value.length);
    for (const item of value) encodeNested(item, depth - 1, parts);
    return;
  }
  const map = value as Record<string, unknown>;
  const keys = Object.keys(map);
  const plain: Record<string, unknown> = {};
  const nested: string[] = [];
  for (const key of keys) {
    if (nestedBytes(map[key], depth - 1) > 0) nested.push(key);
    else plain[key] = map[key];
  }
  parts.header(map32, keys.length);
  if (nested.length < keys.length) parts.push(withoutMapHeader(packr.pack(plain)));
  for (const key of nested) {
    parts.push(packr.pack(key));
    encodeNested(map[key], depth - 1, parts);
  }
}

/** A packed map's entries, without the fixmap, map 16 or map 32 header before them. */
function withoutMapHeader(packed: Uint8Array): Uint8Array {
  const marker = packed[0]!;
  if (marker >= 0x80 && marker <= 0x8f) return packed.subarray(1);
  if (marker === 0xde) return packed.subarray(3);
  if (marker === 0xdf) return packed.subarray(5);
  throw new Error(`msgpackr packed a map as 0x${marker.toString(16)}`);
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
      // msgpackr turns the timestamp extension (-1) into a Date, and the reserved byte
      // 0xc1 into a marker object, rather than failing; a message holds neither.
      throw new Error(
        value instanceof Date
          ? "found a msgpack timestamp (extension type -1), which no message holds"
          : "found the reserved msgpack code 0xc1",
      );
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

/**
 * `encodeMessage`'s bytes as parts to send one after another: for a message with large
 * data, its own large byte arrays by reference and what lies between them in a buffer
 * per run (`encodeLargeValueParts`); otherwise one buffer. Sent as parts, a large write
 * or chunk is never copied into an encoding: the bytes go to the socket from where they
 * are, so they must not change until sent.
 */
export function encodeMessageParts(
  message: Message,
  bytesMax: number = messageBytesMax,
): Uint8Array[] {
  return encodeValueParts(message, bytesMax);
}

/** `encodeValue`'s bytes as parts to send one after another (see `encodeMessageParts`). */
export function encodeValueParts(value: unknown, bytesMax: number = messageBytesMax): Uint8Array[] {
  const parts = encodeLargeValueParts(value, 0, bytesMax);
  if (parts === undefined) return [encodeValue(value, bytesMax)];
  return parts.framed.byteLength === 0 ? parts.tail : [parts.framed, ...parts.tail];
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
