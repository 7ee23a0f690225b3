// The real adapters behind a replica's ports (ports.ts): the note journal on local disk,
// the checkpoint file, sleds and the coordinator over NATS, and this process's clocks.
// Each turns the port's callback into the promise of the API underneath.
//
// Files of a replica (see partition-host.ts for the directory):
//   journal/          the note journal (segment files)
//   checkpoint.bin    the last durable metadata snapshot (write to a temporary, fsync,
//                     rename, fsync the directory: a crash leaves the old or the new one)
//   rebuilt.bin       another replica's checkpoint this one was rebuilt from, until it
//                     writes its own (so a crash during the rebuild resumes it)
//
// Both checkpoint files are framed and checksummed whole, because the snapshot checks
// only part of itself: its extent tree carries @ballast/btree's checksums, but its
// header (the chunk table, the flushed point, the next chunk number) carries none, and a
// flipped bit there would send reads to the wrong chunk. (A copy on sleds is covered by
// the blob's own CRC32C.) The frame, little-endian:
//
//   0   8  magic "BLSTCKPT"
//   8   4  frame version (1)
//   12  8  snapshot length in bytes
//   20  4  CRC32C of bytes 0..20, continued over the snapshot
//   24  …  the snapshot (PartitionMetadata.snapshot)
//
// A file that fails any check is refused with CheckpointDamagedError, naming the file
// and what is wrong; the replica is then not opened from it (partition-host.ts).

import { readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import {
  BallastError,
  crc32c,
  decodeValue,
  ErrorCode,
  encodeLargeValueParts,
  encodeValue,
  largeDataBytesMin,
  subjects,
} from "@ballast/protocol";
import { type Service, writeFileDurably } from "@ballast/runtime";
import { Packr, RESERVE_START_SPACE } from "msgpackr";
import { type Journal, type JournalRecord, journalLimits } from "./journal/index.ts";
import {
  type CheckpointStorePort,
  type ClockPort,
  type Done,
  type JournalPort,
  type SledsPort,
  type StoredCheckpoint,
  settle,
  type TransportPort,
} from "./ports.ts";
import type { CheckpointPointer, ReplicationMessage } from "./replica/effects.ts";
import type { Note } from "./replica/note.ts";
import type { ChunkOwner, SledClient } from "./sled-client.ts";

/** The note journal on disk; the journal itself serializes and group-commits. */
export class JournalFiles implements JournalPort {
  /**
   * Test only: once set, appends and truncations fail with this errno code instead of
   * reaching the journal, as on a full or broken disk. Off (undefined) unless a test sets it.
   */
  failForTesting: "ENOSPC" | "EIO" | undefined;

  constructor(readonly journal: Journal) {}

  append(notes: readonly Note[], done: Done): void {
    if (this.failForTesting !== undefined) {
      this.injectedFailure(done);
      return;
    }
    const records: JournalRecord[] = notes.map(encodeNoteRecord);
    settle(this.journal.append(records), done);
  }

  truncateAfter(afterOpNum: number, done: Done): void {
    if (this.failForTesting !== undefined) {
      this.injectedFailure(done);
      return;
    }
    settle(this.journal.truncateAfter(afterOpNum), done);
  }

  private injectedFailure(done: Done): void {
    const error: NodeJS.ErrnoException = new Error(
      `${this.failForTesting}: injected by a test, write`,
    );
    error.code = this.failForTesting;
    // Never synchronously (ports.ts): the runner is draining effects right now.
    setImmediate(() => done({ ok: false, error }));
  }

  releaseThrough(throughOpNum: number, done: Done): void {
    settle(this.journal.releaseThrough(throughOpNum), done);
  }
}

export function encodeNote(note: Note): Uint8Array {
  return encodeValue(note);
}

/**
 * msgpack with the options of @ballast/protocol's codec (so `decodeNote` reads what it
 * packs, byte for byte what `encodeNote` makes): its own instance, to pack into room
 * reserved for the journal's record header.
 */
const notePackr = new Packr({ useRecords: false, moreTypes: false, int64AsType: "number" });

/**
 * Data of at least this many bytes (and under `largeDataBytesMin`) is journaled by
 * reference after its note (`encodeNoteRecord`); shorter data is packed with the note,
 * where a copy costs less than the combine and the writev's extra part.
 */
export const recordDataByReferenceBytesMin = 512;

/** One byte standing in for a note's data while the rest of the note is packed. */
const dataPlaceholder = new Uint8Array(1);

/**
 * A note as a journal record, encoded once: the note is written after room for the
 * record header, and the journal fills the header in place (JournalRecord.framed), rather
 * than encoding the note and then copying it into a record. A note's data of
 * `recordDataByReferenceBytesMin` or more is not packed at all: the note is framed up to
 * its data, the data follows by reference (JournalRecord.tail), written from the note,
 * which keeps it unchanged, and a write's data brings its CRC32C along (the note carries
 * it: computed from the bytes by the primary, checked against them by a secondary), so
 * the journal combines it rather than reading the bytes again. Large data (64 KiB or
 * more) is framed by `encodeLargeValueParts` (codec.ts); smaller by msgpackr, `data` as
 * the last key (see `dataByReference`). The rest is packed by msgpackr, which hands out
 * a view of its own buffer, never written again (its next pack starts past it).
 */
export function encodeNoteRecord(note: Note): JournalRecord {
  const data = note.data;
  if (
    data !== undefined &&
    data.byteLength >= recordDataByReferenceBytesMin &&
    data.byteLength < largeDataBytesMin
  ) {
    const record = dataByReference(note, data);
    if (record !== undefined) return record;
  }
  const large = encodeLargeValueParts(note, journalLimits.recordHeaderBytes);
  const framed: Uint8Array =
    large?.framed ?? notePackr.pack(note, RESERVE_START_SPACE | journalLimits.recordHeaderBytes);
  if (large === undefined || large.tail.length === 0) {
    return { opNum: note.opNum, payload: framed.subarray(journalLimits.recordHeaderBytes), framed };
  }
  return {
    opNum: note.opNum,
    payload: framed.subarray(journalLimits.recordHeaderBytes),
    framed,
    tail: large.tail,
    tailChecksums: large.tail.map((part) =>
      part === note.data && note.kind === "write" ? note.checksum : undefined,
    ),
  };
}

/**
 * A note whose data (at least 256 and under 65,536 bytes: a bin 16) follows its record
 * by reference: msgpackr packs the note with `data` last and one byte in its place, whose
 * bin 8 header and byte (3 bytes) become the data's bin 16 header. The payload and its
 * tail are the same plain msgpack as the note packed whole (only the key order
 * differs), so recovery decodes it as before. Undefined if msgpackr did not end the
 * encoding as expected (the caller then packs the note whole).
 */
function dataByReference(note: Note, data: Uint8Array): JournalRecord | undefined {
  // The note's fields with `data` last, copied key by key: a rest and a spread cost
  // about 1.3 us more a note (notes are plain objects, so for-in sees their own keys).
  const fields: Record<string, unknown> = {};
  for (const key in note) {
    if (key !== "data") fields[key] = note[key as keyof Note];
  }
  fields.data = dataPlaceholder;
  const framed = notePackr.pack(fields, RESERVE_START_SPACE | journalLimits.recordHeaderBytes);
  const end = framed.byteLength;
  if (framed[end - 3] !== 0xc4 || framed[end - 2] !== 1) return undefined;
  framed[end - 3] = 0xc5;
  framed[end - 2] = data.byteLength >>> 8;
  framed[end - 1] = data.byteLength & 0xff;
  return {
    opNum: note.opNum,
    payload: framed.subarray(journalLimits.recordHeaderBytes),
    framed,
    tail: [data],
    tailChecksums: [note.kind === "write" ? note.checksum : undefined],
  };
}

/** The journal hands out payloads it owns copies of, so the note may keep views of it. */
export function decodeNote(payload: Uint8Array): Note {
  return decodeValue(payload) as Note;
}

/** checkpoint.bin, and rebuilt.bin until the replica's own checkpoint replaces it. */
export class CheckpointFile implements CheckpointStorePort {
  /** The op of the checkpoint this replica was rebuilt from, until it writes its own. */
  rebuiltFromOpNum: number | undefined;

  constructor(private readonly directory: string) {}

  /** Keeps another replica's checkpoint to rebuild from (replacing any state). */
  async installRebuilt(bytes: Uint8Array): Promise<void> {
    await writeFileDurably(join(this.directory, "rebuilt.bin"), frameCheckpoint(bytes));
  }

  /** The checkpoint to restart from; throws CheckpointDamagedError if it fails its checks. */
  async read(): Promise<StoredCheckpoint | undefined> {
    const ownPath = join(this.directory, "checkpoint.bin");
    const own = await readIfThere(ownPath);
    if (own !== undefined) return { bytes: unframeCheckpoint(ownPath, own), rebuilt: false };
    const rebuiltPath = join(this.directory, "rebuilt.bin");
    const rebuilt = await readIfThere(rebuiltPath);
    return rebuilt === undefined
      ? undefined
      : { bytes: unframeCheckpoint(rebuiltPath, rebuilt), rebuilt: true };
  }

  write(snapshot: Uint8Array, done: Done): void {
    settle(this.writeNow(snapshot), done);
  }

  private async writeNow(snapshot: Uint8Array): Promise<void> {
    await writeFileDurably(join(this.directory, "checkpoint.bin"), frameCheckpoint(snapshot));
    if (this.rebuiltFromOpNum !== undefined) {
      // Its own checkpoint now covers everything the rebuilt one did.
      this.rebuiltFromOpNum = undefined;
      await rm(join(this.directory, "rebuilt.bin"), { force: true });
    }
  }
}

const checkpointMagic = new TextEncoder().encode("BLSTCKPT");
const checkpointFrameVersion = 1;
const checkpointFrameBytes = 24;
const twoToThe32 = 2 ** 32;

/** A local checkpoint file failed its checks: it must not be started from. */
export class CheckpointDamagedError extends BallastError {
  constructor(
    readonly path: string,
    reason: string,
  ) {
    super(
      ErrorCode.ChecksumMismatch,
      `the local checkpoint ${path} is damaged (${reason}); the replica must be rebuilt from another replica's checkpoint`,
      { details: { path } },
    );
  }
}

/** The checkpoint file's bytes: the frame (see the module header), then the snapshot. */
export function frameCheckpoint(snapshot: Uint8Array): Uint8Array {
  const frame = new Uint8Array(checkpointFrameBytes);
  const view = new DataView(frame.buffer);
  frame.set(checkpointMagic, 0);
  view.setUint32(8, checkpointFrameVersion, true);
  view.setUint32(12, snapshot.byteLength % twoToThe32, true);
  view.setUint32(16, Math.floor(snapshot.byteLength / twoToThe32), true);
  view.setUint32(20, crc32c(snapshot, crc32c(frame.subarray(0, 20))), true);
  return Buffer.concat([frame, snapshot]);
}

/** The snapshot inside a checkpoint file; throws CheckpointDamagedError unless it is whole. */
export function unframeCheckpoint(path: string, bytes: Uint8Array): Uint8Array {
  if (bytes.byteLength < checkpointFrameBytes) {
    throw new CheckpointDamagedError(
      path,
      `${bytes.byteLength} bytes, shorter than its ${checkpointFrameBytes}-byte frame`,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, checkpointFrameBytes);
  if (!checkpointMagic.every((byte, index) => bytes[index] === byte)) {
    throw new CheckpointDamagedError(path, "its magic is not BLSTCKPT");
  }
  const snapshot = bytes.subarray(checkpointFrameBytes);
  const checksumStored = view.getUint32(20, true);
  const checksumComputed = crc32c(snapshot, crc32c(bytes.subarray(0, 20)));
  if (checksumStored !== checksumComputed) {
    throw new CheckpointDamagedError(
      path,
      `its CRC32C is ${checksumStored.toString(16)}, computed ${checksumComputed.toString(16)}`,
    );
  }
  const version = view.getUint32(8, true);
  if (version !== checkpointFrameVersion) {
    throw new CheckpointDamagedError(
      path,
      `frame version ${version}, not ${checkpointFrameVersion}`,
    );
  }
  const length = view.getUint32(16, true) * twoToThe32 + view.getUint32(12, true);
  if (length !== snapshot.byteLength) {
    throw new CheckpointDamagedError(
      path,
      `its frame gives ${length} snapshot bytes, the file holds ${snapshot.byteLength}`,
    );
  }
  return snapshot;
}

/** Chunks and blobs of one partition on sleds, over NATS. */
export class NatsSleds implements SledsPort {
  constructor(
    private readonly client: SledClient,
    private readonly owner: ChunkOwner,
  ) {}

  writeChunk(
    chunk: { sledChunkId: string; chunkNumber: number; data: Uint8Array; checksum?: number },
    sleds: readonly string[],
    done: Done<string[]>,
  ): void {
    settle(
      this.client.writeChunk(
        this.owner,
        chunk.sledChunkId,
        chunk.data,
        sleds,
        chunk.chunkNumber,
        chunk.checksum,
      ),
      done,
    );
  }

  readChunk(
    sledChunkId: string,
    copies: readonly string[],
    offset: number,
    length: number,
    expect?: { bytes: number; checksum?: number },
  ): Promise<Uint8Array> {
    return this.client.readChunk(this.owner, sledChunkId, copies, offset, length, expect);
  }

  readCachedChunk(
    sledChunkId: string,
    offset: number,
    length: number,
    expect?: { bytes: number; checksum?: number },
  ): Uint8Array | undefined {
    return this.client.readCached(sledChunkId, offset, length, expect);
  }

  readWholeChunk(
    chunk: { sledChunkId: string; copies: readonly string[]; bytes: number; checksum?: number },
    done: Done<Uint8Array>,
  ): void {
    const expect =
      chunk.checksum === undefined
        ? { bytes: chunk.bytes }
        : { bytes: chunk.bytes, checksum: chunk.checksum };
    settle(this.readChunk(chunk.sledChunkId, chunk.copies, 0, chunk.bytes, expect), done);
  }

  putBlob(
    key: string,
    data: Uint8Array,
    sleds: readonly string[],
    spread: number,
    done: Done<string[]>,
  ): void {
    settle(this.client.putBlob(key, data, sleds, spread), done);
  }

  getBlob(
    key: string,
    bytes: number,
    sleds: readonly string[],
  ): Promise<{ data: Uint8Array; sled: string }> {
    return this.client.getBlob(key, bytes, sleds);
  }

  deleteBlob(key: string, sleds: readonly string[], done: Done): void {
    settle(
      this.client.deleteBlob(key, sleds).then(() => undefined),
      done,
    );
  }
}

/** Replication messages over NATS; checkpoint records to the coordinator. */
export class NatsTransport implements TransportPort {
  constructor(
    private readonly service: Service,
    private readonly address: { volume: string; volumeId: string; partition: number },
  ) {}

  send(to: string, message: ReplicationMessage): void {
    // Lost, as any message may be (ports.ts), once the connection is closed for good
    // (an explicit close, revoked credentials): nats.js then throws on publish, and the
    // heartbeat of a tick while the process stops would end it as a crash.
    if (this.service.bus.connection.isClosed()) return;
    const { volume, partition } = this.address;
    this.service.bus.publish(subjects.replica.build(volume, partition, to), message);
  }

  recordCheckpoint(pointer: CheckpointPointer, done: Done<{ replaced?: CheckpointPointer }>): void {
    const { volume, volumeId, partition } = this.address;
    settle(
      this.service.bus.request(subjects.coordinatorServices.build("headnode"), {
        type: "checkpoint.record.v1",
        volume,
        volumeId,
        partition,
        node: this.service.nodeId,
        checkpoint: pointer,
      }),
      done,
    );
  }
}

export const processClock: ClockPort = {
  nowMs: () => performance.now(),
  wallMs: () => Date.now(),
};

async function readIfThere(path: string): Promise<Uint8Array | undefined> {
  try {
    return await readFile(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
}
