// Validation of the write and read paths' messages without zod. Every write crosses the
// edge twice as one of these (the client's `volume.write.v1` at the primary, the
// primary's `replica.notes.v1` at each secondary, whose `replica.ack.v1` comes back);
// profiles of the write path found zod's parse at 5 to 9 % of a head node's CPU, most of
// it building the copy of each message that zod returns. A read is a `volume.read.v1` at
// the primary and, for bytes not kept in memory, a `sled.chunk.read.v1` at a sled (zod
// was 5 % of a sled's busy time serving 4 KiB reads). Their replies are checked the same
// way (`acceptHotReply`): the gateway checked every write and read reply with zod (8 % of
// its busy time at QD1), the primary every sled read reply.
//
// The contract: `acceptHotPath` returns the decoded value itself, unchanged, only when it
// is exactly what the message's zod schema would return for it (every field present is
// one the schema names, of the type and within the bounds it gives); in any other case
// it returns undefined and the caller asks zod, which then accepts (stripping unknown
// keys) or explains what is wrong. So it may be stricter than zod, never looser; the
// property tests in hot-path.test.ts hold it to that. The bounds come from the same
// constants as the schemas' (fields.ts, limits.ts, sled.ts).

import {
  nodeIdLengthMax,
  notesPerMessageMax,
  requestEntriesMax,
  snapshotIdLengthMax,
  volumeBytesMax,
  volumeIdLengthMax,
  volumeNameLengthMax,
} from "./limits.ts";
import { clientSessionPattern } from "./messages/fields.ts";
import type { Message, MessageType, RequestType, ResultOf } from "./messages/index.ts";
import { noteKinds } from "./messages/replica.ts";
import { chunkIdPattern, sledLimits } from "./messages/sled.ts";

/** The message types with a hand-written check. */
export const hotPathTypes: ReadonlySet<MessageType> = new Set<MessageType>([
  "volume.write.v1",
  "volume.read.v1",
  "replica.notes.v1",
  "replica.ack.v1",
  "sled.chunk.read.v1",
  "sled.chunk.read-many.v1",
]);

/** The request types whose replies have a hand-written check. */
export const hotReplyTypes: ReadonlySet<RequestType> = new Set<RequestType>([
  "volume.write.v1",
  "volume.read.v1",
  "sled.chunk.read.v1",
  "sled.chunk.read-many.v1",
]);

type Fields = Record<string, unknown>;

const namePattern = /^[a-z0-9][a-z0-9-]*$/;
const kinds: ReadonlySet<unknown> = new Set(noteKinds);

function isUnsigned(value: unknown): boolean {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

function isUint32(value: unknown): boolean {
  return isUnsigned(value) && (value as number) <= 0xffff_ffff;
}

function isVolumeBytes(value: unknown): boolean {
  return isUnsigned(value) && (value as number) <= volumeBytesMax;
}

function isName(value: unknown, lengthMax: number): boolean {
  return (
    typeof value === "string" &&
    value.length >= 1 &&
    value.length <= lengthMax &&
    namePattern.test(value)
  );
}

/** True when `value` has no own keys but those in `allowed`. */
function onlyKeys(value: Fields, allowed: ReadonlySet<string>): boolean {
  for (const key in value) {
    if (!allowed.has(key)) return false;
  }
  return true;
}

function isPlainObject(value: unknown): value is Fields {
  return (
    typeof value === "object" &&
    value !== null &&
    !Array.isArray(value) &&
    Object.getPrototypeOf(value) === Object.prototype
  );
}

const writeKeys = new Set(["type", "volume", "partition", "epoch", "volumeId", "writes", "fence"]);
const fenceKeys = new Set(["session", "sequence"]);
const readKeys = new Set([
  "type",
  "volume",
  "partition",
  "epoch",
  "volumeId",
  "reads",
  "snapshot",
  "unmapped",
]);
const rangeKeys = new Set(["offset", "length"]);
const sledReadKeys = new Set(["type", "owner", "chunkId", "offset", "length"]);
const sledReadManyKeys = new Set(["type", "owner", "reads"]);
const sledReadEntryKeys = new Set(["chunkId", "offset", "length"]);
const sledReadManyResultKeys = new Set(["data", "failed"]);
const ownerKeys = new Set(["volume", "partition"]);
const replyKeys = new Set(["ok", "result"]);
const mutationResultKeys = new Set(["opNumFirst", "opNumLast"]);
const readResultKeys = new Set(["data", "unmapped"]);
const sledReadResultKeys = new Set(["data"]);
const writeEntryKeys = new Set(["offset", "data"]);
const notesKeys = new Set([
  "type",
  "volume",
  "partition",
  "epoch",
  "primary",
  "session",
  "commitOpNum",
  "previousOpNum",
  "previousEpoch",
  "previousSession",
  "notes",
]);
const noteKeys = new Set([
  "opNum",
  "epoch",
  "session",
  "kind",
  "offset",
  "length",
  "data",
  "checksum",
]);
const ackKeys = new Set([
  "type",
  "volume",
  "partition",
  "epoch",
  "from",
  "session",
  "durableOpNum",
  "commitOpNum",
  "mismatch",
]);

/** A mutation's ordering fence (messages/volume.ts, MutationFence). */
function acceptFence(fence: unknown): boolean {
  if (!isPlainObject(fence) || !onlyKeys(fence, fenceKeys)) return false;
  if (typeof fence.session !== "string" || !clientSessionPattern.test(fence.session)) return false;
  return isUnsigned(fence.sequence) && (fence.sequence as number) >= 1;
}

function acceptWrite(value: Fields): boolean {
  if (!onlyKeys(value, writeKeys)) return false;
  if (!isName(value.volume, volumeNameLengthMax)) return false;
  if (!isUnsigned(value.partition) || !isUnsigned(value.epoch)) return false;
  if ("volumeId" in value && !isName(value.volumeId, volumeIdLengthMax)) return false;
  if ("fence" in value && !acceptFence(value.fence)) return false;
  const writes = value.writes;
  if (!Array.isArray(writes) || writes.length < 1 || writes.length > requestEntriesMax) {
    return false;
  }
  for (const write of writes) {
    if (!isPlainObject(write) || !onlyKeys(write, writeEntryKeys)) return false;
    if (!isVolumeBytes(write.offset) || !(write.data instanceof Uint8Array)) return false;
  }
  return true;
}

function acceptRange(range: unknown): boolean {
  if (!isPlainObject(range) || !onlyKeys(range, rangeKeys)) return false;
  return isVolumeBytes(range.offset) && isVolumeBytes(range.length);
}

/** A list of ranges; `entries` bounds it as a request's entries are. */
function acceptRanges(ranges: unknown, entries: boolean): boolean {
  if (!Array.isArray(ranges)) return false;
  if (entries && (ranges.length < 1 || ranges.length > requestEntriesMax)) return false;
  for (const range of ranges) {
    if (!acceptRange(range)) return false;
  }
  return true;
}

function acceptRead(value: Fields): boolean {
  if (!onlyKeys(value, readKeys)) return false;
  if (!isName(value.volume, volumeNameLengthMax)) return false;
  if (!isUnsigned(value.partition) || !isUnsigned(value.epoch)) return false;
  if ("volumeId" in value && !isName(value.volumeId, volumeIdLengthMax)) return false;
  if ("snapshot" in value && !isName(value.snapshot, snapshotIdLengthMax)) return false;
  if ("unmapped" in value && typeof value.unmapped !== "boolean") return false;
  return acceptRanges(value.reads, true);
}

function acceptOwner(owner: unknown): boolean {
  if (!isPlainObject(owner) || !onlyKeys(owner, ownerKeys)) return false;
  return isName(owner.volume, volumeNameLengthMax) && isUint32(owner.partition);
}

/** A chunk read's fields (of a single read, or an entry of a read-many). */
function acceptChunkRange(value: Fields): boolean {
  const chunkId = value.chunkId;
  if (
    typeof chunkId !== "string" ||
    chunkId.length < 1 ||
    chunkId.length > sledLimits.chunkIdLengthMax ||
    !chunkIdPattern.test(chunkId)
  ) {
    return false;
  }
  return isUnsigned(value.offset) && isUnsigned(value.length);
}

function acceptSledRead(value: Fields): boolean {
  if (!onlyKeys(value, sledReadKeys) || !acceptOwner(value.owner)) return false;
  return acceptChunkRange(value);
}

function acceptSledReadMany(value: Fields): boolean {
  if (!onlyKeys(value, sledReadManyKeys) || !acceptOwner(value.owner)) return false;
  const reads = value.reads;
  if (!Array.isArray(reads) || reads.length < 1 || reads.length > sledLimits.readManyEntriesMax) {
    return false;
  }
  for (const read of reads) {
    if (!isPlainObject(read) || !onlyKeys(read, sledReadEntryKeys)) return false;
    if (!acceptChunkRange(read)) return false;
  }
  return true;
}

function acceptNote(note: unknown): boolean {
  if (!isPlainObject(note) || !onlyKeys(note, noteKeys)) return false;
  if (!isUnsigned(note.opNum) || !isUnsigned(note.epoch) || !isUint32(note.session)) return false;
  if (!kinds.has(note.kind)) return false;
  if (!isVolumeBytes(note.offset) || !isVolumeBytes(note.length)) return false;
  if ("data" in note && !(note.data instanceof Uint8Array)) return false;
  return isUint32(note.checksum);
}

function acceptNotes(value: Fields): boolean {
  if (!onlyKeys(value, notesKeys)) return false;
  if (!isName(value.volume, volumeNameLengthMax)) return false;
  if (!isUnsigned(value.partition) || !isUnsigned(value.epoch)) return false;
  if (!isName(value.primary, nodeIdLengthMax) || !isUint32(value.session)) return false;
  if (!isUnsigned(value.commitOpNum) || !isUnsigned(value.previousOpNum)) return false;
  if (!isUnsigned(value.previousEpoch) || !isUint32(value.previousSession)) return false;
  const notes = value.notes;
  if (!Array.isArray(notes) || notes.length > notesPerMessageMax) return false;
  for (const note of notes) {
    if (!acceptNote(note)) return false;
  }
  return true;
}

function acceptAck(value: Fields): boolean {
  if (!onlyKeys(value, ackKeys)) return false;
  if (!isName(value.volume, volumeNameLengthMax)) return false;
  if (!isUnsigned(value.partition) || !isUnsigned(value.epoch)) return false;
  if (!isName(value.from, nodeIdLengthMax) || !isUint32(value.session)) return false;
  if (!isUnsigned(value.durableOpNum) || !isUnsigned(value.commitOpNum)) return false;
  return typeof value.mismatch === "boolean";
}

/**
 * The decoded `value` as a message when it is certainly a valid message of one of the
 * hot-path types, exactly as zod would return it; otherwise undefined (ask zod).
 */
export function acceptHotPath(value: unknown): Message | undefined {
  if (!isPlainObject(value)) return undefined;
  switch (value.type) {
    case "volume.write.v1":
      return acceptWrite(value) ? (value as Message) : undefined;
    case "volume.read.v1":
      return acceptRead(value) ? (value as Message) : undefined;
    case "sled.chunk.read.v1":
      return acceptSledRead(value) ? (value as Message) : undefined;
    case "sled.chunk.read-many.v1":
      return acceptSledReadMany(value) ? (value as Message) : undefined;
    case "replica.notes.v1":
      return acceptNotes(value) ? (value as Message) : undefined;
    case "replica.ack.v1":
      return acceptAck(value) ? (value as Message) : undefined;
    default:
      return undefined;
  }
}

function acceptReadResult(result: Fields): boolean {
  if (!onlyKeys(result, readResultKeys)) return false;
  const data = result.data;
  if (!Array.isArray(data)) return false;
  for (const bytes of data) {
    if (!(bytes instanceof Uint8Array)) return false;
  }
  if (!("unmapped" in result)) return true;
  const unmapped = result.unmapped;
  if (!Array.isArray(unmapped)) return false;
  for (const ranges of unmapped) {
    if (!acceptRanges(ranges, false)) return false;
  }
  return true;
}

/** A read-many's answer; one with failures is left to zod (failures are rare). */
function acceptReadManyResult(result: Fields): boolean {
  if (!onlyKeys(result, sledReadManyResultKeys) || "failed" in result) return false;
  const data = result.data;
  if (!Array.isArray(data)) return false;
  for (const bytes of data) {
    if (!(bytes instanceof Uint8Array)) return false;
  }
  return true;
}

/**
 * The result of a successful reply (`{ok: true, result}`, decoded) to a request of
 * `type` when it is certainly valid, exactly as zod would return it; otherwise undefined
 * (ask zod, which also turns an error reply into its BallastError).
 */
export function acceptHotReply<T extends RequestType>(
  type: T,
  reply: unknown,
): ResultOf<T> | undefined {
  if (!isPlainObject(reply) || !onlyKeys(reply, replyKeys) || reply.ok !== true) {
    return undefined;
  }
  const result = reply.result;
  if (!isPlainObject(result)) return undefined;
  switch (type as RequestType) {
    case "volume.write.v1":
      if (!onlyKeys(result, mutationResultKeys)) return undefined;
      return isUnsigned(result.opNumFirst) && isUnsigned(result.opNumLast)
        ? (result as ResultOf<T>)
        : undefined;
    case "volume.read.v1":
      return acceptReadResult(result) ? (result as ResultOf<T>) : undefined;
    case "sled.chunk.read.v1":
      return onlyKeys(result, sledReadResultKeys) && result.data instanceof Uint8Array
        ? (result as ResultOf<T>)
        : undefined;
    case "sled.chunk.read-many.v1":
      return acceptReadManyResult(result) ? (result as ResultOf<T>) : undefined;
    default:
      return undefined;
  }
}
