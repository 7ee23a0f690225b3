// Loads a checkpoint stream (see checkpoint-format.ts) into a new extent tree.
//
// The stream is read one frame at a time; each block's checksum is verified before any
// of its records is used, and each record is checked for what the checksum cannot vouch
// for (a writer bug, a crafted stream): a positive length, offsets within the safe
// integers, an op number not above the checkpoint's, a known location kind. The tree is
// built bottom-up as records arrive and handed out only after the trailer's checksum and
// counts agree and the stream has ended, so a caller never receives a tree from a
// checkpoint that turns out to be bad.
//
// Failure model: bytes that are not a checkpoint this reader knows raise
// CheckpointFormatError; damage, truncation and inconsistent counts raise
// CheckpointCorruptError. Each names the stream offset and the value seen. An error from
// the source itself (a failed read) passes through unchanged. Either way the source is
// closed.

import { TreeBuilder } from "./builder.ts";
import { type ByteSource, ByteStreamReader } from "./byte-stream.ts";
import {
  blockLayout,
  type CheckpointMeta,
  checkpointFormatVersion,
  checkpointMagic,
  getUint64,
  headerLayout,
  hex32,
  trailerLayout,
} from "./checkpoint-format.ts";
import { addressBytesMax, checkpointBlockBytesMax, locationFieldMax } from "./constants.ts";
import { crc32cFinish, crc32cInitial, crc32cUpdate } from "./crc32c.ts";
import { CheckpointCorruptError, CheckpointFormatError } from "./errors.ts";
import { isLocationCode, LocationCode } from "./location.ts";
import type { ExtentTree, ExtentTreeOptions } from "./tree.ts";
import { ByteCursor } from "./varint.ts";

export interface LoadedCheckpoint {
  readonly tree: ExtentTree;
  readonly meta: CheckpointMeta;
}

/**
 * Reads a whole checkpoint from `source` and returns the tree it holds (built with
 * `options`) and its meta. Rejects with a CheckpointError if the stream is not a sound
 * checkpoint.
 */
export async function loadCheckpoint(
  source: ByteSource,
  options: ExtentTreeOptions = {},
): Promise<LoadedCheckpoint> {
  const reader = new ByteStreamReader(source);
  try {
    return await new CheckpointLoader(reader, new TreeBuilder(options)).load();
  } finally {
    await reader.close();
  }
}

/** The counts a block's frame header is read for; `bytes` is all twelve of its bytes. */
interface BlockHeader {
  readonly recordCount: number;
  readonly payloadBytes: number;
  readonly bytes: Uint8Array;
}

class CheckpointLoader {
  /** The running CRC-32C of every byte read so far, checksum fields excluded. */
  private checksum = crc32cInitial;
  private opNum = 0;
  private extentCount = 0;
  private extentsRead = 0;
  private mappedBytes = 0;
  private previousEnd = 0;

  constructor(
    private readonly reader: ByteStreamReader,
    private readonly builder: TreeBuilder,
  ) {}

  async load(): Promise<LoadedCheckpoint> {
    await this.readHeader();
    for (let frameNumber = 0; ; frameNumber += 1) {
      const frameOffset = this.reader.position;
      const recordCountBytes = await this.readExactly(4, `frame ${frameNumber}`);
      const recordCount = littleEndianUint32(recordCountBytes);
      if (recordCount === 0) {
        await this.readTrailer(frameOffset);
        break;
      }
      await this.readBlock(recordCountBytes, frameNumber, frameOffset);
    }
    if (!(await this.reader.atEnd())) {
      this.corrupt(
        `bytes follow its trailer at byte ${this.reader.position}`,
        this.reader.position,
      );
    }
    return { tree: this.builder.finish(), meta: { opNum: this.opNum } };
  }

  private async readHeader(): Promise<void> {
    const magic = await this.readExactly(checkpointMagic.length, "the magic number");
    if (!magic.every((byte, index) => byte === checkpointMagic[index])) {
      throw new CheckpointFormatError(
        `cannot load checkpoint: the stream does not start with the magic "BALLASTX" but with bytes ${hexBytes(magic)}`,
        { byteOffset: 0 },
      );
    }
    const header = new Uint8Array(headerLayout.bytes);
    header.set(magic, 0);
    header.set(
      await this.readExactly(headerLayout.bytes - magic.length, "the header"),
      magic.length,
    );
    const view = new DataView(header.buffer);
    const version = view.getUint32(headerLayout.version, true);
    // The version is checked before the checksum: another version may lay its header out
    // differently, checksum included.
    if (version !== checkpointFormatVersion) {
      throw new CheckpointFormatError(
        `cannot load checkpoint: its format version is ${version}, and this reader reads only version ${checkpointFormatVersion}`,
        { byteOffset: headerLayout.version },
      );
    }
    this.verifyChecksum(
      header.subarray(0, headerLayout.checksum),
      view,
      headerLayout.checksum,
      "the header",
      0,
    );
    const flags = view.getUint32(headerLayout.flags, true);
    if (flags !== 0) {
      throw new CheckpointFormatError(
        `cannot load checkpoint: it sets flags ${hex32(flags)}, and this reader knows none`,
        { byteOffset: headerLayout.flags },
      );
    }
    this.opNum = this.safeUint64(view, headerLayout.opNum, "the header's op number", 0);
    this.extentCount = this.safeUint64(
      view,
      headerLayout.extentCount,
      "the header's extent count",
      0,
    );
  }

  private async readBlock(
    recordCountBytes: Uint8Array,
    blockNumber: number,
    frameOffset: number,
  ): Promise<void> {
    const header = await this.readBlockHeader(recordCountBytes, blockNumber, frameOffset);
    if (header.payloadBytes > checkpointBlockBytesMax) {
      this.corrupt(
        `block ${blockNumber} claims ${header.payloadBytes} payload bytes, more than the limit ${checkpointBlockBytesMax}`,
        frameOffset,
      );
    }
    const payload = await this.readExactly(header.payloadBytes, `block ${blockNumber}'s payload`);
    this.checksum = crc32cUpdate(this.checksum, header.bytes.subarray(0, blockLayout.checksum));
    this.verifyChecksum(
      payload,
      new DataView(header.bytes.buffer),
      blockLayout.checksum,
      `block ${blockNumber}`,
      frameOffset,
    );
    if (this.extentsRead + header.recordCount > this.extentCount) {
      this.corrupt(
        `block ${blockNumber} brings the extents to ${this.extentsRead + header.recordCount}, more than the ${this.extentCount} its header promises`,
        frameOffset,
      );
    }
    this.decodeRecords(payload, header.recordCount, blockNumber, frameOffset + blockLayout.bytes);
  }

  private async readBlockHeader(
    recordCountBytes: Uint8Array,
    blockNumber: number,
    frameOffset: number,
  ): Promise<BlockHeader> {
    const bytes = new Uint8Array(blockLayout.bytes);
    bytes.set(recordCountBytes, blockLayout.recordCount);
    bytes.set(
      await this.readExactly(
        blockLayout.bytes - 4,
        `block ${blockNumber}'s header at byte ${frameOffset}`,
      ),
      4,
    );
    const view = new DataView(bytes.buffer);
    return {
      recordCount: view.getUint32(blockLayout.recordCount, true),
      payloadBytes: view.getUint32(blockLayout.payloadBytes, true),
      bytes,
    };
  }

  private decodeRecords(
    payload: Uint8Array,
    recordCount: number,
    blockNumber: number,
    payloadOffset: number,
  ): void {
    const cursor = new ByteCursor(payload, 0, payload.length);
    for (let record = 0; record < recordCount; record += 1) {
      const recordOffset = payloadOffset + cursor.position;
      const gap = cursor.readVarint();
      const length = cursor.readVarint();
      const opNum = cursor.readVarint();
      const code = cursor.readByte();
      const hasPlace = code === LocationCode.journal || code === LocationCode.chunk;
      const id = hasPlace ? cursor.readVarint() : 0;
      const locationOffset = hasPlace ? cursor.readVarint() : 0;
      const offset = this.previousEnd + gap;
      const where = `record ${this.extentsRead} (block ${blockNumber})`;
      if (cursor.failed) {
        this.corrupt(`${where} is cut short or holds a number beyond 2^53`, recordOffset);
      }
      if (length < 1 || offset + length > addressBytesMax) {
        this.corrupt(
          `${where} has offset ${offset} and length ${length}, not a valid extent`,
          recordOffset,
        );
      }
      if (opNum > this.opNum) {
        this.corrupt(
          `${where} has op ${opNum}, newer than the checkpoint's op ${this.opNum}`,
          recordOffset,
        );
      }
      if (!isLocationCode(code)) {
        this.corrupt(
          `${where} has location code ${code}, which names no location kind`,
          recordOffset,
        );
      }
      if (locationOffset + length > locationFieldMax) {
        this.corrupt(
          `${where} has location offset ${locationOffset}, too large for ${length} bytes`,
          recordOffset,
        );
      }
      this.builder.append(offset, length, opNum, code, id, locationOffset);
      this.previousEnd = offset + length;
      this.extentsRead += 1;
      this.mappedBytes += length;
    }
    if (cursor.remaining !== 0) {
      this.corrupt(
        `block ${blockNumber} has ${cursor.remaining} bytes left after its ${recordCount} records`,
        payloadOffset + cursor.position,
      );
    }
  }

  /** Reads the trailer, whose zero record count at `frameOffset` has been read. */
  private async readTrailer(frameOffset: number): Promise<void> {
    const trailer = new Uint8Array(trailerLayout.bytes);
    trailer.set(await this.readExactly(trailerLayout.bytes - 4, "the trailer"), 4);
    const view = new DataView(trailer.buffer);
    this.verifyChecksum(
      trailer.subarray(0, trailerLayout.checksum),
      view,
      trailerLayout.checksum,
      "the trailer",
      frameOffset,
    );
    const extentCount = this.safeUint64(
      view,
      trailerLayout.extentCount,
      "the trailer's extent count",
      frameOffset,
    );
    const mappedBytes = this.safeUint64(
      view,
      trailerLayout.mappedBytes,
      "the trailer's mapped bytes",
      frameOffset,
    );
    if (extentCount !== this.extentsRead || mappedBytes !== this.mappedBytes) {
      this.corrupt(
        `its trailer counts ${extentCount} extents of ${mappedBytes} bytes, but its blocks hold ${this.extentsRead} of ${this.mappedBytes}`,
        frameOffset,
      );
    }
    if (this.extentsRead !== this.extentCount) {
      this.corrupt(
        `its header promises ${this.extentCount} extents but its blocks hold ${this.extentsRead}`,
        frameOffset,
      );
    }
  }

  private async readExactly(count: number, what: string): Promise<Uint8Array> {
    const offset = this.reader.position;
    const bytes = await this.reader.read(count);
    if (bytes.length < count) {
      const end = offset + bytes.length;
      this.corrupt(
        end === 0
          ? "it is truncated: the stream is empty"
          : `it is truncated: the stream ends at byte ${end}, ${count - bytes.length} bytes short of the end of ${what}`,
        end,
      );
    }
    return bytes;
  }

  /**
   * Feeds `covered` into the running checksum and compares the result with the checksum
   * field at `fieldOffset` of `view`.
   */
  private verifyChecksum(
    covered: Uint8Array,
    view: DataView,
    fieldOffset: number,
    what: string,
    byteOffset: number,
  ): void {
    this.checksum = crc32cUpdate(this.checksum, covered);
    const stored = view.getUint32(fieldOffset, true);
    const computed = crc32cFinish(this.checksum);
    if (stored !== computed) {
      this.corrupt(
        `${what} fails its checksum (stored ${hex32(stored)}, computed ${hex32(computed)})`,
        byteOffset,
      );
    }
  }

  private safeUint64(
    view: DataView,
    fieldOffset: number,
    what: string,
    byteOffset: number,
  ): number {
    const value = getUint64(view, fieldOffset);
    if (value < 0) {
      this.corrupt(`${what} is beyond 2^53`, byteOffset + fieldOffset);
    }
    return value;
  }

  private corrupt(problem: string, byteOffset: number): never {
    throw new CheckpointCorruptError(`cannot load checkpoint: ${problem}`, { byteOffset });
  }
}

function littleEndianUint32(bytes: Uint8Array): number {
  return new DataView(bytes.buffer, bytes.byteOffset, 4).getUint32(0, true);
}

function hexBytes(bytes: Uint8Array): string {
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join(" ");
}
