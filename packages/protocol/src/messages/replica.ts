// Replication between the head nodes of one partition. The primary sends notes in op
// order, many per message, with its commit point riding along; a secondary answers with
// the highest op it holds durably. A note with a gap before it is not journaled: the
// secondary answers with what it has, and the primary resends from there.

import { z } from "zod";
import { notesPerMessageMax } from "../limits.ts";
import { bytes, nodeId, uint32, unsignedInteger, volumeBytes, volumeName } from "./fields.ts";

export const noteKinds = ["write", "trim", "zeroes", "flush"] as const;

export const Note = z.object({
  opNum: unsignedInteger,
  kind: z.enum(noteKinds),
  offset: volumeBytes,
  length: volumeBytes,
  /** Present for writes (and for flush records, which carry their metadata update). */
  data: bytes.optional(),
  /** CRC32C of `data` (0 where there is none), checked before the note is journaled. */
  checksum: uint32,
});

export const ReplicaNotes = z.object({
  type: z.literal("replica.notes.v1"),
  volume: volumeName,
  partition: unsignedInteger,
  epoch: unsignedInteger,
  primary: nodeId,
  /** Every op up to this one is committed on the primary. */
  commitOpNum: unsignedInteger,
  notes: z.array(Note).max(notesPerMessageMax),
});

export const ReplicaNotesResult = z.object({
  /** The highest op number this replica holds durably, with no gap before it. */
  durableOpNum: unsignedInteger,
  /** The highest op number this replica has committed. */
  commitOpNum: unsignedInteger,
});
