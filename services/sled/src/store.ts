// The sled's store: chunks and blobs on the devices, with the allocator core deciding
// where they go and this shell doing the I/O in an order that makes every
// acknowledgement true after a kill -9 or a power cut (on-disk layout in format.ts).
//
// Write (a chunk, or a blob's commit):
//   1. allocate a slot and an extent in memory (SpaceAllocator);
//   2. write the extent: header (key, owner, generation, per-block CRC32C table) + data;
//   3. fdatasync (shared with concurrent writers: group commit);
//   4. write the slot that points at the extent;
//   5. fdatasync again; only now is the object in the index, readable, and acknowledged.
// A crash before 5 completes leaves either no slot (the space is free again when the
// map is read back) or a complete slot over complete data, because step 3 made the data
// durable before the slot was written. So a slot on disk always points at durable data,
// and nothing unacknowledged is ever half visible.
//
// Delete: remove from the index (new reads answer NotFound), write zeros over the slot,
// fdatasync, wait for reads already in progress, and only then give the space back to
// the allocator. Space is reused only once no durable record can refer to it.
//
// Recovery (open): read every slot of every device. A device whose slot table cannot be
// read is failed (no writes; the sled serves from the others). Free (zero) slots are
// free; valid slots claim their space, newest generation first, and a slot that collides
// with a newer one (a duplicate key or overlapping extent, which the write order above
// never produces) is cleared before serving. A slot that fails its checks is one of:
//   - rebuilt: the extent header at the place its fields still name is whole and has its
//     generation (unique per sled) and size. The slot was written only after that extent
//     was durable, so the object is complete whether or not it was acknowledged; its slot
//     is rewritten from the header.
//   - torn: its magic or CRC field reads as zeros. A slot is written only over a free
//     (zero) slot or with zeros, so a write cut inside the sector leaves one end zero;
//     that write was never acknowledged and the slot is free.
//   - damaged: anything else, a record that was once whole and went bad. It is never
//     taken for free space: its slot (and the extent it names, when nothing valid holds
//     it) stays allocated, a read of the key it names answers ChecksumMismatch with the
//     device and slot offset, scrub and health() list it, and a rewrite (a repair) or a
//     delete of that key clears it. A damaged slot whose key is unreadable is reported
//     by place only. (A redundant slot copy would tell more, at the cost of a format
//     change and a second write per object; the extent header already is the copy.)
// In-memory state that is not in a slot (blob uploads in progress) simply vanishes.
//
// Generations are unique per sled: the next one is above the largest found on disk and
// at or above the durable high-water mark (generation-mark.ts), which is raised, a batch
// at a time, before any generation it covers is used. The largest found alone would not
// do: a write that did not survive (its slot never written, or deleted since) may have
// used a larger one, whose extent header is still on disk. Without a mark (a store
// opened without one, as the unit tests do) it is the largest found plus one.
//
// Devices fail on their own: an I/O error on a device's write path latches it failed
// (device.ts), the allocator skips it from then on, and a chunk write whose data phase
// failed on it is placed again on a healthy device. A write that fails after its slot
// write began is not retried (the slot may be durable; the next start decides). A start
// in the same boot of the machine reads such a slot from the page cache, which may keep
// it after a failed sync although the disk does not ("fsyncgate"): the object is then
// indexed but perhaps not durable, so a retried write of it is acknowledged only after
// its slot is written and synced again (`rewriteChunk`); nothing else vouches for it (a
// head node records only the copies a write acknowledged).
//
// Full: chunks are refused with NoSpace while each device still has its checkpoint
// reserve free (allocator.ts, constants.ts); blobs may use the reserve, so a head node can
// still write the checkpoint that lets it release its journal and reclaim space.
//
// Reads verify every 4 KiB block they touch against its CRC from the extent header;
// the header itself is verified (its CRC, and against the slot) before its table is
// trusted and cached. A mismatch answers ChecksumMismatch with the location, never data.

import { randomUUID } from "node:crypto";
import {
  BallastError,
  crc32c,
  crc32cCombine,
  crc32cOfPieces,
  ErrorCode,
  errorBody,
  type ResultOf,
  sledLimits,
} from "@ballast/protocol";
import { KeyedLock, type Logger } from "@ballast/runtime";
import { type Allocation, type AllocationPurpose, SpaceAllocator } from "./allocator.ts";
import {
  blobUploadIdleMsMax,
  blobUploadsInflightMax,
  blockBytes,
  crcTableCacheBytesMax,
  extentHeaderFixedBytes,
  generationJumpWithoutMark,
  generationMarkBatch,
  scrubReadBytes,
} from "./constants.ts";
import type { Device } from "./device.ts";
import {
  assert,
  checksumMismatch,
  type DamageLocation,
  deviceFailed,
  noSpace,
  notFound,
} from "./errors.ts";
import {
  alignUp,
  blockChecksums,
  blockOffset,
  type ChunkOwner,
  type DamagedSlot,
  dataBlockCount,
  decodeExtentHeader,
  encodeExtentHeader,
  extentBlocks,
  extentHeaderBytes,
  headerMismatch,
  type ObjectKind,
  type SlotRecord,
  slotOffset,
} from "./format.ts";
import type { GenerationMarkStore } from "./generation-mark.ts";
import {
  blobGetLength,
  checkBlobPart,
  checkBlobSize,
  checkChunkData,
  checkChunkReadShape,
  checkOwner,
  checkRange,
} from "./requests.ts";

/** An object in the index: its durable slot record plus where that slot is. */
interface StoredObject extends SlotRecord {
  device: number;
  slot: number;
  /** Reads in progress; a delete waits for them before its space can be reused. */
  pins: number;
  whenUnpinned: (() => void) | undefined;
}

interface Upload {
  id: string;
  key: string;
  bytes: number;
  checksum: number;
  allocation: Allocation;
  received: number;
  /** CRC32C of the bytes received so far, continued part by part. */
  receivedChecksum: number;
  blockChecksums: Uint32Array;
  lastActivityMs: number;
}

/** The buffer a failed read of a read-many answers. */
const emptyData = new Uint8Array(0);

export type Location = ResultOf<"sled.chunk.write.v1">["location"];
export type ChunkWriteResult = ResultOf<"sled.chunk.write.v1">;
export type BlobInfo = ResultOf<"sled.blob.commit.v1">;
export type ScrubReport = ResultOf<"sled.scrub.v1">;
export type Damage = ScrubReport["damaged"][number];
export type SledStat = ResultOf<"sled.stat.v1">;

/**
 * A slot that fails its checks and is not a torn write: kept out of reuse, reported by
 * reads of the key it names, by stat and by scrub, until a rewrite or delete of that key
 * (a repair, or an operator) clears it.
 */
interface DamagedSlotEntry {
  device: number;
  slot: number;
  /** The key the slot still names, when its fields decode. */
  named: { kind: ObjectKind; key: string } | undefined;
  /** What its fields still say of its extent and generation (not to be trusted). */
  place: DamagedSlot["place"];
  generation: number;
  /** The extent it claims, when that was free to hold; undefined: only the slot is held. */
  allocation: Allocation | undefined;
  reason: string;
}

export interface RecoveryReport {
  chunks: number;
  blobs: number;
  /** Slots that fail their checks and are not torn writes: kept as damage, never free. */
  damagedSlots: number;
  /** Slots a torn (never acknowledged) write left: free. */
  tornSlots: number;
  /** Slots that failed their checks but whose object was rebuilt from its extent header. */
  recoveredSlots: number;
  /** Valid slots that collided with newer ones and were cleared. */
  clearedSlots: number;
  /** Devices whose allocation map could not be read: failed, the sled goes on without them. */
  failedDevices: number;
}

/** What the sled reports about its health beside the usage in stat. */
export interface SledHealth {
  failedDevices: { device: number; path: string; reason: string }[];
  damagedSlots: { device: number; slot: number; offset: number; key?: string; reason: string }[];
}

export interface StoreOptions {
  sledId: string;
  devices: readonly Device[];
  logger: Pick<Logger, "info" | "warn" | "error">;
  /**
   * The clock for upload expiry and scrub durations: monotonic (`performance.now`) by
   * default, since it only measures durations, and a wall clock step would drop every
   * upload in flight (forward) or keep abandoned ones holding space (back).
   */
  nowMs?: () => number;
  /** The durable generation high-water mark (see the header); none: largest found + 1. */
  generationMark?: GenerationMarkStore;
  /** Generations one raise of the mark covers (generationMarkBatch by default). */
  generationMarkBatch?: number;
}

export class SledStore {
  readonly sledId: string;
  readonly devices: readonly Device[];
  private readonly allocator: SpaceAllocator;
  private readonly logger: StoreOptions["logger"];
  private readonly nowMs: () => number;
  private readonly chunks = new Map<string, StoredObject>();
  private readonly blobs = new Map<string, StoredObject>();
  private readonly uploads = new Map<string, Upload>();
  /** Damaged slots by `device/slot`. */
  private readonly damagedSlots = new Map<string, DamagedSlotEntry>();
  /**
   * Objects the last scrub that read them found damaged, by `kind/key`: counted by stat
   * (`damagedObjects`) while the object is the one stored under its key, so a repair
   * (a delete, then a new copy) or a clean scrub clears it. Before, damage a scrub found
   * was reported to its caller and logged, then forgotten: status and metrics never
   * showed it, and its chunk still counted as having its copies.
   */
  private readonly scrubDamaged = new Map<string, StoredObject>();
  private readonly chunkLocks = new KeyedLock();
  private readonly blobLocks = new KeyedLock();
  private readonly uploadLocks = new KeyedLock();
  private readonly tableCache = new Map<string, Uint32Array>();
  private tableCacheBytes = 0;
  private nextGeneration = 1;
  /** Generations below this are covered by the durable mark (all, without a mark). */
  private generationLimit = Number.POSITIVE_INFINITY;
  private readonly generationMark: GenerationMarkStore | undefined;
  private readonly generationMarkBatch: number;
  /** The mark being raised now: every writer that needs it waits for the one raise. */
  private raisingMark: Promise<void> | undefined;
  private runningScrub: Promise<ScrubReport> | undefined;

  private constructor(options: StoreOptions) {
    this.sledId = options.sledId;
    this.devices = options.devices;
    this.logger = options.logger;
    this.nowMs = options.nowMs ?? (() => performance.now());
    this.generationMark = options.generationMark;
    this.generationMarkBatch = options.generationMarkBatch ?? generationMarkBatch;
    assert(this.generationMarkBatch >= 1, "a generation mark batch is at least 1");
    this.devices.forEach((device, index) => {
      assert(device.index === index, `device ${device.index} is at position ${index}`);
    });
    this.allocator = new SpaceAllocator(
      this.devices.map((device) => ({
        dataBlocks: device.layout.dataBlocks,
        slotCount: device.layout.slotCount,
      })),
    );
  }

  /** Rebuilds the index and the allocator from the devices' allocation maps. */
  static async open(options: StoreOptions): Promise<{ store: SledStore; report: RecoveryReport }> {
    const store = new SledStore(options);
    const report = await store.recover();
    await store.loadGenerationMark();
    return { store, report };
  }

  // -------------------------------------------------------------------------------------
  // Chunks

  async writeChunk(
    owner: ChunkOwner,
    chunkId: string,
    data: Uint8Array,
  ): Promise<ChunkWriteResult> {
    checkChunkData(data.byteLength);
    return this.chunkLocks.run(chunkId, async () => {
      const existing = this.chunks.get(chunkId);
      if (existing !== undefined) return this.rewriteChunk(existing, owner, data);
      const checksums = blockChecksums(data);
      const object = await this.storeObject(
        {
          kind: "chunk",
          key: chunkId,
          owner,
          dataBytes: data.byteLength,
          // From the blocks' CRCs: one pass over the bytes, not two.
          dataChecksum: crc32cOfPieces(checksums, blockBytes, data.byteLength),
        },
        checksums,
        (dataPosition, device) => device.writeData(dataPosition, withPadding(data)),
      );
      this.chunks.set(chunkId, object);
      await this.clearDamagedNaming("chunk", chunkId);
      return {
        location: this.locate(object),
        bytes: object.dataBytes,
        checksum: object.dataChecksum,
        created: true,
      };
    });
  }

  /**
   * A chunk id is written once. The same owner and bytes again is a retry and succeeds
   * with the stored location (the stored bytes are read back and compared, not only the
   * checksum); anything else is AlreadyExists.
   *
   * The retry is acknowledged only once the object's slot is written again and synced.
   * The slot found in the index may be one whose sync failed: the write was answered
   * with an error, the sled restarted in the same boot of the machine, and its recovery
   * read the slot from the page cache, where Linux keeps pages it could not write after
   * marking them clean ("fsyncgate"), while the disk may not hold it. The extent it names
   * was synced before the slot was first written, so a slot made durable now is the
   * object made durable. On a failed device the write fails, and the caller places the
   * copy elsewhere.
   */
  private async rewriteChunk(
    existing: StoredObject,
    owner: ChunkOwner,
    data: Uint8Array,
  ): Promise<ChunkWriteResult> {
    const sameOwner =
      existing.owner?.volume === owner.volume && existing.owner.partition === owner.partition;
    const sameBytes =
      sameOwner &&
      existing.dataBytes === data.byteLength &&
      existing.dataChecksum === crc32c(data) &&
      Buffer.from(data).equals(await this.readVerified(existing, 0, existing.dataBytes));
    if (!sameBytes) {
      throw new BallastError(
        ErrorCode.AlreadyExists,
        `chunk ${existing.key} exists with ${sameOwner ? "other bytes" : "another owner"}; chunks are written once`,
        {
          details: {
            chunkId: existing.key,
            bytes: existing.dataBytes,
            checksum: existing.dataChecksum,
          },
        },
      );
    }
    const device = this.devices[existing.device]!;
    await device.writeSlot(existing.slot, slotRecordOf(existing));
    await device.sync();
    return {
      location: this.locate(existing),
      bytes: existing.dataBytes,
      checksum: existing.dataChecksum,
      created: false,
    };
  }

  async readChunk(
    owner: ChunkOwner,
    chunkId: string,
    offset: number,
    length: number,
  ): Promise<Buffer> {
    checkChunkReadShape(offset, length);
    const object = this.chunk(owner, chunkId);
    // The description is built only for the error (this runs for every range read).
    if (offset + length > object.dataBytes) {
      checkRange(`chunk ${chunkId}`, offset, length, object.dataBytes);
    }
    return this.readVerified(object, offset, length);
  }

  /**
   * Several reads of one owner's chunks (`sled.chunk.read-many.v1`), run concurrently,
   * each checked and answered as `readChunk` would: a read that fails answers an empty
   * buffer and its error in `failed`, and fails none of the others. Their lengths
   * together are bounded by the read limit, as one read's is.
   */
  async readChunks(
    owner: ChunkOwner,
    reads: readonly { chunkId: string; offset: number; length: number }[],
  ): Promise<ResultOf<"sled.chunk.read-many.v1">> {
    let bytes = 0;
    for (const read of reads) bytes += read.length;
    if (bytes > sledLimits.readBytesMax) {
      throw new BallastError(
        ErrorCode.PayloadTooLarge,
        `a read-many returns at most ${sledLimits.readBytesMax} bytes, asked for ${bytes}`,
        { details: { length: bytes, lengthMax: sledLimits.readBytesMax } },
      );
    }
    const failed: NonNullable<ResultOf<"sled.chunk.read-many.v1">["failed"]> = [];
    const data = await Promise.all(
      reads.map((read, index) =>
        this.readChunk(owner, read.chunkId, read.offset, read.length).catch(
          (error: unknown): Uint8Array => {
            failed.push({ index, ...errorBody(error) });
            return emptyData;
          },
        ),
      ),
    );
    if (failed.length === 0) return { data };
    failed.sort((left, right) => left.index - right.index);
    return { data, failed };
  }

  statChunk(owner: ChunkOwner, chunkId: string): ResultOf<"sled.chunk.stat.v1"> {
    const object = this.chunk(owner, chunkId);
    return {
      chunkId,
      owner: object.owner!,
      bytes: object.dataBytes,
      checksum: object.dataChecksum,
      location: this.locate(object),
    };
  }

  /** Chunks in id order, of the owner volume `volume` if given, after `startAfter`. */
  listChunks(
    volume: string | undefined,
    startAfter: string | undefined,
    limit: number | undefined,
  ): ResultOf<"sled.chunk.list.v1"> {
    const entriesMax = limit ?? sledLimits.chunkListEntriesMax;
    const ids = [...this.chunks.entries()]
      .filter(
        ([id, object]) =>
          (volume === undefined || object.owner?.volume === volume) &&
          (startAfter === undefined || id > startAfter),
      )
      .map(([id]) => id)
      .sort();
    return {
      chunks: ids.slice(0, entriesMax).map((id) => {
        const object = this.chunks.get(id)!;
        return { chunkId: id, owner: object.owner!, bytes: object.dataBytes };
      }),
      truncated: ids.length > entriesMax,
    };
  }

  deleteChunk(owner: ChunkOwner, chunkId: string): Promise<ResultOf<"sled.chunk.delete.v1">> {
    return this.chunkLocks.run(chunkId, async () => {
      if (!this.chunks.has(chunkId) && this.damagedNaming("chunk", chunkId).length > 0) {
        // Dropping a copy that only a damaged slot still names (a repair or an operator).
        return { freedBytes: await this.clearDamagedNaming("chunk", chunkId) };
      }
      const object = this.chunk(owner, chunkId);
      this.chunks.delete(chunkId);
      return this.removeObject(object, () => this.chunks.set(chunkId, object));
    });
  }

  private chunk(owner: ChunkOwner, chunkId: string): StoredObject {
    const object = this.chunks.get(chunkId);
    if (object === undefined) throw this.missing("chunk", chunkId);
    checkOwner(chunkId, object.owner!, owner);
    return object;
  }

  // -------------------------------------------------------------------------------------
  // Blobs

  beginBlob(key: string, bytes: number, checksum: number): ResultOf<"sled.blob.begin.v1"> {
    checkBlobSize(bytes);
    const existing = this.blobs.get(key);
    if (existing !== undefined) throw blobExists(existing);
    if (this.uploads.size >= blobUploadsInflightMax) {
      throw new BallastError(
        ErrorCode.Unavailable,
        `the sled holds ${this.uploads.size} blob uploads open, its limit; retry once one completes`,
        { details: { uploads: this.uploads.size, uploadsMax: blobUploadsInflightMax } },
      );
    }
    const allocation = this.allocate(bytes, "blob");
    const upload: Upload = {
      id: randomUUID(),
      key,
      bytes,
      checksum,
      allocation,
      received: 0,
      receivedChecksum: 0,
      blockChecksums: new Uint32Array(dataBlockCount(bytes)),
      lastActivityMs: this.nowMs(),
    };
    this.uploads.set(upload.id, upload);
    return { uploadId: upload.id, partBytesMax: sledLimits.blobPartBytesMax };
  }

  putBlobPart(
    uploadId: string,
    offset: number,
    data: Uint8Array,
  ): Promise<ResultOf<"sled.blob.part.v1">> {
    return this.uploadLocks.run(uploadId, async () => {
      const upload = this.upload(uploadId);
      checkBlobPart(upload, offset, data.byteLength);
      const device = this.devices[upload.allocation.device]!;
      const position = this.dataPosition(upload.allocation, upload.bytes) + offset;
      await device.writeData(position, withPadding(data));
      const checksums = blockChecksums(data);
      upload.blockChecksums.set(checksums, offset / blockBytes);
      upload.receivedChecksum = crc32cCombine(
        upload.receivedChecksum,
        crc32cOfPieces(checksums, blockBytes, data.byteLength),
        data.byteLength,
      );
      upload.received += data.byteLength;
      upload.lastActivityMs = this.nowMs();
      return { bytesReceived: upload.received };
    });
  }

  commitBlob(uploadId: string): Promise<BlobInfo> {
    return this.uploadLocks.run(uploadId, async () => {
      const upload = this.upload(uploadId);
      if (upload.received !== upload.bytes) {
        throw new BallastError(
          ErrorCode.InvalidArgument,
          `cannot commit blob ${upload.key}: ${upload.received} of ${upload.bytes} bytes received`,
          {
            details: { reason: "incomplete", bytesReceived: upload.received, bytes: upload.bytes },
          },
        );
      }
      if (upload.receivedChecksum !== upload.checksum) {
        this.dropUpload(upload);
        throw new BallastError(
          ErrorCode.ChecksumMismatch,
          `cannot commit blob ${upload.key}: the parts received have CRC32C ${upload.receivedChecksum}, the upload declared ${upload.checksum}; the upload is dropped`,
          {
            details: {
              blobKey: upload.key,
              declared: upload.checksum,
              received: upload.receivedChecksum,
            },
          },
        );
      }
      return this.blobLocks.run(upload.key, async () => {
        const existing = this.blobs.get(upload.key);
        if (existing !== undefined) {
          this.dropUpload(upload);
          throw blobExists(existing);
        }
        // The parts are written already; the header goes in front of them, then the
        // same two-sync order as a chunk write.
        this.uploads.delete(upload.id);
        const object = await this.storeObject(
          {
            kind: "blob",
            key: upload.key,
            owner: undefined,
            dataBytes: upload.bytes,
            dataChecksum: upload.checksum,
          },
          upload.blockChecksums,
          async () => undefined,
          upload.allocation,
        );
        this.blobs.set(upload.key, object);
        await this.clearDamagedNaming("blob", upload.key);
        return this.blobInfo(object);
      });
    });
  }

  abortBlob(uploadId: string): Promise<ResultOf<"sled.blob.abort.v1">> {
    return this.uploadLocks.run(uploadId, async () => {
      const upload = this.upload(uploadId);
      this.dropUpload(upload);
      return { freedBytes: upload.allocation.blocks * blockBytes };
    });
  }

  async getBlob(
    key: string,
    offset: number,
    length: number | undefined,
  ): Promise<ResultOf<"sled.blob.get.v1">> {
    const object = this.blobs.get(key);
    if (object === undefined) throw this.missing("blob", key);
    const wanted = blobGetLength(offset, length, object.dataBytes);
    const data = await this.readVerified(object, offset, wanted);
    return { data, bytes: object.dataBytes, checksum: object.dataChecksum };
  }

  deleteBlob(key: string): Promise<ResultOf<"sled.blob.delete.v1">> {
    return this.blobLocks.run(key, async () => {
      const object = this.blobs.get(key);
      if (object === undefined && this.damagedNaming("blob", key).length > 0) {
        return { freedBytes: await this.clearDamagedNaming("blob", key) };
      }
      if (object === undefined) throw notFound("blob", key);
      this.blobs.delete(key);
      return this.removeObject(object, () => this.blobs.set(key, object));
    });
  }

  listBlobs(
    prefix: string | undefined,
    startAfter: string | undefined,
    limit: number | undefined,
  ): ResultOf<"sled.blob.list.v1"> {
    const entriesMax = limit ?? sledLimits.blobListEntriesMax;
    const keys = [...this.blobs.keys()]
      .filter(
        (key) =>
          (prefix === undefined || key.startsWith(prefix)) &&
          (startAfter === undefined || key > startAfter),
      )
      .sort();
    return {
      blobs: keys.slice(0, entriesMax).map((key) => this.blobInfo(this.blobs.get(key)!)),
      truncated: keys.length > entriesMax,
    };
  }

  /** Drops uploads idle for longer than the limit, freeing their space. */
  async expireUploads(): Promise<number> {
    const nowMs = this.nowMs();
    let expired = 0;
    for (const id of [...this.uploads.keys()]) {
      await this.uploadLocks.run(id, async () => {
        const upload = this.uploads.get(id);
        if (upload === undefined || nowMs - upload.lastActivityMs <= blobUploadIdleMsMax) return;
        this.dropUpload(upload);
        expired++;
        this.logger.warn({ uploadId: id, key: upload.key }, "dropped an idle blob upload");
      });
    }
    return expired;
  }

  private upload(uploadId: string): Upload {
    const upload = this.uploads.get(uploadId);
    if (upload === undefined) throw notFound("upload", uploadId);
    return upload;
  }

  /** Forgets an upload; nothing durable refers to its space, so it is free at once. */
  private dropUpload(upload: Upload): void {
    this.uploads.delete(upload.id);
    this.allocator.release(upload.allocation);
  }

  private blobInfo(object: StoredObject): BlobInfo {
    return {
      key: object.key,
      bytes: object.dataBytes,
      checksum: object.dataChecksum,
      location: this.locate(object),
    };
  }

  // -------------------------------------------------------------------------------------
  // Damaged slots

  private damagedNaming(kind: ObjectKind, key: string): DamagedSlotEntry[] {
    return [...this.damagedSlots.values()].filter(
      (entry) => entry.named?.kind === kind && entry.named.key === key,
    );
  }

  /**
   * The error for a key with no object: ChecksumMismatch, with where, when a damaged slot
   * names it (the object may have been here and the damage hides it), NotFound otherwise.
   */
  private missing(kind: ObjectKind, key: string): BallastError {
    const entry = this.damagedNaming(kind, key)[0];
    if (entry === undefined) return notFound(kind, key);
    return checksumMismatch({
      sled: this.sledId,
      device: entry.device,
      offset: this.slotPosition(entry),
      kind,
      id: key,
      reason: `its slot ${entry.slot} in the allocation map is damaged (${entry.reason})`,
    });
  }

  /**
   * Clears the damaged slots that name a key, once a good copy of it is durable here or
   * it was deleted: zeros over the slot, fdatasync, then its space is free. A device that
   * cannot take the write keeps the entry (and its space), and says so in the log.
   */
  private async clearDamagedNaming(kind: ObjectKind, key: string): Promise<number> {
    let freedBytes = 0;
    for (const entry of this.damagedNaming(kind, key)) {
      const device = this.devices[entry.device]!;
      try {
        await device.writeSlot(entry.slot, undefined);
        await device.sync();
      } catch (error) {
        this.logger.error(
          { device: entry.device, slot: entry.slot, key, error: String(error) },
          "could not clear a damaged slot",
        );
        continue;
      }
      this.damagedSlots.delete(`${entry.device}/${entry.slot}`);
      if (entry.allocation === undefined) {
        this.allocator.releaseSlot(entry.device, entry.slot);
      } else {
        this.allocator.release(entry.allocation);
        freedBytes += entry.allocation.blocks * blockBytes;
      }
      this.logger.warn({ device: entry.device, slot: entry.slot, key }, "cleared a damaged slot");
    }
    return freedBytes;
  }

  private slotPosition(place: { device: number; slot: number }): number {
    return slotOffset(this.devices[place.device]!.layout, place.slot);
  }

  /** Failed devices and damaged slots: what stat's numbers alone do not say. */
  health(): SledHealth {
    return {
      failedDevices: this.devices.flatMap((device) =>
        device.failed
          ? [{ device: device.index, path: device.path, reason: device.failureMessage ?? "" }]
          : [],
      ),
      damagedSlots: [...this.damagedSlots.values()].map((entry) => ({
        device: entry.device,
        slot: entry.slot,
        offset: this.slotPosition(entry),
        ...(entry.named === undefined ? {} : { key: entry.named.key }),
        reason: entry.reason,
      })),
    };
  }

  // -------------------------------------------------------------------------------------
  // Usage and scrub

  stat(): SledStat {
    this.noteFailedDevices();
    const devices = this.devices.map((device) => {
      const usage = this.allocator.usage(device.index);
      // A failed device takes no writes: none of its free space can be used.
      const usable = device.failed ? 0 : 1;
      let chunks = 0;
      let blobs = 0;
      for (const object of this.chunks.values()) if (object.device === device.index) chunks++;
      for (const object of this.blobs.values()) if (object.device === device.index) blobs++;
      return {
        device: device.index,
        path: device.path,
        deviceBytes: device.layout.deviceBytes,
        capacityBytes: usage.dataBlocks * blockBytes,
        usedBytes: usage.usedBlocks * blockBytes,
        freeBytes: usable * usage.freeBlocks * blockBytes,
        largestFreeBytes: usable * usage.largestFreeBlocks * blockBytes,
        slots: usage.slotCount,
        slotsUsed: usage.slotsUsed,
        chunks,
        blobs,
        syncs: device.syncs,
        failed: device.failed,
      };
    });
    const sum = (pick: (device: (typeof devices)[number]) => number) =>
      devices.reduce((total, device) => total + pick(device), 0);
    return {
      sled: this.sledId,
      capacityBytes: sum((device) => device.capacityBytes),
      usedBytes: sum((device) => device.usedBytes),
      freeBytes: sum((device) => device.freeBytes),
      chunks: this.chunks.size,
      blobs: this.blobs.size,
      uploads: this.uploads.size,
      devices,
      damagedObjects: this.damagedObjects(),
    };
  }

  /**
   * Objects a scrub found damaged that are still stored as they were (`scrubDamaged`),
   * and damaged slots: what a stat counts as damage here.
   */
  damagedObjects(): number {
    for (const [damagedKey, object] of this.scrubDamaged) {
      const current = (object.kind === "chunk" ? this.chunks : this.blobs).get(object.key);
      if (current !== object) this.scrubDamaged.delete(damagedKey);
    }
    return this.scrubDamaged.size + this.damagedSlots.size;
  }

  /**
   * The chunks the last scrub found damaged that are still stored so, in id order after
   * `startAfter` (`sled.chunk.damaged.v1`): head nodes count such a copy as none.
   */
  damagedChunks(
    startAfter: string | undefined,
    limit: number | undefined,
  ): ResultOf<"sled.chunk.damaged.v1"> {
    this.damagedObjects(); // forgets the repaired and deleted
    const entriesMax = limit ?? sledLimits.chunkListEntriesMax;
    const damaged = [...this.scrubDamaged.values()]
      .filter(
        (object) =>
          object.kind === "chunk" &&
          object.owner !== undefined &&
          (startAfter === undefined || object.key > startAfter),
      )
      .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    return {
      chunks: damaged.slice(0, entriesMax).map((object) => ({
        chunkId: object.key,
        owner: object.owner!,
        bytes: object.dataBytes,
      })),
      truncated: damaged.length > entriesMax,
    };
  }

  /** Verifies every stored object; a scrub asked for while one runs shares its report. */
  scrub(): Promise<ScrubReport> {
    this.runningScrub ??= this.scrubAll().finally(() => {
      this.runningScrub = undefined;
    });
    return this.runningScrub;
  }

  private async scrubAll(): Promise<ScrubReport> {
    const startedAtMs = this.nowMs();
    const report: ScrubReport = {
      sled: this.sledId,
      chunksChecked: 0,
      blobsChecked: 0,
      bytesChecked: 0,
      durationMs: 0,
      damaged: [],
      damagedTruncated: false,
    };
    const objects = [...this.chunks.values(), ...this.blobs.values()];
    for (const object of objects) {
      const current = (object.kind === "chunk" ? this.chunks : this.blobs).get(object.key);
      if (current !== object) continue; // deleted (or replaced) since the scrub began
      const damage = await this.scrubObject(object);
      if (object.kind === "chunk") report.chunksChecked++;
      else report.blobsChecked++;
      report.bytesChecked += object.dataBytes;
      const damagedKey = `${object.kind}/${object.key}`;
      if (damage === undefined) {
        this.scrubDamaged.delete(damagedKey);
        continue;
      }
      this.scrubDamaged.set(damagedKey, object);
      if (report.damaged.length < sledLimits.scrubReportEntriesMax) report.damaged.push(damage);
      else report.damagedTruncated = true;
      this.logger.error({ ...damage }, "scrub found a damaged object");
    }
    for (const entry of this.damagedSlots.values()) {
      const damage: Damage = {
        kind: entry.named?.kind ?? "chunk",
        id: entry.named?.key ?? `(unnamed: slot ${entry.slot} of device ${entry.device})`,
        device: entry.device,
        offset: this.slotPosition(entry),
        badBlocks: 0,
        reason: `its slot ${entry.slot} in the allocation map is damaged (${entry.reason})`,
      };
      if (report.damaged.length < sledLimits.scrubReportEntriesMax) report.damaged.push(damage);
      else report.damagedTruncated = true;
    }
    report.durationMs = Math.max(0, Math.round(this.nowMs() - startedAtMs));
    return report;
  }

  /** Reads an object whole, block by block, from disk (never from the table cache). */
  private async scrubObject(object: StoredObject): Promise<Damage | undefined> {
    const base = {
      kind: object.kind,
      id: object.key,
      ...(object.owner === undefined ? {} : { owner: object.owner }),
      device: object.device,
    };
    this.pin(object);
    try {
      return await this.verifyObject(object, base);
    } catch (error) {
      // A header that fails its checks, or bytes the device cannot read at all.
      const reason =
        error instanceof BallastError ? error.message : `unreadable: ${(error as Error).message}`;
      return { ...base, offset: this.extentPosition(object), badBlocks: 0, reason };
    } finally {
      this.unpin(object);
    }
  }

  private async verifyObject(
    object: StoredObject,
    base: Omit<Damage, "offset" | "badBlocks" | "reason">,
  ): Promise<Damage | undefined> {
    const checksums = await this.readHeader(object);
    const device = this.devices[object.device]!;
    const dataPosition = this.dataPosition(object, object.dataBytes);
    let badBlocks = 0;
    let firstBadOffset = 0;
    let wholeChecksum = 0;
    for (let offset = 0; offset < object.dataBytes; offset += scrubReadBytes) {
      const length = Math.min(scrubReadBytes, object.dataBytes - offset);
      const bytes = await device.read(dataPosition + offset, length);
      wholeChecksum = crc32c(bytes, wholeChecksum);
      for (let at = 0; at < length; at += blockBytes) {
        const block = (offset + at) / blockBytes;
        if (crc32c(bytes.subarray(at, at + blockBytes)) === checksums[block]) continue;
        if (badBlocks === 0) firstBadOffset = dataPosition + offset + at;
        badBlocks++;
      }
    }
    if (badBlocks > 0) {
      return {
        ...base,
        offset: firstBadOffset,
        badBlocks,
        reason: `${badBlocks} of ${checksums.length} blocks fail their checksum`,
      };
    }
    if (wholeChecksum !== object.dataChecksum) {
      return {
        ...base,
        offset: dataPosition,
        badBlocks: 0,
        reason: "every block matches its CRC but the whole object does not match its checksum",
      };
    }
    return undefined;
  }

  // -------------------------------------------------------------------------------------
  // The write and delete paths shared by chunks and blobs

  /**
   * Makes an object durable in the order of the header comment and returns it; the
   * caller puts it in the index. `writeData` writes the data behind the header (a blob's
   * parts are on disk already). Space is released on failure only while no slot may be
   * on disk; after that the device is failed and the next start recovers.
   *
   * When the data phase fails because the device failed, nothing on disk refers to the
   * attempt, so a write the store placed itself (a chunk) is placed again on another,
   * healthy device; a blob's parts are on the failed device already and its commit fails.
   */
  private async storeObject(
    fields: Omit<SlotRecord, "generation" | "start" | "blocks">,
    checksums: Uint32Array,
    writeData: (dataPosition: number, device: Device) => Promise<void>,
    reserved?: Allocation,
  ): Promise<StoredObject> {
    if (reserved !== undefined) {
      // A blob's parts are on this device already: no retry, but the caller gets the
      // device's own error, not the internal marker.
      return this.storeObjectAt(reserved, fields, checksums, writeData).catch((error) => {
        throw error instanceof DataPhaseFailure ? error.cause : error;
      });
    }
    for (let attempt = 1; ; attempt++) {
      // Only chunks come here: a blob's space was reserved at its begin.
      const allocation = this.allocate(fields.dataBytes, fields.kind);
      try {
        return await this.storeObjectAt(allocation, fields, checksums, writeData);
      } catch (error) {
        const retry =
          error instanceof DataPhaseFailure &&
          this.devices[allocation.device]!.failed &&
          attempt < this.devices.length;
        if (!retry) throw error instanceof DataPhaseFailure ? error.cause : error;
        this.logger.warn(
          { device: allocation.device, key: fields.key, error: String(error.cause) },
          "a device failed under a write; placing it on another",
        );
      }
    }
  }

  private async storeObjectAt(
    allocation: Allocation,
    fields: Omit<SlotRecord, "generation" | "start" | "blocks">,
    checksums: Uint32Array,
    writeData: (dataPosition: number, device: Device) => Promise<void>,
  ): Promise<StoredObject> {
    const device = this.devices[allocation.device]!;
    let generation: number;
    try {
      generation = await this.takeGeneration();
    } catch (error) {
      this.allocator.release(allocation);
      throw error;
    }
    const object: StoredObject = {
      ...fields,
      generation,
      start: allocation.start,
      blocks: allocation.blocks,
      device: allocation.device,
      slot: allocation.slot,
      pins: 0,
      whenUnpinned: undefined,
    };
    const header = encodeExtentHeader({
      ...fields,
      generation: object.generation,
      blockChecksums: checksums,
    });
    try {
      await device.writeData(this.extentPosition(object), [header]);
      await writeData(this.dataPosition(object, object.dataBytes), device);
      await device.sync();
    } catch (error) {
      this.allocator.release(allocation);
      throw new DataPhaseFailure(error);
    }
    await device.writeSlot(object.slot, slotRecordOf(object));
    await device.sync();
    return object;
  }

  /**
   * Clears the object's slot durably, waits for its readers, then frees its space. When
   * the device fails the clear, the slot may still be on disk and the data is untouched,
   * so the object goes back in the index (`restore`): it stays readable, not deleted.
   */
  private async removeObject(
    object: StoredObject,
    restore: () => void,
  ): Promise<{ freedBytes: number }> {
    const device = this.devices[object.device]!;
    try {
      await device.writeSlot(object.slot, undefined);
      await device.sync();
    } catch (error) {
      restore();
      throw error;
    }
    if (object.pins > 0) {
      await new Promise<void>((resolve) => {
        object.whenUnpinned = resolve;
      });
    }
    this.allocator.release(allocationOf(object));
    this.forgetTable(object);
    return { freedBytes: object.blocks * blockBytes };
  }

  private allocate(dataBytes: number, purpose: AllocationPurpose): Allocation {
    this.noteFailedDevices();
    const blocks = extentBlocks(dataBytes);
    const outcome = this.allocator.allocate(blocks, purpose);
    if (outcome.ok) return outcome.allocation;
    if (outcome.reason === "no-healthy-device") {
      const first = this.devices[0]!;
      throw deviceFailed(first.index, new Error(`every device of the sled failed`));
    }
    throw noSpace(
      dataBytes,
      outcome.reason === "no-free-slot"
        ? "every slot of every device's allocation map is in use"
        : outcome.reason === "reserve"
          ? "the sled is full for data: the rest of every device is reserved for checkpoints"
          : `no device has ${blocks * blockBytes} contiguous free bytes (the largest free extent is ${outcome.largestFreeBlocks * blockBytes})`,
      {
        reason: outcome.reason,
        extentBytes: blocks * blockBytes,
        largestFreeBytes: outcome.largestFreeBlocks * blockBytes,
      },
    );
  }

  /** Takes devices that failed (a write or sync error latched by the device) out of placement. */
  private noteFailedDevices(): void {
    for (const device of this.devices) {
      if (!device.failed || this.allocator.isFailed(device.index)) continue;
      this.allocator.fail(device.index);
      this.logger.error(
        { device: device.index, path: device.path, reason: device.failureMessage },
        "device failed: it takes no more writes until the sled restarts",
      );
    }
  }

  // -------------------------------------------------------------------------------------
  // Verified reads

  /** Reads `length` bytes at `offset` of an object, verifying every block it touches. */
  private async readVerified(
    object: StoredObject,
    offset: number,
    length: number,
  ): Promise<Buffer> {
    if (length === 0) return Buffer.alloc(0);
    this.pin(object);
    try {
      // A table in the cache is taken in this turn; only one not cached waits for the disk.
      const checksums = this.cachedTable(object) ?? (await this.loadTable(object));
      const firstBlock = Math.floor(offset / blockBytes);
      const lastBlock = Math.floor((offset + length - 1) / blockBytes);
      const readStart = firstBlock * blockBytes;
      const readEnd = Math.min((lastBlock + 1) * blockBytes, object.dataBytes);
      const dataPosition = this.dataPosition(object, object.dataBytes);
      const bytes = await this.devices[object.device]!.read(
        dataPosition + readStart,
        readEnd - readStart,
      );
      for (let block = firstBlock; block <= lastBlock; block++) {
        const at = (block - firstBlock) * blockBytes;
        // A read of one block is checked whole, without a view of it.
        const blockData =
          bytes.byteLength <= blockBytes ? bytes : bytes.subarray(at, at + blockBytes);
        if (crc32c(blockData) !== checksums[block]) {
          throw checksumMismatch(
            this.damage(
              object,
              dataPosition + block * blockBytes,
              "a data block failed its checksum",
              block,
            ),
          );
        }
      }
      return offset === readStart && length === bytes.byteLength
        ? bytes
        : bytes.subarray(offset - readStart, offset - readStart + length);
    } finally {
      this.unpin(object);
    }
  }

  /** The object's verified per-block CRC table if the cache holds it, now the most recent. */
  private cachedTable(object: StoredObject): Uint32Array | undefined {
    const key = tableKey(object);
    const cached = this.tableCache.get(key);
    if (cached !== undefined) {
      this.tableCache.delete(key);
      this.tableCache.set(key, cached); // most recently used goes last
    }
    return cached;
  }

  /** The object's verified per-block CRC table, read from the disk (not cached: see cachedTable). */
  private async loadTable(object: StoredObject): Promise<Uint32Array> {
    const checksums = await this.readHeader(object);
    // Another read of the object may have loaded the table while this one waited: keep
    // one copy and count it once. Counted twice, the drift only grew (a read-many of
    // one new chunk's ranges misses together), until the count alone passed the bound
    // and every table was evicted as soon as it went in: a header read on every read.
    const loaded = this.cachedTable(object);
    if (loaded !== undefined) return loaded;
    const key = tableKey(object);
    this.tableCache.set(key, checksums);
    this.tableCacheBytes += checksums.byteLength;
    for (const [oldest, table] of this.tableCache) {
      if (this.tableCacheBytes <= crcTableCacheBytesMax) break;
      this.tableCache.delete(oldest);
      this.tableCacheBytes -= table.byteLength;
    }
    return checksums;
  }

  /** Reads and checks an object's header: its own CRC, then that it is this slot's object. */
  private async readHeader(object: StoredObject): Promise<Uint32Array> {
    const position = this.extentPosition(object);
    const bytes = await this.devices[object.device]!.read(
      position,
      extentHeaderBytes(object.dataBytes),
    );
    const decoding = decodeExtentHeader(bytes);
    if (!decoding.ok) throw checksumMismatch(this.damage(object, position, decoding.detail));
    const mismatch = headerMismatch(decoding.header, object);
    if (mismatch !== undefined) throw checksumMismatch(this.damage(object, position, mismatch));
    return decoding.header.blockChecksums;
  }

  /** The verified CRC tables held in memory, and the bytes counted for them (tests, status). */
  crcTableCacheUse(): { tables: number; bytes: number; bytesCounted: number } {
    let bytes = 0;
    for (const table of this.tableCache.values()) bytes += table.byteLength;
    return { tables: this.tableCache.size, bytes, bytesCounted: this.tableCacheBytes };
  }

  private forgetTable(object: StoredObject): void {
    const key = tableKey(object);
    const table = this.tableCache.get(key);
    if (table === undefined) return;
    this.tableCache.delete(key);
    this.tableCacheBytes -= table.byteLength;
  }

  private damage(
    object: StoredObject,
    offset: number,
    reason: string,
    block?: number,
  ): DamageLocation {
    return {
      sled: this.sledId,
      device: object.device,
      offset,
      kind: object.kind,
      id: object.key,
      ...(block === undefined ? {} : { block }),
      reason,
    };
  }

  private pin(object: StoredObject): void {
    object.pins++;
  }

  private unpin(object: StoredObject): void {
    object.pins--;
    assert(object.pins >= 0, `object ${object.key} unpinned more often than pinned`);
    if (object.pins === 0 && object.whenUnpinned !== undefined) {
      const resolve = object.whenUnpinned;
      object.whenUnpinned = undefined;
      resolve();
    }
  }

  // -------------------------------------------------------------------------------------
  // Places

  private extentPosition(place: { device: number; start: number }): number {
    return blockOffset(this.devices[place.device]!.layout, place.start);
  }

  private dataPosition(place: { device: number; start: number }, dataBytes: number): number {
    return this.extentPosition(place) + extentHeaderBytes(dataBytes);
  }

  private locate(object: StoredObject): Location {
    return {
      sled: this.sledId,
      device: object.device,
      offset: this.extentPosition(object),
      extentBytes: object.blocks * blockBytes,
      dataOffset: this.dataPosition(object, object.dataBytes),
    };
  }

  /**
   * A generation never used before on this sled: below the durable mark, which is raised
   * first when the next one is not (one raise at a time; concurrent writers wait for it).
   */
  private async takeGeneration(): Promise<number> {
    while (this.nextGeneration >= this.generationLimit) {
      this.raisingMark ??= this.raiseMark().finally(() => {
        this.raisingMark = undefined;
      });
      await this.raisingMark;
    }
    return this.nextGeneration++;
  }

  /** Makes a mark a batch above the next generation durable; only then may it be used. */
  private async raiseMark(): Promise<void> {
    const mark = this.nextGeneration + this.generationMarkBatch;
    try {
      await this.generationMark!.write(mark);
    } catch (error) {
      throw new BallastError(
        ErrorCode.Unavailable,
        `sled ${this.sledId} cannot store a write: recording its generation high-water mark ${mark} failed (${(error as Error).message})`,
        { cause: error },
      );
    }
    this.generationLimit = Math.max(this.generationLimit, mark);
  }

  /**
   * After recovery: the next generation is also at or above the durable mark, or, with
   * the mark missing or damaged, far above the largest found (generationJumpWithoutMark).
   * The mark is raised at once, so the first write does not wait for it; if that fails,
   * the first write tries again (and fails while the mark cannot be written).
   */
  private async loadGenerationMark(): Promise<void> {
    if (this.generationMark === undefined) return;
    const found = this.nextGeneration;
    const reading = await this.generationMark.read();
    if ("mark" in reading) {
      this.nextGeneration = Math.max(found, reading.mark);
    } else {
      this.nextGeneration = found + generationJumpWithoutMark;
      this.logger.warn(
        { why: reading.missing, largestFound: found - 1, next: this.nextGeneration },
        "no generation high-water mark: generations jump far past the largest found",
      );
    }
    this.generationLimit = this.nextGeneration;
    try {
      await this.raiseMark();
    } catch (error) {
      this.logger.error(
        { error: String(error) },
        "cannot record the generation high-water mark; writes wait for it",
      );
    }
  }

  // -------------------------------------------------------------------------------------
  // Recovery

  private async recover(): Promise<RecoveryReport> {
    const report: RecoveryReport = {
      chunks: 0,
      blobs: 0,
      damagedSlots: 0,
      tornSlots: 0,
      recoveredSlots: 0,
      clearedSlots: 0,
      failedDevices: 0,
    };
    const found: StoredObject[] = [];
    /** Objects rebuilt from their extent header; their slot is rewritten once claimed. */
    const rebuilt = new Set<StoredObject>();
    const damaged: DamagedSlotEntry[] = [];
    for (const device of this.devices) {
      let slots: Awaited<ReturnType<Device["readSlots"]>>;
      try {
        slots = await device.readSlots();
      } catch (error) {
        // Without its allocation map nothing on the device can be found or placed safely:
        // the device fails, the sled serves from the others.
        device.markFailed(error);
        report.failedDevices++;
        this.logger.error(
          { device: device.index, path: device.path, error: String(error) },
          "cannot read the device's allocation map; the device is failed",
        );
        continue;
      }
      for (const { slot, decoding } of slots) {
        if (decoding.state === "used") {
          found.push({
            ...decoding.record,
            device: device.index,
            slot,
            pins: 0,
            whenUnpinned: undefined,
          });
          continue;
        }
        const record = await this.rebuildFromHeader(device, decoding.inspection);
        if (record !== undefined) {
          const object: StoredObject = {
            ...record,
            device: device.index,
            slot,
            pins: 0,
            whenUnpinned: undefined,
          };
          found.push(object);
          rebuilt.add(object);
          report.recoveredSlots++;
          this.logger.warn(
            { device: device.index, slot, key: record.key, problem: decoding.detail },
            "rebuilt a slot that fails its checks from its object's extent header",
          );
        } else if (decoding.inspection.torn) {
          report.tornSlots++;
          this.logger.warn(
            { device: device.index, slot, problem: decoding.detail },
            "a torn slot write (never acknowledged); its space is free",
          );
        } else {
          damaged.push({
            device: device.index,
            slot,
            named: decoding.inspection.named,
            place: decoding.inspection.place,
            generation: decoding.inspection.generation ?? 0,
            allocation: undefined,
            reason: decoding.detail,
          });
        }
      }
    }
    found.sort((a, b) => b.generation - a.generation);
    // Generations only grow, even past slots that are cleared below and damaged slots.
    this.nextGeneration =
      Math.max(found[0]?.generation ?? 0, ...damaged.map((entry) => entry.generation)) + 1;
    const toClear: StoredObject[] = [];
    const toRewrite: StoredObject[] = [];
    for (const object of found) {
      const index = object.kind === "chunk" ? this.chunks : this.blobs;
      const expectedBlocks = extentBlocks(object.dataBytes);
      let problem: string | undefined;
      if (index.has(object.key)) problem = "a newer slot holds the same key";
      else if (object.blocks !== expectedBlocks)
        problem = `its extent of ${object.blocks} blocks does not fit ${object.dataBytes} bytes`;
      else {
        const outcome = this.allocator.claim(allocationOf(object));
        if (outcome !== "claimed") problem = `its space could not be claimed (${outcome})`;
      }
      if (problem !== undefined) {
        toClear.push(object);
        this.logger.error(
          {
            device: object.device,
            slot: object.slot,
            key: object.key,
            generation: object.generation,
            problem,
          },
          "clearing a slot that collides with newer state",
        );
        continue;
      }
      index.set(object.key, object);
      if (rebuilt.has(object)) toRewrite.push(object);
    }
    for (const entry of damaged) {
      // The extent a damaged slot claims is held too when nothing valid holds it (it may
      // be the object's data); otherwise only the slot is.
      const place = entry.place;
      const onDevice =
        place !== undefined &&
        place.start + place.blocks <= this.devices[entry.device]!.layout.dataBlocks;
      const allocation = onDevice
        ? { device: entry.device, slot: entry.slot, start: place.start, blocks: place.blocks }
        : undefined;
      if (allocation !== undefined && this.allocator.claim(allocation) === "claimed") {
        entry.allocation = allocation;
      } else {
        assert(this.allocator.claimSlot(entry.device, entry.slot), "a damaged slot is free");
      }
      this.damagedSlots.set(`${entry.device}/${entry.slot}`, entry);
      report.damagedSlots++;
      this.logger.error(
        {
          device: entry.device,
          slot: entry.slot,
          offset: this.slotPosition(entry),
          key: entry.named?.key,
          problem: entry.reason,
        },
        "a slot of the allocation map is damaged; it is kept as damage, not reused",
      );
    }
    const written = new Set<number>();
    for (const object of toClear) {
      // Cleared slots were never claimed; their slot index is free in the allocator.
      await this.devices[object.device]!.writeSlot(object.slot, undefined);
      written.add(object.device);
    }
    for (const object of toRewrite) {
      await this.devices[object.device]!.writeSlot(object.slot, slotRecordOf(object));
      written.add(object.device);
    }
    await Promise.all([...written].map((device) => this.devices[device]!.sync()));
    this.noteFailedDevices();
    report.chunks = this.chunks.size;
    report.blobs = this.blobs.size;
    report.clearedSlots = toClear.length;
    return report;
  }

  /**
   * The object a damaged slot described, rebuilt from the self-describing extent header
   * at the place the slot still names, if that header is whole and is the same object
   * (same generation, which is unique sled-wide, and an extent of the same size).
   * Because a slot is written only after its extent is durable, such an object is
   * complete whether or not its write was acknowledged.
   */
  private async rebuildFromHeader(
    device: Device,
    inspection: DamagedSlot,
  ): Promise<SlotRecord | undefined> {
    const place = inspection.place;
    if (place === undefined || inspection.generation === undefined) return undefined;
    if (place.start + place.blocks > device.layout.dataBlocks) return undefined;
    try {
      const position = blockOffset(device.layout, place.start);
      const fixed = await device.read(position, extentHeaderFixedBytes);
      const tableBlocks = fixed.readUInt32LE(32);
      const headerBytes = extentHeaderBytes(tableBlocks * blockBytes);
      if (headerBytes > place.blocks * blockBytes) return undefined;
      const decoding = decodeExtentHeader(await device.read(position, headerBytes));
      if (!decoding.ok) return undefined;
      const header = decoding.header;
      if (header.generation !== inspection.generation) return undefined;
      if (extentBlocks(header.dataBytes) !== place.blocks) return undefined;
      return {
        kind: header.kind,
        key: header.key,
        owner: header.owner,
        generation: header.generation,
        dataBytes: header.dataBytes,
        dataChecksum: header.dataChecksum,
        start: place.start,
        blocks: place.blocks,
      };
    } catch {
      return undefined;
    }
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.devices.map((device) => device.close()));
  }
}

/** A write that failed before its slot was written: nothing durable refers to it. */
class DataPhaseFailure extends Error {
  constructor(override readonly cause: unknown) {
    super("the data phase of a write failed", { cause });
  }
}

function slotRecordOf(object: StoredObject): SlotRecord {
  return {
    kind: object.kind,
    key: object.key,
    owner: object.owner,
    generation: object.generation,
    dataBytes: object.dataBytes,
    dataChecksum: object.dataChecksum,
    start: object.start,
    blocks: object.blocks,
  };
}

function allocationOf(object: StoredObject): Allocation {
  return { device: object.device, slot: object.slot, start: object.start, blocks: object.blocks };
}

function tableKey(object: StoredObject): string {
  return `${object.device}/${object.slot}/${object.generation}`;
}

/** The data followed by zeros up to the next block boundary. */
function withPadding(data: Uint8Array): Uint8Array[] {
  const padding = alignUp(data.byteLength, blockBytes) - data.byteLength;
  return padding === 0 ? [data] : [data, Buffer.alloc(padding)];
}

function blobExists(existing: StoredObject): BallastError {
  return new BallastError(
    ErrorCode.AlreadyExists,
    `blob ${existing.key} exists; blobs are written once (delete it first to replace it)`,
    {
      details: {
        blobKey: existing.key,
        bytes: existing.dataBytes,
        checksum: existing.dataChecksum,
      },
    },
  );
}
