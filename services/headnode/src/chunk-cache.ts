// A head node's cache of sled chunk bytes: aligned 4 KiB blocks keyed by chunk id and
// block index, least recently used first out, bounded by bytes.
//
// Model: sled chunks are write-once and their ids are never reused (an id carries the
// volume incarnation, partition, epoch, the writing head node's session and a number;
// writing an existing id with other bytes answers AlreadyExists), so a block once known
// stays true for as long as the chunk exists: nothing is ever invalidated for
// correctness. `forget` exists for bytes that turn out not to be the chunk's (a whole
// read that fails the recorded CRC32C, a repaired copy), never for staleness.
//
// A read is served only when every block it covers is present; the answer is a fresh
// buffer, or, when it lies within one block, a view of that block (blocks are never
// written after insertion, so a view stays valid after the block is evicted). A block is
// inserted only when the bytes cover it whole: [i·4 KiB, (i+1)·4 KiB), or up to the
// chunk's end when the caller knows it (the short tail block of a chunk). Inserted bytes
// are copied, so a reply's (or a flush's) buffer is never kept alive by the cache.
//
// Memory: each block is charged its bytes plus `cacheEntryOverheadBytes` for what keeps
// it (its Map entry and key string, its Uint8Array and ArrayBuffer objects, the
// allocator's header): about 400 bytes of V8 heap a block measured with Node 20, so
// the bound holds for what the process really spends. A capacity below one block's
// charge turns the cache off.
//
// Pure and synchronous: no I/O, no time; the sled client (sled-client.ts) decides what
// to look up and what to insert. Counters (hits, misses, evictions) are for metrics.

/** The cache's unit: sleds check chunks per 4 KiB block, and NBD reads are 4 KiB aligned. */
export const cacheBlockBytes = 4096;

/**
 * What each cached block costs beyond its bytes: Map entry, key string, typed array and
 * ArrayBuffer objects, malloc header (about 400 measured; rounded up).
 */
export const cacheEntryOverheadBytes = 512;

/**
 * Default bound per head node: 256 MiB, about 58,000 blocks of 4 KiB. The same as a
 * replica's default journal bound (`--journal-bytes-max`), small beside a storage
 * node's memory, large enough to hold the hot set of several volumes.
 */
export const chunkCacheBytesDefault = 256 * 1024 * 1024;

export interface ChunkCacheStats {
  hits: number;
  misses: number;
  evictions: number;
  /** Blocks held now, and the bytes charged for them (data and overhead). */
  blocks: number;
  bytes: number;
  capacityBytes: number;
}

export class ChunkCache {
  /** Blocks by `chunkId NUL index`, in least-recently-used-first order (Map order). */
  private readonly blocks = new Map<string, Uint8Array>();
  private chargedBytes = 0;
  private hits = 0;
  private misses = 0;
  private evictions = 0;

  constructor(readonly capacityBytes: number) {}

  /** Off when not even one block fits. */
  get enabled(): boolean {
    return this.capacityBytes >= cacheBlockBytes + cacheEntryOverheadBytes;
  }

  /**
   * The bytes [offset, offset+length) of the chunk when every block they cover is here
   * (counted as a hit), else undefined (a miss). Do not modify what is returned: a read
   * within one block is a view of the cached block.
   */
  read(chunkId: string, offset: number, length: number): Uint8Array | undefined {
    if (!this.enabled || length <= 0 || offset < 0) return undefined;
    const end = offset + length;
    const first = Math.floor(offset / cacheBlockBytes);
    const last = Math.floor((end - 1) / cacheBlockBytes);
    if (first === last) {
      const key = keyOf(chunkId, first);
      const block = this.blocks.get(key);
      const start = first * cacheBlockBytes;
      if (block === undefined || block.byteLength < end - start) {
        this.misses++;
        return undefined;
      }
      this.touch(key, block);
      this.hits++;
      return block.subarray(offset - start, end - start);
    }
    const found: Uint8Array[] = [];
    for (let index = first; index <= last; index++) {
      const block = this.blocks.get(keyOf(chunkId, index));
      const start = index * cacheBlockBytes;
      if (
        block === undefined ||
        block.byteLength < Math.min(end, start + cacheBlockBytes) - start
      ) {
        this.misses++;
        return undefined;
      }
      found.push(block);
    }
    const data = new Uint8Array(length);
    for (let index = first; index <= last; index++) {
      const block = found[index - first]!;
      const start = index * cacheBlockBytes;
      const from = Math.max(offset, start) - start;
      const to = Math.min(end, start + cacheBlockBytes) - start;
      data.set(block.subarray(from, to), start + from - offset);
      this.touch(keyOf(chunkId, index), block);
    }
    this.hits++;
    return data;
  }

  /**
   * Inserts (copies) the blocks that `data`, the chunk's bytes from `offset`, covers
   * whole; `chunkBytes`, when known, lets the chunk's short last block count as whole.
   * Blocks already here are only marked recently used.
   */
  insert(chunkId: string, offset: number, data: Uint8Array, chunkBytes?: number): void {
    if (!this.enabled) return;
    const end = offset + data.byteLength;
    for (let index = Math.ceil(offset / cacheBlockBytes); ; index++) {
      const start = index * cacheBlockBytes;
      const blockEnd =
        chunkBytes === undefined
          ? start + cacheBlockBytes
          : Math.min(start + cacheBlockBytes, chunkBytes);
      if (blockEnd <= start || blockEnd > end) return;
      const key = keyOf(chunkId, index);
      const held = this.blocks.get(key);
      if (held !== undefined && held.byteLength >= blockEnd - start) {
        this.touch(key, held);
        continue;
      }
      const block = new Uint8Array(blockEnd - start);
      block.set(data.subarray(start - offset, blockEnd - offset));
      if (held !== undefined) this.remove(key, held);
      this.makeRoom(chargeOf(block));
      this.blocks.set(key, block);
      this.chargedBytes += chargeOf(block);
    }
  }

  /** Drops every block of the chunk (`chunkBytes` long): its bytes proved not to be its own. */
  forget(chunkId: string, chunkBytes: number): void {
    const blocks = Math.ceil(chunkBytes / cacheBlockBytes);
    for (let index = 0; index < blocks; index++) {
      const key = keyOf(chunkId, index);
      const block = this.blocks.get(key);
      if (block !== undefined) this.remove(key, block);
    }
  }

  stats(): ChunkCacheStats {
    return {
      hits: this.hits,
      misses: this.misses,
      evictions: this.evictions,
      blocks: this.blocks.size,
      bytes: this.chargedBytes,
      capacityBytes: this.capacityBytes,
    };
  }

  /** Moves a block to the most recently used end. */
  private touch(key: string, block: Uint8Array): void {
    this.blocks.delete(key);
    this.blocks.set(key, block);
  }

  private remove(key: string, block: Uint8Array): void {
    this.blocks.delete(key);
    this.chargedBytes -= chargeOf(block);
  }

  /** Evicts least recently used blocks until `bytes` more fit. */
  private makeRoom(bytes: number): void {
    while (this.chargedBytes + bytes > this.capacityBytes) {
      const oldest = this.blocks.entries().next();
      if (oldest.done === true) return;
      this.remove(oldest.value[0], oldest.value[1]);
      this.evictions++;
    }
  }
}

function keyOf(chunkId: string, index: number): string {
  return `${chunkId}\u0000${index}`;
}

function chargeOf(block: Uint8Array): number {
  return block.byteLength + cacheEntryOverheadBytes;
}
