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
//   the sleds that hold it, or `onChunkFailed`. A sled whose stored copy does not have
//   the effect's `checksum` does not count as holding it.
// - Checkpoint publication is four steps, one checkpoint at a time; each waits for the
//   report of the one before, so the shell never runs two at once:
//   1. `checkpoint.write` writes the snapshot to the local checkpoint file (temporary,
//      fsync, rename, fsync the directory), then calls `onCheckpointDurable(opNum)`. A
//      restart may find this file newer than the recorded checkpoint: the core then
//      holds every note its journal has.
//   2. `checkpoint.store` puts the snapshot as blob `blobKey` on at least two sleds, then
//      calls `onCheckpointStored(opNum, pointer)` with the sleds that hold it. Keys are
//      distinct per upload (the core counts them within a session), so a store never
//      overwrites a blob a record may name.
//   3. `checkpoint.record` records `pointer` with the coordinator, then calls
//      `onCheckpointRecorded(opNum, replaced)` with the pointer it replaced, if any.
//   4. On the record, the core releases journal notes (a learner rebuilt from the
//      recorded checkpoint can get every note after it from the primary) and emits
//      `blob.delete` for the replaced blob when its key differs. A delete may fail or
//      be lost: that leaves garbage on sleds, never a wrong answer.
//   Before step 1, the core may refuse a checkpoint that no sled could store or no
//   reader take back (`checkpoint.refused`, for the shell to log): nothing is written or
//   released, and the core tries again after checkpointRefusedRetryTicks (sooner once a
//   snapshot or chunks are dropped: retryRefusedCheckpointSoon).
//   Any step may fail: the shell calls `onCheckpointFailed(opNum)`, nothing is released,
//   and a later checkpoint starts again at step 1 (one the shell asked for with
//   `requestCheckpoint` stays asked for: the shell need not ask again). Stores that fail
//   one after another back off up to checkpointStoreRetryTicksMax; the shell calls
//   `retryCheckpointSoon` when a sled comes back. Reports for a checkpoint the core no
//   longer waits on (a failed one, an earlier life) are ignored.

import type {
  BallastError,
  CheckpointPointer as CheckpointPointerSchema,
  MessageOf,
} from "@ballast/protocol";
import type { z } from "zod";
import type { CheckpointTooLargeError, ReadPart } from "./metadata.ts";
import type { Note } from "./note.ts";

export type RequestId = number;

/** Where a stored checkpoint is: its blob, the sleds that hold it, its size. */
export type CheckpointPointer = z.infer<typeof CheckpointPointerSchema>;

export type ReplicationMessage = MessageOf<"replica.notes.v1"> | MessageOf<"replica.ack.v1">;

export interface ReadResult {
  /** The commit point the read reflects: every op up to it, none after. */
  asOfOpNum: number;
  ranges: { offset: number; length: number; parts: ReadPart[] }[];
}

export type Reply =
  | { kind: "mutation"; opNumFirst: number; opNumLast: number }
  | { kind: "flush"; flushedOpNum: number }
  /** A snapshot take or drop committed (a take answers with the op it was taken at). */
  | { kind: "control"; opNum: number }
  | { kind: "read"; read: ReadResult };

export type Effect =
  | { type: "journal.append"; generation: number; notes: Note[] }
  | { type: "journal.truncate"; generation: number; afterOpNum: number }
  | { type: "journal.release"; throughOpNum: number }
  | { type: "send"; to: string; message: ReplicationMessage }
  | { type: "reply"; requestId: RequestId; reply: Reply }
  | { type: "reply.error"; requestId: RequestId; error: BallastError }
  | {
      type: "chunk.write";
      chunkNumber: number;
      sledChunkId: string;
      data: Uint8Array;
      /** CRC32C of `data`, as the flush record keeps it. */
      checksum: number;
      /**
       * The journal ops whose data it carries, first to last (none when first > last: a
       * chunk of compacted data only). Only traces use it: the flush span links to the
       * requests that wrote these ops.
       */
      firstOpNum: number;
      throughOpNum: number;
    }
  | {
      type: "chunk.read";
      chunkNumber: number;
      sledChunkId: string;
      copies: readonly string[];
      bytes: number;
      /** CRC32C of the whole chunk, from the table; absent for chunks of older records. */
      checksum?: number;
    }
  | { type: "checkpoint.write"; opNum: number; snapshot: Uint8Array }
  /** A checkpoint at `opNum` was not taken: it would be too large (logged, not run). */
  | { type: "checkpoint.refused"; opNum: number; error: CheckpointTooLargeError }
  | { type: "checkpoint.store"; opNum: number; blobKey: string; snapshot: Uint8Array }
  | { type: "checkpoint.record"; opNum: number; pointer: CheckpointPointer }
  | { type: "blob.delete"; blobKey: string; sleds: readonly string[] };
