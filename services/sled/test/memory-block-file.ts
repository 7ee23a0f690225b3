// The simulated disk: an in-memory BlockFile that keeps what `sync` made durable apart
// from what was only written, and a crash switch shared by several files. At the crash
// every write since the last sync survives or not sector by sector, at random, and a few
// sectors are torn inside (half new, half old), which real drives rarely do but a CRC
// must catch anyway. After the crash every operation fails, as if the process had died.

import type { BlockFile } from "../src/block-file.ts";

const sectorBytes = 512;

/** A seeded generator (mulberry32): the same seed replays the same crash. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Counts operations across files and crashes them all at the chosen one. */
export class CrashSwitch {
  operations = 0;
  crashed = false;
  private readonly files: MemoryBlockFile[] = [];

  constructor(
    readonly random: () => number,
    /** The operation (1-based, counted from `arm`) that does not happen; 0 never crashes. */
    private crashAt = 0,
  ) {}

  register(file: MemoryBlockFile): void {
    this.files.push(file);
  }

  arm(operations: number): void {
    this.crashAt = this.operations + operations;
  }

  /** Called before every operation; throws once the crash has happened. */
  step(): void {
    if (this.crashed) throw new Error("simulated crash: the process is gone");
    this.operations++;
    if (this.crashAt > 0 && this.operations >= this.crashAt) this.crash();
  }

  crash(): void {
    if (this.crashed) return;
    this.crashed = true;
    for (const file of this.files) file.loseUnsynced(this.random);
    throw new Error("simulated crash: the process is gone");
  }
}

export class MemoryBlockFile implements BlockFile {
  /** What survives a crash. */
  readonly durable: Uint8Array;
  /** What reads see: durable plus writes not yet synced. */
  private readonly current: Uint8Array;
  private pending: { position: number; bytes: Uint8Array }[] = [];
  syncs = 0;

  constructor(
    image: Uint8Array,
    private readonly crashSwitch?: CrashSwitch,
  ) {
    this.durable = new Uint8Array(image);
    this.current = new Uint8Array(image);
    crashSwitch?.register(this);
  }

  static zeroed(bytes: number, crashSwitch?: CrashSwitch): MemoryBlockFile {
    return new MemoryBlockFile(new Uint8Array(bytes), crashSwitch);
  }

  async read(position: number, length: number): Promise<Buffer> {
    await this.yieldRandomly();
    this.crashSwitch?.step();
    if (position + length > this.current.byteLength) {
      throw new Error(`short read: ${length} bytes at ${position} of ${this.current.byteLength}`);
    }
    return Buffer.from(this.current.subarray(position, position + length));
  }

  async write(position: number, buffers: readonly Uint8Array[]): Promise<void> {
    await this.yieldRandomly();
    this.crashSwitch?.step();
    let at = position;
    for (const buffer of buffers) {
      if (at + buffer.byteLength > this.current.byteLength) {
        throw new Error(`write past the end: ${buffer.byteLength} bytes at ${at}`);
      }
      this.current.set(buffer, at);
      this.pending.push({ position: at, bytes: new Uint8Array(buffer) });
      at += buffer.byteLength;
    }
  }

  async sync(): Promise<void> {
    await this.yieldRandomly();
    this.crashSwitch?.step();
    const covered = this.pending.length;
    // The sync takes a while; writes issued meanwhile are not covered by it.
    await this.yieldRandomly();
    this.crashSwitch?.step();
    for (const write of this.pending.splice(0, covered)) {
      this.durable.set(write.bytes, write.position);
    }
    this.syncs++;
  }

  /**
   * A failed fdatasync as Linux may answer one ("fsyncgate"): the writes it covered are
   * never made durable (their pages are marked clean), yet reads go on seeing them.
   */
  failSync(): void {
    this.pending = [];
  }

  async size(): Promise<number> {
    return this.current.byteLength;
  }

  async close(): Promise<void> {}

  /** The crash: each unsynced sector survives or not; one in twenty is torn inside. */
  loseUnsynced(random: () => number): void {
    for (const write of this.pending) {
      for (let at = 0; at < write.bytes.byteLength; at += sectorBytes) {
        const sector = write.bytes.subarray(at, at + sectorBytes);
        const roll = random();
        if (roll < 0.45) this.durable.set(sector, write.position + at);
        else if (roll < 0.5) {
          this.durable.set(
            sector.subarray(0, Math.floor(sector.byteLength / 2)),
            write.position + at,
          );
        }
      }
    }
    this.pending = [];
  }

  private async yieldRandomly(): Promise<void> {
    const turns = this.crashSwitch === undefined ? 0 : Math.floor(this.crashSwitch.random() * 3);
    for (let turn = 0; turn < turns; turn++) await Promise.resolve();
  }
}
