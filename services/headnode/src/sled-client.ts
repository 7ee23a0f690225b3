// How a head node uses sleds: write a chunk to two of them, read a range from the first
// copy that answers with sound bytes, and repair a copy that failed its checksum by
// writing the good bytes back to it; store checkpoints as blobs on two sleds and read
// one back from the first copy that is whole and sound.

import { BallastError, crc32c, ErrorCode, sledLimits, subjects } from "@ballast/protocol";
import type { Bus, Logger } from "@ballast/runtime";

/** Copies of every chunk. Erasure coding across sleds is a later step. */
export const chunkCopies = 2;
const sledDeadlineMs = 10_000;

export interface ChunkOwner {
  volume: string;
  partition: number;
}

export class SledClient {
  constructor(
    private readonly bus: Bus,
    private readonly logger: Logger,
  ) {}

  /**
   * Writes the chunk to `chunkCopies` sleds, starting at a position chosen by the chunk
   * number so that chunks spread over the sleds; a sled that fails is replaced by the
   * next. Resolves with the sleds that hold it; rejects if fewer than two could.
   */
  async writeChunk(
    owner: ChunkOwner,
    chunkId: string,
    data: Uint8Array,
    sleds: readonly string[],
    spread: number,
  ): Promise<string[]> {
    if (sleds.length < chunkCopies) {
      throw new BallastError(
        ErrorCode.Unavailable,
        `a chunk needs ${chunkCopies} sleds, but only ${sleds.length} are configured`,
      );
    }
    const order = sleds.map((_, index) => sleds[(spread + index) % sleds.length]!);
    const holders: string[] = [];
    const failures: string[] = [];
    for (let next = 0; holders.length < chunkCopies && next < order.length; ) {
      const batch = order.slice(next, next + chunkCopies - holders.length);
      next += batch.length;
      const results = await Promise.allSettled(
        batch.map((sled) =>
          this.bus.request(
            subjects.node.build(sled),
            { type: "sled.chunk.write.v1", owner, chunkId, data },
            { deadlineMs: sledDeadlineMs },
          ),
        ),
      );
      results.forEach((result, index) => {
        if (result.status === "fulfilled") holders.push(batch[index]!);
        else failures.push(`${batch[index]}: ${(result.reason as Error).message}`);
      });
    }
    if (holders.length < chunkCopies) {
      throw new BallastError(
        ErrorCode.Unavailable,
        `chunk ${chunkId} reached ${holders.length} of ${chunkCopies} sleds: ${failures.join("; ")}`,
      );
    }
    return holders;
  }

  /**
   * Reads from the first sound copy; repairs copies that failed their checksum. The
   * bytes returned are a view of the reply message: copy them to keep them.
   */
  async readChunk(
    owner: ChunkOwner,
    chunkId: string,
    copies: readonly string[],
    offset: number,
    length: number,
  ): Promise<Uint8Array> {
    const damaged: string[] = [];
    const errors: string[] = [];
    for (const sled of copies) {
      try {
        const { data } = await this.bus.request(
          subjects.node.build(sled),
          { type: "sled.chunk.read.v1", owner, chunkId, offset, length },
          { deadlineMs: sledDeadlineMs },
        );
        if (damaged.length > 0) void this.repair(owner, chunkId, sled, damaged);
        // A view of the reply's buffer: the caller copies it into the read it assembles.
        return data;
      } catch (error) {
        if (error instanceof BallastError && error.code === ErrorCode.ChecksumMismatch) {
          this.logger.warn(
            { sled, chunk: chunkId, offset },
            "chunk copy failed its checksum; reading another",
          );
          damaged.push(sled);
        }
        errors.push(`${sled}: ${(error as Error).message}`);
      }
    }
    throw new BallastError(
      ErrorCode.Unavailable,
      `no copy of chunk ${chunkId} could be read: ${errors.join("; ")}`,
    );
  }

  /** Rewrites a damaged copy from a sound one (delete, then write the whole chunk). */
  private async repair(
    owner: ChunkOwner,
    chunkId: string,
    from: string,
    damaged: readonly string[],
  ) {
    try {
      const stat = await this.bus.request(subjects.node.build(from), {
        type: "sled.chunk.stat.v1",
        owner,
        chunkId,
      });
      const { data } = await this.bus.request(
        subjects.node.build(from),
        { type: "sled.chunk.read.v1", owner, chunkId, offset: 0, length: stat.bytes },
        { deadlineMs: sledDeadlineMs },
      );
      for (const sled of damaged) {
        await this.bus.request(subjects.node.build(sled), {
          type: "sled.chunk.delete.v1",
          owner,
          chunkId,
        });
        await this.bus.request(
          subjects.node.build(sled),
          { type: "sled.chunk.write.v1", owner, chunkId, data },
          { deadlineMs: sledDeadlineMs },
        );
        this.logger.info({ sled, chunk: chunkId, from }, "repaired a damaged chunk copy");
      }
    } catch (error) {
      this.logger.error({ chunk: chunkId, damaged, error: String(error) }, "chunk repair failed");
    }
  }

  /** Stores a blob on `chunkCopies` sleds (in parts); resolves with the sleds that hold it. */
  async putBlob(
    key: string,
    data: Uint8Array,
    sleds: readonly string[],
    spread: number,
  ): Promise<string[]> {
    const order = sleds.map((_, index) => sleds[(spread + index) % sleds.length]!);
    const checksum = crc32c(data);
    const holders: string[] = [];
    const failures: string[] = [];
    for (const sled of order) {
      if (holders.length >= chunkCopies) break;
      try {
        await this.uploadBlob(sled, key, data, checksum);
        holders.push(sled);
      } catch (error) {
        failures.push(`${sled}: ${(error as Error).message}`);
      }
    }
    if (holders.length < chunkCopies) {
      throw new BallastError(
        ErrorCode.Unavailable,
        `blob ${key} reached ${holders.length} of ${chunkCopies} sleds: ${failures.join("; ")}`,
      );
    }
    return holders;
  }

  private async uploadBlob(sled: string, key: string, data: Uint8Array, checksum: number) {
    const subject = subjects.node.build(sled);
    const begun = await this.bus.request(subject, {
      type: "sled.blob.begin.v1",
      key,
      bytes: data.byteLength,
      checksum,
    });
    const partBytes = Math.min(begun.partBytesMax, sledLimits.blobPartBytesMax);
    try {
      for (let offset = 0; offset < data.byteLength; offset += partBytes) {
        await this.bus.request(
          subject,
          {
            type: "sled.blob.part.v1",
            uploadId: begun.uploadId,
            offset,
            data: data.subarray(offset, offset + partBytes),
          },
          { deadlineMs: sledDeadlineMs },
        );
      }
      await this.bus.request(
        subject,
        { type: "sled.blob.commit.v1", uploadId: begun.uploadId },
        { deadlineMs: sledDeadlineMs },
      );
    } catch (error) {
      await this.bus
        .request(subject, { type: "sled.blob.abort.v1", uploadId: begun.uploadId })
        .catch(() => undefined);
      throw error;
    }
  }

  /**
   * Reads a whole blob from the first sled whose copy is sound (every block passes its
   * checksum on the sled, and the whole passes the blob's CRC32C here).
   */
  async getBlob(
    key: string,
    bytes: number,
    sleds: readonly string[],
  ): Promise<{ data: Uint8Array; sled: string }> {
    const errors: string[] = [];
    for (const sled of sleds) {
      try {
        return { data: await this.readBlob(sled, key, bytes), sled };
      } catch (error) {
        this.logger.warn(
          { sled, blob: key, error: (error as Error).message },
          "blob copy unreadable; trying another",
        );
        errors.push(`${sled}: ${(error as Error).message}`);
      }
    }
    throw new BallastError(
      ErrorCode.Unavailable,
      `no sound copy of blob ${key}: ${errors.join("; ")}`,
    );
  }

  /** Reads a blob of `bytes` bytes in pieces no larger than a sled read may return. */
  private async readBlob(sled: string, key: string, bytes: number): Promise<Uint8Array> {
    const subject = subjects.node.build(sled);
    const parts: Uint8Array[] = [];
    let total = bytes;
    let checksum = 0;
    let offset = 0;
    while (offset < total) {
      const length = Math.min(sledLimits.readBytesMax, total - offset);
      const got = await this.bus.request(
        subject,
        { type: "sled.blob.get.v1", key, offset, length },
        { deadlineMs: sledDeadlineMs },
      );
      if (got.bytes !== bytes)
        throw new Error(`blob ${key} holds ${got.bytes} bytes, not ${bytes}`);
      total = got.bytes;
      checksum = got.checksum;
      if (got.data.byteLength === 0 && offset < total)
        throw new Error(`empty read at ${offset} of ${total}`);
      parts.push(Uint8Array.prototype.slice.call(got.data));
      offset += got.data.byteLength;
    }
    const data = Buffer.concat(parts);
    if (crc32c(data) !== checksum) {
      throw new BallastError(
        ErrorCode.ChecksumMismatch,
        `blob ${key} on ${sled} does not match its CRC32C`,
      );
    }
    return data;
  }

  async deleteBlob(key: string, sleds: readonly string[]): Promise<void> {
    await Promise.allSettled(
      sleds.map((sled) =>
        this.bus.request(subjects.node.build(sled), { type: "sled.blob.delete.v1", key }),
      ),
    );
  }
}
