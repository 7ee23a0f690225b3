// One device of a sled: a block file with a superblock, a slot table and a data region
// (the layout is in format.ts). This module checks that a device is this sled's and of
// this format before anything else touches it, and moves records and extents between
// memory and the file; what the records mean is the store's business.
//
// Failure model: an I/O error on the write path (a write or an fdatasync) leaves the
// device's durable state unknown, so the device is marked failed (latched) and refuses
// further writes until the sled restarts and recovers from what is on disk; reads go on.
// A failed fdatasync fails every writer that joined it and every later one (group-
// commit.ts): after a failed fsync the kernel may have dropped the dirty pages, so a
// later sync that succeeds proves nothing. The store also fails a device whose slot
// table cannot be read at open (`markFailed`); the other devices of the sled go on.

import { testWritesHang } from "@ballast/runtime";
import type { BlockFile } from "./block-file.ts";
import {
  blockBytes,
  deviceFormatVersion,
  slotBytes,
  superblockBytes,
  superblockCopies,
} from "./constants.ts";
import { DeviceError, deviceFailed } from "./errors.ts";
import {
  type DeviceLayout,
  decodeSlot,
  decodeSuperblock,
  deviceLayout,
  encodeSlot,
  encodeSuperblock,
  type SlotDecoding,
  type SlotRecord,
  type Superblock,
  slotOffset,
} from "./format.ts";
import { GroupCommit } from "./group-commit.ts";

/** What a device must be to belong to this sled: checked against its superblock. */
export interface DeviceIdentity {
  sledId: string;
  deviceIndex: number;
  deviceCount: number;
  deviceBytes: number;
}

export interface DeviceOpenReport {
  /** Superblock copies that failed their checks and were rewritten from the good one. */
  superblockCopiesRepaired: number;
}

/** The slot table is read in pieces of this many slots (8 MiB). */
const slotsPerRead = 16_384;

const emptySlot = Buffer.alloc(slotBytes);
/** A piece of free slots, to skip a zero piece with one comparison. */
const emptyPiece = Buffer.alloc(slotsPerRead * slotBytes);

/** A slot that is not free: where it is in the table, and what it holds. */
export interface SlotInUse {
  slot: number;
  decoding: Exclude<SlotDecoding, { state: "empty" }>;
}

export class Device {
  readonly index: number;
  readonly path: string;
  readonly superblock: Superblock;
  readonly layout: DeviceLayout;
  private readonly file: BlockFile;
  private readonly commit: GroupCommit;
  private failure: unknown;

  private constructor(path: string, file: BlockFile, superblock: Superblock) {
    this.index = superblock.deviceIndex;
    this.path = path;
    this.file = file;
    this.superblock = superblock;
    this.layout = {
      deviceBytes: superblock.deviceBytes,
      slotCount: superblock.slotCount,
      slotTableOffset: superblock.slotTableOffset,
      dataOffset: superblock.dataOffset,
      dataBlocks: superblock.dataBlocks,
    };
    this.commit = new GroupCommit(() => this.file.sync());
  }

  /**
   * Writes both superblock copies of a new device and syncs them. The file must read as
   * zeros (a new preallocated file): a zero slot table is an empty allocation map.
   */
  static async format(
    file: BlockFile,
    identity: DeviceIdentity,
    stamp: { createdAtMs: number; deviceUuid: string },
  ): Promise<void> {
    const superblock: Superblock = {
      ...deviceLayout(identity.deviceBytes),
      formatVersion: deviceFormatVersion,
      sledId: identity.sledId,
      deviceIndex: identity.deviceIndex,
      deviceCount: identity.deviceCount,
      blockBytes,
      slotBytes,
      createdAtMs: stamp.createdAtMs,
      deviceUuid: stamp.deviceUuid,
    };
    const image = encodeSuperblock(superblock);
    await file.write(
      0,
      Array.from({ length: superblockCopies }, () => image),
    );
    await file.sync();
  }

  /**
   * Opens a device after checking that it is a Ballast sled device of this format, that it
   * belongs to `expected`, and that its size agrees with its superblock. One damaged
   * superblock copy is rewritten from the other; a device whose copies are both damaged,
   * or which is anything but what is expected, is refused with a DeviceError.
   */
  static async open(
    file: BlockFile,
    path: string,
    expected: DeviceIdentity,
  ): Promise<{ device: Device; report: DeviceOpenReport }> {
    const fileBytes = await file.size();
    if (fileBytes < superblockBytes * superblockCopies) {
      throw new DeviceError(path, `it is ${fileBytes} bytes, too small to hold a superblock`);
    }
    const copies = await file.read(0, superblockBytes * superblockCopies);
    const decodings = Array.from({ length: superblockCopies }, (_, copy) =>
      decodeSuperblock(copies.subarray(copy * superblockBytes, (copy + 1) * superblockBytes)),
    );
    const good = decodings.flatMap((decoding) => (decoding.ok ? [decoding.superblock] : []));
    if (good.length === 0) {
      const problems = decodings.map((decoding, copy) =>
        decoding.ok ? "" : `copy ${copy}: ${decoding.detail}`,
      );
      const notOurs = decodings.every(
        (decoding) => !decoding.ok && decoding.problem !== "checksum",
      );
      throw new DeviceError(
        path,
        `${notOurs ? "it is not a Ballast sled device of this format" : "both superblock copies are damaged"} (${problems.join("; ")})`,
      );
    }
    const superblock = good[0]!;
    const image = encodeSuperblock(superblock);
    if (good.some((other) => !encodeSuperblock(other).equals(image))) {
      throw new DeviceError(path, "its two superblock copies are valid but disagree");
    }
    checkIdentity(path, superblock, expected, fileBytes);
    let superblockCopiesRepaired = 0;
    for (let copy = 0; copy < superblockCopies; copy++) {
      if (decodings[copy]?.ok) continue;
      await file.write(copy * superblockBytes, [image]);
      superblockCopiesRepaired++;
    }
    if (superblockCopiesRepaired > 0) await file.sync();
    return { device: new Device(path, file, superblock), report: { superblockCopiesRepaired } };
  }

  get failed(): boolean {
    return this.failure !== undefined;
  }

  /** Why the device takes no writes, or undefined while it is healthy. */
  get failureMessage(): string | undefined {
    if (this.failure === undefined) return undefined;
    return (this.failure as Error)?.message ?? String(this.failure);
  }

  /** Latches a failure found outside the write path (an unreadable slot table at open). */
  markFailed(cause: unknown): void {
    this.failure ??= cause;
  }

  get syncs(): number {
    return this.commit.syncs;
  }

  /**
   * Reads the whole allocation map and answers the slots that are not free, in slot
   * order. A piece of the table at a time; a piece of zeros (the common case: a device
   * is mostly free until it fills) costs one comparison, and a free slot is never
   * decoded nor kept. Keeping one entry per slot made a large device's start take
   * minutes and run out of heap.
   */
  async readSlots(): Promise<SlotInUse[]> {
    const inUse: SlotInUse[] = [];
    for (let first = 0; first < this.layout.slotCount; first += slotsPerRead) {
      const count = Math.min(slotsPerRead, this.layout.slotCount - first);
      const bytes = await this.file.read(slotOffset(this.layout, first), count * slotBytes);
      if (bytes.equals(emptyPiece.subarray(0, bytes.length))) continue;
      for (let slot = 0; slot < count; slot++) {
        const image = bytes.subarray(slot * slotBytes, (slot + 1) * slotBytes);
        if (image.equals(emptySlot)) continue;
        const decoding = decodeSlot(image);
        if (decoding.state !== "empty") inUse.push({ slot: first + slot, decoding });
      }
    }
    return inUse;
  }

  /** Writes slot `slot`: a record, or zeros (free) when `record` is undefined. Not synced. */
  writeSlot(slot: number, record: SlotRecord | undefined): Promise<void> {
    const image = record === undefined ? emptySlot : encodeSlot(record);
    return this.guardWrite(() => this.file.write(slotOffset(this.layout, slot), [image]));
  }

  /** Writes bytes at a device offset in the data region. Not synced. */
  writeData(position: number, buffers: readonly Uint8Array[]): Promise<void> {
    return this.guardWrite(() => this.file.write(position, buffers));
  }

  /** Resolves once every write completed before the call is durable (shared fdatasync). */
  sync(): Promise<void> {
    return this.guardWrite(() => this.commit.sync());
  }

  read(position: number, length: number): Promise<Buffer> {
    return this.file.read(position, length);
  }

  close(): Promise<void> {
    return this.file.close();
  }

  private async guardWrite(write: () => Promise<void>): Promise<void> {
    if (this.failure !== undefined) throw deviceFailed(this.index, this.failure);
    // Chaos tests' gray failure (BALLAST_TEST_FAULTS=1 and SIGUSR2): writes hang, no error.
    await testWritesHang();
    try {
      await write();
    } catch (error) {
      this.failure ??= error;
      throw deviceFailed(this.index, error);
    }
  }
}

function checkIdentity(
  path: string,
  superblock: Superblock,
  expected: DeviceIdentity,
  fileBytes: number,
): void {
  if (superblock.sledId !== expected.sledId) {
    throw new DeviceError(
      path,
      `it belongs to sled ${JSON.stringify(superblock.sledId)}, not ${JSON.stringify(expected.sledId)}`,
    );
  }
  if (superblock.deviceIndex !== expected.deviceIndex) {
    throw new DeviceError(
      path,
      `it is device ${superblock.deviceIndex} of its sled, but was found as device ${expected.deviceIndex}`,
    );
  }
  if (superblock.deviceCount !== expected.deviceCount) {
    throw new DeviceError(
      path,
      `the sled was formatted with ${superblock.deviceCount} devices and is configured with ${expected.deviceCount}; changing the device count of an existing sled is refused`,
    );
  }
  if (superblock.deviceBytes !== expected.deviceBytes) {
    throw new DeviceError(
      path,
      `it was formatted with ${superblock.deviceBytes} bytes and is configured with ${expected.deviceBytes}; changing the size of an existing device is refused`,
    );
  }
  if (fileBytes !== superblock.deviceBytes) {
    throw new DeviceError(
      path,
      `the file is ${fileBytes} bytes but its superblock says ${superblock.deviceBytes} (truncated or extended)`,
    );
  }
  const layoutProblem = checkLayout(superblock);
  if (layoutProblem !== undefined) {
    throw new DeviceError(path, `its superblock describes an impossible layout: ${layoutProblem}`);
  }
}

function checkLayout(superblock: Superblock): string | undefined {
  if (superblock.blockBytes !== blockBytes) return `block size ${superblock.blockBytes}`;
  if (superblock.slotBytes !== slotBytes) return `slot size ${superblock.slotBytes}`;
  if (superblock.slotTableOffset < superblockBytes * superblockCopies) {
    return "the slot table overlaps the superblocks";
  }
  if (superblock.slotTableOffset + superblock.slotCount * slotBytes > superblock.dataOffset) {
    return "the slot table overlaps the data region";
  }
  if (superblock.dataOffset % blockBytes !== 0) return "the data region is not block aligned";
  if (superblock.dataOffset + superblock.dataBlocks * blockBytes > superblock.deviceBytes) {
    return "the data region runs past the end of the device";
  }
  return undefined;
}
