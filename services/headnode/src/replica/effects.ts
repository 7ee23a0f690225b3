// What the replica core asks its shell to do. The core never performs I/O; it returns
// effects, and the shell carries them out and reports back through the core's `on…`
// methods. The ordering contract the shell must keep:
//
// - Journal effects (`journal.append`, `journal.truncate`, `journal.release`) run one
//   after another in the order given. After an append is durable (fsync), the shell
//   calls `onJournalDurable(lastOpNum, generation)` with the effect's generation.
//   `journal.release` lets the journal drop notes through `throughOpNum`; the core
//   names one op less than it released, so that the note at its release point stays
//   on disk and a restart knows which note (epoch, session) it resumes after.
// - `send` may be delayed, lost, duplicated or reordered: the protocol tolerates all
//   four. Sends may overtake journal writes; an ack is only *produced* by the core after
//   the journal write it covers is durable.
// - `reply` answers a client request, once.
// - `chunk.write` writes `data` to at least two sleds and calls `onChunkWritten` with
//   the sleds that hold it, or `onChunkFailed`.
// - `checkpoint.write` stores the snapshot durably, on sleds, and records it with the
//   coordinator, then calls `onCheckpointWritten` (or `onCheckpointFailed`): the core
//   releases journal notes only on a checkpoint a learner could be rebuilt from.

import type { BallastError, MessageOf } from "@ballast/protocol";
import type { ReadPart } from "./metadata.ts";
import type { Note } from "./note.ts";

export type RequestId = number;

export type ReplicationMessage = MessageOf<"replica.notes.v1"> | MessageOf<"replica.ack.v1">;

export interface ReadResult {
  /** The commit point the read reflects: every op up to it, none after. */
  asOfOpNum: number;
  ranges: { offset: number; length: number; parts: ReadPart[] }[];
}

export type Reply =
  | { kind: "mutation"; opNumFirst: number; opNumLast: number }
  | { kind: "flush"; flushedOpNum: number }
  | { kind: "read"; read: ReadResult };

export type Effect =
  | { type: "journal.append"; generation: number; notes: Note[] }
  | { type: "journal.truncate"; generation: number; afterOpNum: number }
  | { type: "journal.release"; throughOpNum: number }
  | { type: "send"; to: string; message: ReplicationMessage }
  | { type: "reply"; requestId: RequestId; reply: Reply }
  | { type: "reply.error"; requestId: RequestId; error: BallastError }
  | { type: "chunk.write"; chunkNumber: number; sledChunkId: string; data: Uint8Array }
  | { type: "checkpoint.write"; opNum: number; snapshot: Uint8Array };
