// Replication between the head nodes of one partition. It is messaging, not RPC: the
// primary publishes `replica.notes.v1` to each secondary's replica subject and each
// secondary publishes `replica.ack.v1` back to the primary's. Loss, duplication and
// reordering are handled by op numbers, the prefix check and retransmission on ticks.
//
// A notes message carries a contiguous run of notes in op order, with the commit point
// riding along, and names the note just before the run (`previousOpNum`, with the epoch
// and session it was assigned in). A secondary takes the run only if its own log holds that same
// previous note, so two logs that agree on one note agree on everything before it. A
// secondary acknowledges the highest op it holds durably *and* has matched against this
// primary session; an ack with `mismatch` says its log did not hold the previous note,
// and the primary resends from the secondary's commit point.

import { z } from "zod";
import { notesPerMessageMax } from "../limits.ts";
import { bytes, nodeId, uint32, unsignedInteger, volumeBytes, volumeName } from "./fields.ts";

/**
 * `control` notes change the partition's trees rather than its bytes (a snapshot taken
 * or dropped); their data is a control record the head node defines.
 */
export const noteKinds = ["write", "trim", "zeroes", "flush", "control"] as const;
export type NoteKind = (typeof noteKinds)[number];

export const Note = z.object({
  opNum: unsignedInteger,
  /** The epoch in which the primary assigned this op number … */
  epoch: unsignedInteger,
  /** … and the primary's session: a primary restarted within one epoch may assign an
   * op number again, so only (op, epoch, session) names one note. */
  session: uint32,
  kind: z.enum(noteKinds),
  offset: volumeBytes,
  length: volumeBytes,
  /** The bytes of a write, or the encoded flush or control record; absent for trim and zeroes. */
  data: bytes.optional(),
  /** CRC32C of `data` (0 where there is none), checked before the note is journaled. */
  checksum: uint32,
});
export type Note = z.infer<typeof Note>;

const replicaAddress = {
  volume: volumeName,
  partition: unsignedInteger,
  epoch: unsignedInteger,
};

export const ReplicaNotes = z.object({
  type: z.literal("replica.notes.v1"),
  ...replicaAddress,
  primary: nodeId,
  /** Changes whenever the primary process restarts; acks echo it. */
  session: uint32,
  /** Every op up to this one is committed on the primary. */
  commitOpNum: unsignedInteger,
  /** The op just before `notes[0]` (or the primary's last op when `notes` is empty). */
  previousOpNum: unsignedInteger,
  previousEpoch: unsignedInteger,
  previousSession: uint32,
  notes: z.array(Note).max(notesPerMessageMax),
});

export const ReplicaAck = z.object({
  type: z.literal("replica.ack.v1"),
  ...replicaAddress,
  from: nodeId,
  /** The session of the primary whose notes this acknowledges. */
  session: uint32,
  /** The highest op this replica holds durably that matches the primary's log. */
  durableOpNum: unsignedInteger,
  /** The highest op this replica has committed. */
  commitOpNum: unsignedInteger,
  /** The previous note of the last run did not match: resend from `commitOpNum + 1`. */
  mismatch: z.boolean(),
});
