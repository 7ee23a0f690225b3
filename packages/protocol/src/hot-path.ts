// Validation of the write path's messages without zod. Every write crosses the edge
// twice as one of these (the client's `volume.write.v1` at the primary, the primary's
// `replica.notes.v1` at each secondary, whose `replica.ack.v1` comes back); profiles of
// the write path found zod's parse at 5 to 9 % of a head node's CPU, most of it building
// the copy of each message that zod returns.
//
// The contract: `acceptHotPath` returns the decoded value itself, unchanged, only when it
// is exactly what the message's zod schema would return for it (every field present is
// one the schema names, of the type and within the bounds it gives); in any other case
// it returns undefined and the caller asks zod, which then accepts (stripping unknown
// keys) or explains what is wrong. So it may be stricter than zod, never looser; the
// property test in codec.test.ts holds it to that. The bounds come from the same
// constants as the schemas' (fields.ts, limits.ts).

import {
  nodeIdLengthMax,
  notesPerMessageMax,
  requestEntriesMax,
  volumeBytesMax,
  volumeIdLengthMax,
  volumeNameLengthMax,
} from "./limits.ts";
import type { Message, MessageType } from "./messages/index.ts";
import { noteKinds } from "./messages/replica.ts";

/** The message types with a hand-written check. */
export const hotPathTypes: ReadonlySet<MessageType> = new Set<MessageType>([
  "volume.write.v1",
  "replica.notes.v1",
  "replica.ack.v1",
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

const writeKeys = new Set(["type", "volume", "partition", "epoch", "volumeId", "writes"]);
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

function acceptWrite(value: Fields): boolean {
  if (!onlyKeys(value, writeKeys)) return false;
  if (!isName(value.volume, volumeNameLengthMax)) return false;
  if (!isUnsigned(value.partition) || !isUnsigned(value.epoch)) return false;
  if ("volumeId" in value && !isName(value.volumeId, volumeIdLengthMax)) return false;
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
    case "replica.notes.v1":
      return acceptNotes(value) ? (value as Message) : undefined;
    case "replica.ack.v1":
      return acceptAck(value) ? (value as Message) : undefined;
    default:
      return undefined;
  }
}
