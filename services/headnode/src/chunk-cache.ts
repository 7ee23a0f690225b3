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
// buffer, or, when it lies within one block, a view of that block. A block is inserted
// only when the bytes cover it whole: [i·4 KiB, (i+1)·4 KiB), or up to the chunk's end
// when the caller knows it (the short tail block of a chunk). Inserted bytes are copied,
// so a reply's (or a flush's) buffer is never kept alive by the cache.
//
// Structure: chunks by id (a Map keyed by the chunk table's own id string, whose hash V8
// keeps), each with its blocks by index, and every block on one recency list: a hit
// costs a Map lookup and a few pointer moves (about 0.15 µs), no key is built per block.
// An evicted block's memory is reused by the next insert unless a view of it was ever
// returned (`lent`): a view must stay valid after eviction, and a block that was never
// lent has no one else looking at it. In steady state that spares an ArrayBuffer per
// miss (allocating and later freeing one costs more than the copy).
//
// Memory: each block is charged its bytes plus `cacheEntryOverheadBytes` (its record,
// its Uint8Array and ArrayBuffer objects, the allocator's header), and each chunk with
// blocks here `chunkChargeBytes` (its Map entry, record, block map and id string):
// measured with Node 20 at about 260 bytes of V8 heap a block and 250 a chunk, and
// 450–650 bytes of RSS a block beyond its 4 KiB, so the bound holds for what the
// process really spends. A capacity below one block's charge turns the cache off.
//
// Pure and synchronous: no I/O, no time; the sled client (sled-client.ts) decides what
// to look up and what to insert. Counters (hits, misses, evictions) are for metrics.

/** The cache's unit: sleds check chunks per 4 KiB block, and NBD reads are 4 KiB aligned. */
export const cacheBlockBytes = 4096;

/** What each cached block costs beyond its bytes (see the header: measured, rounded up). */
export const cacheEntryOverheadBytes = 512;

/** What each chunk with blocks here costs beyond its blocks (see the header). */
export const chunkChargeBytes = 384;

/**
 * Default bound per head node: 256 MiB, about 58,000 blocks of 4 KiB (227 MiB of data).
 * The same as one replica's default journal bound (`--journal-bytes-max`), a small part
 * of a storage node's memory, and enough for the hot set of a few busy volumes; a node
 * with memory to spare for reads raises it (`--chunk-cache-bytes`).
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

/** A cached block, on the recency list (oldest to newest) and in its chunk's array. */
interface CachedBlock {
  chunk: CachedChunk;
  index: number;
  data: Uint8Array;
  /** A view of `data` was returned by a read: its memory may never be reused. */
  lent: boolean;
  older: CachedBlock | undefined;
  newer: CachedBlock | undefined;
}

/** The blocks held of one chunk, by index. */
interface CachedChunk {
  id: string;
  /**
   * A Map, not an array indexed by block: an array keeps its length (up to 1,024 slots
   * for a 4 MiB chunk) while any one block survives, memory `chunkChargeBytes` does not
   * count.
   */
  blocks: Map<number, CachedBlock>;
  held: number;
}

export class ChunkCache {
  /**
   * By chunk id, then block index: a lookup hashes the chunk table's own id string
   * (V8 keeps its hash), and no key is built per block.
   */
  private readonly chunks = new Map<string, CachedChunk>();
  private oldest: CachedBlock | undefined;
  private newest: CachedBlock | undefined;
  private heldBlocks = 0;
  private chargedBytes = 0;
  private hits = 0;
  private misses = 0;
  private evictions = 0;
  /**
   * The memory of the last block evicted that was never lent, for the next insert:
   * in steady state each insert evicts one block, and reusing its 4 KiB saves an
   * ArrayBuffer allocation (and the GC work of freeing one) per block.
   */
  private spare: Uint8Array | undefined;

  constructor(readonly capacityBytes: number) {}

  /** Off when not even one block fits. */
  get enabled(): boolean {
    return this.capacityBytes >= chunkChargeBytes + cacheBlockBytes + cacheEntryOverheadBytes;
  }

  /**
   * The bytes [offset, offset+length) of the chunk when every block they cover is here
   * (counted as a hit), else undefined (a miss). Do not modify what is returned: a read
   * within one block is a view of the cached block.
   */
  read(chunkId: string, offset: number, length: number): Uint8Array | undefined {
    if (!this.enabled || length <= 0 || offset < 0) return undefined;
    const chunk = this.chunks.get(chunkId);
    const end = offset + length;
    const first = Math.floor(offset / cacheBlockBytes);
    const last = Math.floor((end - 1) / cacheBlockBytes);
    if (chunk === undefined) {
      this.misses++;
      return undefined;
    }
    for (let index = first; index <= last; index++) {
      const block = chunk.blocks.get(index);
      const start = index * cacheBlockBytes;
      if (
        block === undefined ||
        block.data.byteLength < Math.min(end, start + cacheBlockBytes) - start
      ) {
        this.misses++;
        return undefined;
      }
    }
    this.hits++;
    if (first === last) {
      const block = chunk.blocks.get(first)!;
      this.touch(block);
      block.lent = true;
      const start = first * cacheBlockBytes;
      return block.data.subarray(offset - start, end - start);
    }
    const data = new Uint8Array(length);
    for (let index = first; index <= last; index++) {
      const block = chunk.blocks.get(index)!;
      const start = index * cacheBlockBytes;
      const from = Math.max(offset, start) - start;
      const to = Math.min(end, start + cacheBlockBytes) - start;
      data.set(block.data.subarray(from, to), start + from - offset);
      this.touch(block);
    }
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
      const held = this.chunks.get(chunkId)?.blocks.get(index);
      if (held !== undefined && held.data.byteLength >= blockEnd - start) {
        this.touch(held);
        continue;
      }
      if (held !== undefined) this.remove(held);
      this.add(chunkId, index, data.subarray(start - offset, blockEnd - offset));
    }
  }

  /** Drops every block of the chunk: its bytes proved not to be its own. */
  forget(chunkId: string): void {
    const chunk = this.chunks.get(chunkId);
    if (chunk === undefined) return;
    for (const block of [...chunk.blocks.values()]) this.remove(block);
  }

  stats(): ChunkCacheStats {
    return {
      hits: this.hits,
      misses: this.misses,
      evictions: this.evictions,
      blocks: this.heldBlocks,
      bytes: this.chargedBytes,
      capacityBytes: this.capacityBytes,
    };
  }

  /** Adds a copy of `source` as block `index` of the chunk. */
  private add(chunkId: string, index: number, source: Uint8Array): void {
    let charge = source.byteLength + cacheEntryOverheadBytes;
    if (!this.chunks.has(chunkId)) charge += chunkChargeBytes;
    // Room first: evicting may drop the chunk's last block, and with it its entry.
    this.makeRoom(charge);
    let data: Uint8Array;
    if (this.spare !== undefined && this.spare.byteLength === source.byteLength) {
      data = this.spare;
      this.spare = undefined;
    } else {
      data = new Uint8Array(source.byteLength);
    }
    data.set(source);
    let chunk = this.chunks.get(chunkId);
    if (chunk === undefined) {
      chunk = { id: chunkId, blocks: new Map(), held: 0 };
      this.chunks.set(chunkId, chunk);
      this.chargedBytes += chunkChargeBytes;
    }
    const block: CachedBlock = {
      chunk,
      index,
      data,
      lent: false,
      older: this.newest,
      newer: undefined,
    };
    if (this.newest === undefined) this.oldest = block;
    else this.newest.newer = block;
    this.newest = block;
    chunk.blocks.set(index, block);
    chunk.held++;
    this.heldBlocks++;
    this.chargedBytes += data.byteLength + cacheEntryOverheadBytes;
  }

  /** Moves a block to the newest end of the recency list. */
  private touch(block: CachedBlock): void {
    if (this.newest === block) return;
    this.unlink(block);
    block.older = this.newest;
    block.newer = undefined;
    this.newest!.newer = block;
    this.newest = block;
  }

  private unlink(block: CachedBlock): void {
    if (block.older === undefined) this.oldest = block.newer;
    else block.older.newer = block.newer;
    if (block.newer === undefined) this.newest = block.older;
    else block.newer.older = block.older;
  }

  private remove(block: CachedBlock): void {
    this.unlink(block);
    const chunk = block.chunk;
    chunk.blocks.delete(block.index);
    chunk.held--;
    this.heldBlocks--;
    this.chargedBytes -= block.data.byteLength + cacheEntryOverheadBytes;
    if (chunk.held === 0) {
      this.chunks.delete(chunk.id);
      this.chargedBytes -= chunkChargeBytes;
    }
  }

  /** Evicts least recently used blocks until `bytes` more fit. */
  private makeRoom(bytes: number): void {
    while (this.chargedBytes + bytes > this.capacityBytes && this.oldest !== undefined) {
      const oldest = this.oldest;
      this.remove(oldest);
      this.evictions++;
      if (!oldest.lent) this.spare = oldest.data;
    }
  }
}
