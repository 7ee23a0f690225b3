// Reads exact byte counts from a stream that arrives in chunks of any size, as a file or
// network read delivers them. The reader buffers at most what one `read` asked for, and
// returns a view into the source's chunk when the bytes asked for lie within one.
//
// A short read means the stream ended: the reader reports it and leaves the judgement
// (truncation, and what was being read) to the caller. Errors thrown by the source pass
// through unchanged.

import { assert } from "./assert.ts";

export type ByteSource = AsyncIterable<Uint8Array> | Iterable<Uint8Array>;

export class ByteStreamReader {
  private readonly iterator: AsyncIterator<Uint8Array> | Iterator<Uint8Array>;
  private chunk: Uint8Array = new Uint8Array(0);
  private chunkPosition = 0;
  private ended = false;
  /** Bytes handed out so far: the stream offset of the next byte. */
  position = 0;

  constructor(source: ByteSource) {
    this.iterator =
      Symbol.asyncIterator in source ? source[Symbol.asyncIterator]() : source[Symbol.iterator]();
  }

  /**
   * The next `count` bytes, or all that remain if the stream ends first. The result may
   * be a view into the source's chunk: use it before the next read.
   */
  async read(count: number): Promise<Uint8Array> {
    if (this.chunk.length - this.chunkPosition >= count) {
      const bytes = this.chunk.subarray(this.chunkPosition, this.chunkPosition + count);
      this.chunkPosition += count;
      this.position += count;
      return bytes;
    }
    const bytes = new Uint8Array(count);
    let filled = 0;
    while (filled < count) {
      if (this.chunkPosition === this.chunk.length && !(await this.pull())) {
        break;
      }
      const taken = Math.min(count - filled, this.chunk.length - this.chunkPosition);
      bytes.set(this.chunk.subarray(this.chunkPosition, this.chunkPosition + taken), filled);
      filled += taken;
      this.chunkPosition += taken;
    }
    this.position += filled;
    return filled === count ? bytes : bytes.subarray(0, filled);
  }

  /** Whether the stream has no bytes left. */
  async atEnd(): Promise<boolean> {
    while (this.chunkPosition === this.chunk.length) {
      if (!(await this.pull())) {
        return true;
      }
    }
    return false;
  }

  /** Lets go of the source early, so that it can close a file or a connection. */
  async close(): Promise<void> {
    if (!this.ended) {
      this.ended = true;
      await this.iterator.return?.();
    }
  }

  private async pull(): Promise<boolean> {
    if (this.ended) {
      return false;
    }
    const result = await this.iterator.next();
    if (result.done === true) {
      this.ended = true;
      return false;
    }
    const chunk: unknown = result.value;
    assert(chunk instanceof Uint8Array, "a checkpoint source must yield Uint8Array chunks");
    this.chunk = chunk;
    this.chunkPosition = 0;
    return true;
  }
}
