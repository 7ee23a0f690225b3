// Live bytes per sled chunk: how many bytes of the tree's extents still point into each
// chunk. The tree adjusts it on every insert, trim, split, overwrite and remove, so that
// space reclamation can find chunks that are mostly (or wholly) dead without a scan. A
// chunk whose count drops to zero is forgotten: absent means no live bytes.

import { fail } from "./assert.ts";

export class LiveBytes {
  private readonly bytesByChunk = new Map<number, number>();

  /** Live bytes in `chunkId`; 0 for a chunk the tree does not point into. */
  get(chunkId: number): number {
    return this.bytesByChunk.get(chunkId) ?? 0;
  }

  /** How many chunks hold at least one live byte. */
  get chunkCount(): number {
    return this.bytesByChunk.size;
  }

  add(chunkId: number, bytes: number): void {
    this.bytesByChunk.set(chunkId, this.get(chunkId) + bytes);
  }

  subtract(chunkId: number, bytes: number): void {
    const remaining = this.get(chunkId) - bytes;
    if (remaining < 0) {
      fail(`chunk ${chunkId} would hold ${remaining} live bytes`);
    }
    if (remaining === 0) {
      this.bytesByChunk.delete(chunkId);
    } else {
      this.bytesByChunk.set(chunkId, remaining);
    }
  }

  /** A copy, so that a caller cannot change the tree's accounting through it. */
  toMap(): Map<number, number> {
    return new Map(this.bytesByChunk);
  }

  entries(): IterableIterator<[number, number]> {
    return this.bytesByChunk.entries();
  }
}
