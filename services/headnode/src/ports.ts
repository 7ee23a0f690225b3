// The narrow ports through which a replica's effects reach the world (see
// replica/effects.ts for what each effect asks and in which order). The head node plugs
// in real adapters (adapters.ts: the journal files, the checkpoint file, sleds over
// NATS, the coordinator, performance.now()); the simulators and scenario tests plug in
// the seeded fakes of testing/fakes.ts. Both run the same effect runner
// (effect-runner.ts), so the ordering the simulators check is the ordering the head node
// keeps.
//
// Completions are callbacks, not promises: a simulator completes work at a tick of its
// choosing and must hear of it then, not at some later microtask. A port calls each
// callback at most once, and never synchronously from the call that started the work
// (the runner is draining the core's effects at that moment).
//
// Failure model: any operation may fail (the callback gets an error) or never complete
// (a crash: the runner of that life is closed, and whatever completes later is ignored).

import type { CheckpointPointer, ReplicationMessage } from "./replica/effects.ts";
import type { Note } from "./replica/note.ts";

export type Outcome<T> = { ok: true; value: T } | { ok: false; error: Error };
export type Done<T = void> = (outcome: Outcome<T>) => void;

/** The replica's note journal: operations complete in the order they were given. */
export interface JournalPort {
  /** Appends notes after the last; `done` once they are durable (fsynced). */
  append(notes: readonly Note[], done: Done): void;
  /** Drops every note after `afterOpNum` (an uncommitted tail a new primary replaced). */
  truncateAfter(afterOpNum: number, done: Done): void;
  /** Lets the journal drop notes through `throughOpNum`: they are in a recorded checkpoint. */
  releaseThrough(throughOpNum: number, done: Done): void;
}

/** What a replica restarts from besides its journal. */
export interface StoredCheckpoint {
  bytes: Uint8Array;
  /** Another replica's checkpoint this one was rebuilt from, not yet replaced by its own. */
  rebuilt: boolean;
}

/** The replica's local checkpoint file. */
export interface CheckpointStorePort {
  /**
   * Replaces the local checkpoint durably (a crash leaves the old or the new one), and
   * with it any checkpoint this replica was rebuilt from.
   */
  write(snapshot: Uint8Array, done: Done): void;
  /** The checkpoint to restart from, if any. */
  read(): Promise<StoredCheckpoint | undefined>;
}

/** Chunks and checkpoint blobs on sleds. */
export interface SledsPort {
  /** Writes a chunk to two of `sleds`; `done` with the sleds that hold it. */
  writeChunk(
    chunk: {
      sledChunkId: string;
      chunkNumber: number;
      data: Uint8Array;
      checksum?: number;
      /** The journal ops whose data the chunk carries (traces link the flush to them). */
      firstOpNum?: number;
      throughOpNum?: number;
    },
    sleds: readonly string[],
    done: Done<string[]>,
  ): void;
  /**
   * Reads a range of a chunk from the first sound copy. `expect` is what the chunk table
   * records (its size, and its CRC32C when known): a whole-chunk read is checked against
   * it, and damaged or missing copies are repaired from a copy that matches it.
   */
  readChunk(
    sledChunkId: string,
    copies: readonly string[],
    offset: number,
    length: number,
    expect?: { bytes: number; checksum?: number },
  ): Promise<Uint8Array>;
  /**
   * What `readChunk` would answer, when its head node's chunk cache holds the range
   * (synchronously, with no promise made); undefined when it does not, and then
   * `readChunk` is the way. Optional: a port without a cache has none.
   */
  readCachedChunk?(
    sledChunkId: string,
    offset: number,
    length: number,
    expect?: { bytes: number; checksum?: number },
  ): Uint8Array | undefined;
  /**
   * Reads a whole chunk (compaction) from the first copy that has `bytes` bytes and,
   * when known, the CRC32C `checksum`; `done` with its bytes.
   */
  readWholeChunk(
    chunk: { sledChunkId: string; copies: readonly string[]; bytes: number; checksum?: number },
    done: Done<Uint8Array>,
  ): void;
  /** Stores a blob on two of `sleds`; `done` with the sleds that hold it. */
  putBlob(
    key: string,
    data: Uint8Array,
    sleds: readonly string[],
    spread: number,
    done: Done<string[]>,
  ): void;
  /** A whole blob of `bytes` bytes from the first of `sleds` whose copy passes its CRC32C. */
  getBlob(
    key: string,
    bytes: number,
    sleds: readonly string[],
  ): Promise<{ data: Uint8Array; sled: string }>;
  /** Deletes a blob; best effort (a lost delete leaves garbage, never a wrong answer). */
  deleteBlob(key: string, sleds: readonly string[], done: Done): void;
}

/** Messages to the other replicas, and checkpoint records to the coordinator. */
export interface TransportPort {
  /** May be lost, duplicated, delayed or reordered: the protocol tolerates all four. */
  send(to: string, message: ReplicationMessage): void;
  /** Records the replica's newest checkpoint; `done` with the pointer it replaced. */
  recordCheckpoint(pointer: CheckpointPointer, done: Done<{ replaced?: CheckpointPointer }>): void;
}

/** This process's clocks. */
export interface ClockPort {
  /** Monotonic: leases are durations on it, never compared across machines. */
  nowMs(): number;
  /**
   * Wall-clock time: labels what a person reads (a checkpoint's creation), and bounds a
   * read lease as a second, never compared across machines either (replica.ts).
   */
  wallMs(): number;
}

export interface ReplicaPorts {
  journal: JournalPort;
  checkpoints: CheckpointStorePort;
  sleds: SledsPort;
  transport: TransportPort;
  clock: ClockPort;
}

/** A port's promise as a callback, for adapters over async APIs. */
export function settle<T>(promise: Promise<T>, done: Done<T>): void {
  promise.then(
    (value) => done({ ok: true, value }),
    (error: unknown) =>
      done({ ok: false, error: error instanceof Error ? error : new Error(String(error)) }),
  );
}
