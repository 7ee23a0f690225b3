// A head node's cache of sled chunk bytes: whole chunks (what its primaries flush) and
// aligned 4 KiB blocks (what its reads bring back from sleds), keyed by chunk id, least
// recently used first out, bounded by bytes.
//
// Model: sled chunks are write-once and their ids are never reused (an id carries the
// volume incarnation, partition, epoch, the writing head node's session and a number;
// writing an existing id with other bytes answers AlreadyExists), so a block once known
// stays true for as long as the chunk exists: nothing is ever invalidated for
// correctness. `forget` exists for bytes that turn out not to be the chunk's (a whole
// read that fails the recorded CRC32C, a repaired copy), never for staleness.
//
// Two kinds of entry:
// - A whole chunk (`insertChunk`): the flush's own buffer, kept by reference (no copy),
//   charged its whole ArrayBuffer and evicted whole. Only a buffer that is exactly the
//   chunk is kept so (the flush's concatenation is), so nothing but the chunk's bytes is
//   pinned; the caller hands it over and never writes it again. Any read within the
//   chunk is a view of it. A chunk whose charge would not fit the cache, or whose bytes
//   lie in a larger buffer, goes in as blocks instead (copied; of a chunk larger than
//   the cache only its last blocks stay).
// - A block (`insert`): inserted only when the bytes cover it whole: [i·4 KiB,
//   (i+1)·4 KiB), or up to the chunk's end when the caller knows it (the short tail
//   block of a chunk). Its bytes are copied, so a reply's buffer is never kept alive by
//   the cache. A read is served from blocks only when every block it covers is present;
//   the answer is a fresh buffer, or, when it lies within one block, a view of that
//   block.
// A chunk held whole takes no blocks (inserting them only marks it used); blocks of a
// chunk then inserted whole are dropped for it.
//
// Structure: chunks by id (a Map keyed by the chunk table's own id string, whose hash V8
// keeps), each with its blocks by index, and every block on one recency list: a hit
// costs a Map lookup and a few pointer moves (about 0.15 µs), no key is built per block.
// An evicted block's memory is reused by the next insert unless a view of it was ever
// returned (`lent`): a view must stay valid after eviction, and a block that was never
// lent has no one else looking at it. In steady state that spares an ArrayBuffer per
// miss (allocating and later freeing one costs more than the copy). A whole chunk's
// memory is never reused (its views may be anywhere).
//
// Views handed out: a read's answer lives until the reply carrying it is sent (over a
// link its bytes go to the socket by reference: headnode.ts, `repliesByReference`, so
// they wait in its queue until the kernel takes them; the callers copy what they keep).
// That is why lent memory is never reused and a whole chunk is never written: a view
// must read the same for as long as anyone holds it. A view of a whole chunk keeps the
// chunk's buffer alive that long even if it is evicted meanwhile, as a view of a sled's
// reply keeps the reply's buffer: for the length of a read and its reply, never beyond.
//
// Memory: each block is charged its bytes plus `cacheEntryOverheadBytes` (its record,
// its Uint8Array and ArrayBuffer objects, the allocator's header), each whole chunk its
// ArrayBuffer's bytes plus the same, and each chunk with entries here `chunkChargeBytes`
// (its Map entry, record, block map and id string): measured with Node 20 at about 260
// bytes of V8 heap a block and 250 a chunk, and 450–650 bytes of RSS a block beyond its
// 4 KiB, so the bound holds for what the process really spends. A capacity below one
// block's charge turns the cache off.
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
 * The largest sled read whose blocks the sled client copies into the cache. A larger
 * range is a scan (a sequential reader's 1 MiB reads, a compaction's whole chunk): its
 * blocks are seldom read again before a scan larger than the cache evicts them, copying
 * them costs about a quarter of the primary's CPU per MiB read, and each insert evicts
 * what random readers keep using. Such reads go to the sleds each time instead. 256 KiB
 * is above the pieces a kernel's readahead or a database page asks for.
 */
export const cacheFillReadBytesMax = 256 * 1024;

/**
 * The least default bound per head node: 256 MiB, about 58,000 blocks of 4 KiB (227 MiB
 * of data), the same as one replica's default journal bound (`--journal-bytes-max`).
 * Also the bound of a sled client given none (tests).
 */
export const chunkCacheBytesFloor = 256 * 1024 * 1024;
/** The most a default bound takes, however large the machine: 4 GiB. */
export const chunkCacheBytesCeiling = 4 * 1024 * 1024 * 1024;
/** The share of the machine's (or its cgroup's) memory a default bound takes: 1/16. */
export const chunkCacheMemoryShare = 1 / 16;

/**
 * The default bound for a head node on a machine with `memoryBytes` of memory: a
 * sixteenth of it, within [chunkCacheBytesFloor, chunkCacheBytesCeiling], a whole number
 * of 4 KiB blocks. A miss costs a sled request (about four times a hit's CPU over all
 * processes, docs/performance.md), so a storage node's memory is best spent here; a
 * sixteenth leaves room for a sled and other head nodes on the same machine. An operator
 * sets it outright with `--chunk-cache-bytes`.
 */
export function chunkCacheBytesFor(memoryBytes: number): number {
  const share =
    Math.floor((memoryBytes * chunkCacheMemoryShare) / cacheBlockBytes) * cacheBlockBytes;
  return Math.min(chunkCacheBytesCeiling, Math.max(chunkCacheBytesFloor, share));
}

export interface ChunkCacheStats {
  hits: number;
  /** Reads not answered; evictions counted in 4 KiB blocks (a whole chunk as its blocks). */
  misses: number;
  evictions: number;
  /** Blocks and whole chunks held now, and the bytes charged for them (data and overhead). */
  blocks: number;
  wholeChunks: number;
  bytes: number;
  capacityBytes: number;
}

/**
 * An entry on the recency list (oldest to newest): a block of its chunk (`index` ≥ 0,
 * in the chunk's block map), or the whole chunk (`index` -1, its `whole`).
 */
interface CachedBlock {
  chunk: CachedChunk;
  index: number;
  data: Uint8Array;
  /** The bytes charged for it: its data (a whole chunk's ArrayBuffer) and overhead. */
  charge: number;
  /**
   * A view of `data` was returned by a read, or it is a whole chunk: its memory may never
   * be reused.
   */
  lent: boolean;
  older: CachedBlock | undefined;
  newer: CachedBlock | undefined;
}

/** What is held of one chunk: the whole of it, or blocks by index. */
interface CachedChunk {
  id: string;
  whole: CachedBlock | undefined;
  /**
   * A Map, not an array indexed by block: an array keeps its length (up to 1,024 slots
   * for a 4 MiB chunk) while any one block survives, memory `chunkChargeBytes` does not
   * count.
   */
  blocks: Map<number, CachedBlock>;
  /** Entries held: blocks, and the whole chunk. */
  held: number;
}

/** Index of a whole-chunk entry. */
const wholeIndex = -1;

export class ChunkCache {
  /**
   * By chunk id, then block index: a lookup hashes the chunk table's own id string
   * (V8 keeps its hash), and no key is built per block.
   */
  private readonly chunks = new Map<string, CachedChunk>();
  private oldest: CachedBlock | undefined;
  private newest: CachedBlock | undefined;
  private heldBlocks = 0;
  private heldWholeChunks = 0;
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
   * The bytes [offset, offset+length) of the chunk when it is held whole, or every block
   * they cover is here (counted as a hit), else undefined (a miss). Do not modify what
   * is returned: a read of a whole chunk, or within one block, is a view of it.
   */
  read(chunkId: string, offset: number, length: number): Uint8Array | undefined {
    if (!this.enabled) return undefined;
    const found = this.find(chunkId, offset, length);
    if (found === undefined) this.misses++;
    else this.hits++;
    return found;
  }

  /**
   * As `read`, but a miss is not counted: for a caller that asks `read` next when this
   * misses (the sled client's synchronous try before its sled read), so that each
   * range counts once, as a hit or as a miss.
   */
  tryRead(chunkId: string, offset: number, length: number): Uint8Array | undefined {
    if (!this.enabled) return undefined;
    const found = this.find(chunkId, offset, length);
    if (found !== undefined) this.hits++;
    return found;
  }

  /** `read` without its counting. */
  private find(chunkId: string, offset: number, length: number): Uint8Array | undefined {
    if (length <= 0 || offset < 0) return undefined;
    const chunk = this.chunks.get(chunkId);
    if (chunk === undefined) return undefined;
    const end = offset + length;
    const first = Math.floor(offset / cacheBlockBytes);
    const last = Math.floor((end - 1) / cacheBlockBytes);
    const whole = chunk.whole;
    if (whole !== undefined) {
      // A whole chunk takes no blocks: past its end there is nothing to find.
      if (end > whole.data.byteLength) return undefined;
      this.touch(whole);
      return whole.data.subarray(offset, end);
    }
    for (let index = first; index <= last; index++) {
      const block = chunk.blocks.get(index);
      const start = index * cacheBlockBytes;
      if (
        block === undefined ||
        block.data.byteLength < Math.min(end, start + cacheBlockBytes) - start
      ) {
        return undefined;
      }
    }
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
    const whole = this.chunks.get(chunkId)?.whole;
    if (whole !== undefined) {
      this.touch(whole);
      return;
    }
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

  /**
   * Keeps `data`, all of the chunk's bytes, as one entry without copying it, when it is
   * the whole of its ArrayBuffer (else nothing but the chunk would be pinned unseen) and
   * its charge fits; else inserts it as blocks (copied). The caller hands the buffer
   * over: it must never be written again (a flushed chunk is not). Blocks of the chunk
   * already here are dropped for it; a chunk already held whole is only marked used.
   */
  insertChunk(chunkId: string, data: Uint8Array): void {
    if (!this.enabled || data.byteLength === 0) return;
    let chunk = this.chunks.get(chunkId);
    if (chunk?.whole !== undefined) {
      this.touch(chunk.whole);
      return;
    }
    const buffer = data.buffer;
    const charge = buffer.byteLength + cacheEntryOverheadBytes;
    if (
      data.byteOffset !== 0 ||
      data.byteLength !== buffer.byteLength ||
      charge + chunkChargeBytes > this.capacityBytes
    ) {
      this.insert(chunkId, 0, data, data.byteLength);
      return;
    }
    if (chunk !== undefined) {
      for (const block of [...chunk.blocks.values()]) this.remove(block);
    }
    this.makeRoom(charge + chunkChargeBytes);
    chunk = this.chunkOf(chunkId);
    const entry: CachedBlock = {
      chunk,
      index: wholeIndex,
      data,
      charge,
      lent: true,
      older: undefined,
      newer: undefined,
    };
    this.append(entry);
    chunk.whole = entry;
    chunk.held++;
    this.heldWholeChunks++;
    this.chargedBytes += charge;
  }

  /** Drops everything held of the chunk: its bytes proved not to be its own. */
  forget(chunkId: string): void {
    const chunk = this.chunks.get(chunkId);
    if (chunk === undefined) return;
    if (chunk.whole !== undefined) this.remove(chunk.whole);
    for (const block of [...chunk.blocks.values()]) this.remove(block);
  }

  stats(): ChunkCacheStats {
    return {
      hits: this.hits,
      misses: this.misses,
      evictions: this.evictions,
      blocks: this.heldBlocks,
      wholeChunks: this.heldWholeChunks,
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
    const chunk = this.chunkOf(chunkId);
    const block: CachedBlock = {
      chunk,
      index,
      data,
      charge: data.byteLength + cacheEntryOverheadBytes,
      lent: false,
      older: undefined,
      newer: undefined,
    };
    this.append(block);
    chunk.blocks.set(index, block);
    chunk.held++;
    this.heldBlocks++;
    this.chargedBytes += block.charge;
  }

  /** The chunk's record, made (and charged) if it has none. */
  private chunkOf(chunkId: string): CachedChunk {
    let chunk = this.chunks.get(chunkId);
    if (chunk === undefined) {
      chunk = { id: chunkId, whole: undefined, blocks: new Map(), held: 0 };
      this.chunks.set(chunkId, chunk);
      this.chargedBytes += chunkChargeBytes;
    }
    return chunk;
  }

  /** Puts a new entry at the newest end of the recency list. */
  private append(entry: CachedBlock): void {
    entry.older = this.newest;
    if (this.newest === undefined) this.oldest = entry;
    else this.newest.newer = entry;
    this.newest = entry;
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
    if (block.index === wholeIndex) {
      chunk.whole = undefined;
      this.heldWholeChunks--;
    } else {
      chunk.blocks.delete(block.index);
      this.heldBlocks--;
    }
    chunk.held--;
    this.chargedBytes -= block.charge;
    if (chunk.held === 0) {
      this.chunks.delete(chunk.id);
      this.chargedBytes -= chunkChargeBytes;
    }
  }

  /** Evicts least recently used entries until `bytes` more fit. */
  private makeRoom(bytes: number): void {
    while (this.chargedBytes + bytes > this.capacityBytes && this.oldest !== undefined) {
      const oldest = this.oldest;
      this.remove(oldest);
      this.evictions +=
        oldest.index === wholeIndex ? Math.ceil(oldest.data.byteLength / cacheBlockBytes) : 1;
      if (!oldest.lent) this.spare = oldest.data;
    }
  }
}
