// Space accounting of a partition's metadata, over random histories: writes, trims and
// write-zeroes, flush records packed as a primary packs them (journal pieces, relocated
// pieces of mostly-dead chunks, drops of unreferenced chunks and of the relocated ones),
// with writes landing between a record's packing and its apply, records applied twice
// (a rebuilt replica), drops of chunks still referenced, and restores from a snapshot.
// After every step: the incrementally kept referenced bytes equal a recount (and the
// tree's own live-byte count), every referenced chunk is in the table, and a read of the
// whole partition equals a model of the bytes.

import fc from "fast-check";
import { describe, expect, test } from "vitest";
import { encodeFlushRecord, type FlushRecord } from "../src/replica/flush-record.ts";
import { PartitionMetadata } from "../src/replica/metadata.ts";
import type { Note } from "../src/replica/note.ts";

const unit = 8;
const units = 32;
const partitionBytes = unit * units;

type Command =
  | { kind: "write"; at: number; length: number }
  | { kind: "trim"; at: number; length: number }
  | {
      kind: "flush";
      /** How many unflushed writes it packs (from the oldest). */
      writes: number;
      /** Relocate chunks whose referenced bytes are at most this fraction of their size. */
      ratio: number;
      /** Writes that land between packing and apply. */
      between: { at: number; length: number }[];
      /** Apply the record a second time (a rebuilt replica re-receiving it). */
      twice: boolean;
      /** Also ask to drop the most referenced chunk (must be refused). */
      badDrop: boolean;
    }
  | { kind: "restore" }
  /** Applies an earlier write or trim note again (a rebuilt replica re-receiving it). */
  | { kind: "replay"; index: number };

const range = fc
  .tuple(fc.integer({ min: 0, max: units - 1 }), fc.integer({ min: 1, max: 8 }))
  .map(([at, length]) => ({ at, length: Math.min(length, units - at) }));

const command: fc.Arbitrary<Command> = fc.oneof(
  { weight: 4, arbitrary: range.map((r) => ({ kind: "write" as const, ...r })) },
  { weight: 1, arbitrary: range.map((r) => ({ kind: "trim" as const, ...r })) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("flush" as const),
      writes: fc.integer({ min: 0, max: 6 }),
      ratio: fc.constantFrom(0, 0.5, 1),
      between: fc.array(range, { maxLength: 2 }),
      twice: fc.boolean(),
      badDrop: fc.boolean(),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ kind: "restore" as const }) },
  { weight: 1, arbitrary: fc.nat().map((index) => ({ kind: "replay" as const, index })) },
);

class World {
  metadata = new PartitionMetadata();
  opNum = 0;
  /** The bytes each write note carried, and each chunk's bytes on "sleds". */
  readonly noteData = new Map<number, Uint8Array>();
  readonly sleds = new Map<number, Uint8Array>();
  readonly model = new Uint8Array(partitionBytes);
  refusedExpected = 0;
  /** Every write and trim note applied, for replays. */
  readonly mutations: Note[] = [];

  note(kind: Note["kind"], offset: number, length: number, data?: Uint8Array): Note {
    this.opNum += 1;
    return {
      opNum: this.opNum,
      epoch: 1,
      session: 1,
      kind,
      offset,
      length,
      ...(data === undefined ? {} : { data }),
      checksum: 0,
    };
  }

  write(at: number, length: number): void {
    const data = new Uint8Array(length * unit);
    for (let byte = 0; byte < data.length; byte++) data[byte] = (this.opNum * 13 + byte + 1) & 0xff;
    const note = this.note("write", at * unit, length * unit, data);
    this.noteData.set(note.opNum, data);
    this.metadata.apply(note);
    this.mutations.push(note);
    this.model.set(data, at * unit);
  }

  trim(at: number, length: number): void {
    const note = this.note("trim", at * unit, length * unit);
    this.metadata.apply(note);
    this.mutations.push(note);
    this.model.fill(0, at * unit, (at + length) * unit);
  }

  /** Re-applies an earlier note: every byte it covers is held by it or a newer op. */
  replay(index: number): void {
    const note = this.mutations[index % Math.max(1, this.mutations.length)];
    if (note === undefined) return;
    const unflushed = this.metadata.unflushed.has(note.opNum);
    this.metadata.apply(note);
    if (!unflushed) this.metadata.unflushed.delete(note.opNum);
  }

  /** Packs a record as a primary does: relocations first, then journal pieces. */
  pack(writes: number, ratio: number, badDrop: boolean): FlushRecord {
    return this.packWithVictims(writes, ratio, badDrop).record;
  }

  packWithVictims(
    writes: number,
    ratio: number,
    badDrop: boolean,
  ): { record: FlushRecord; victims: Set<number> } {
    const metadata = this.metadata;
    const victims = new Set<number>();
    for (const [chunkNumber, entry] of metadata.chunks) {
      const refs = metadata.refBytes(chunkNumber);
      if (refs > 0 && refs <= entry.bytes * ratio) victims.add(chunkNumber);
    }
    const pieces: number[] = [];
    const parts: Uint8Array[] = [];
    let bytes = 0;
    for (const extent of metadata.extentsIn(victims)) {
      const location = extent.location as { kind: "chunk"; chunkId: number; offset: number };
      pieces.push(extent.offset, extent.length, extent.opNum, bytes);
      const data = this.sleds.get(location.chunkId)!;
      parts.push(data.subarray(location.offset, location.offset + extent.length));
      bytes += extent.length;
    }
    let throughOpNum = metadata.flushedThroughOpNum;
    let packed = 0;
    for (const [opNum, range] of metadata.unflushed) {
      if (packed === writes) break;
      packed += 1;
      for (const piece of metadata.tree.lookup(range.offset, range.length)) {
        const location = piece.location;
        if (location === null || location.kind !== "journal" || location.segment !== opNum)
          continue;
        pieces.push(piece.offset, piece.length, opNum, bytes);
        const data = this.noteData.get(opNum)!;
        parts.push(data.subarray(location.position, location.position + piece.length));
        bytes += piece.length;
      }
      throughOpNum = opNum;
    }
    const drop = new Set([...metadata.unreferencedChunks(), ...victims]);
    if (badDrop) {
      const referenced = [...metadata.chunks.keys()]
        .filter((chunkNumber) => !victims.has(chunkNumber) && metadata.refBytes(chunkNumber) > 0)
        .sort((a, b) => metadata.refBytes(b) - metadata.refBytes(a));
      if (referenced[0] !== undefined) drop.add(referenced[0]);
    }
    let chunk: FlushRecord["chunk"] = null;
    if (bytes > 0) {
      const chunkNumber = metadata.nextChunkNumber;
      this.sleds.set(chunkNumber, Buffer.concat(parts));
      chunk = { chunkNumber, sledChunkId: `c${chunkNumber}`, copies: ["s1", "s2"], bytes };
    }
    const record: FlushRecord = {
      throughOpNum,
      chunk,
      pieces,
      ...(drop.size === 0 ? {} : { drop: [...drop].sort((a, b) => a - b) }),
    };
    return { record, victims };
  }

  applyRecord(record: FlushRecord): void {
    this.metadata.apply(this.note("flush", 0, 0, encodeFlushRecord(record)));
  }

  async restore(): Promise<void> {
    const snapshot = this.metadata.snapshot(this.opNum, { epoch: 1, session: 1 });
    const { metadata } = await PartitionMetadata.restore(snapshot);
    // What the snapshot does not carry: unflushed writes come back from the journal.
    for (const [opNum, range] of this.metadata.unflushed) metadata.unflushed.set(opNum, range);
    metadata.dropsRefused = this.metadata.dropsRefused;
    this.metadata = metadata;
  }

  check(): void {
    const metadata = this.metadata;
    expect(metadata.checkRefs()).toEqual([]);
    // The tree's own live-byte count is an independent witness.
    const treeLive = new Map<number, number>();
    for (const tree of metadata.trees()) {
      for (const [chunkNumber, bytes] of tree.liveBytesByChunk())
        treeLive.set(chunkNumber, (treeLive.get(chunkNumber) ?? 0) + bytes);
    }
    for (const chunkNumber of new Set([...treeLive.keys(), ...metadata.chunks.keys()])) {
      expect(metadata.refBytes(chunkNumber)).toBe(treeLive.get(chunkNumber) ?? 0);
    }
    expect(metadata.dropsRefused).toBe(this.refusedExpected);
    let live = 0;
    for (const bytes of treeLive.values()) live += bytes;
    expect(metadata.liveBytes).toBe(live);
    const read = new Uint8Array(partitionBytes);
    for (const part of metadata.planRead(0, partitionBytes, (opNum) => this.noteData.get(opNum))) {
      if (part.kind === "memory") read.set(part.data, part.offset);
      if (part.kind === "chunk") {
        const data = this.sleds.get(part.chunkNumber)!;
        read.set(data.subarray(part.chunkOffset, part.chunkOffset + part.length), part.offset);
      }
    }
    expect(Buffer.from(read).equals(Buffer.from(this.model))).toBe(true);
  }
}

describe("metadata space accounting", () => {
  test("referenced bytes kept incrementally equal a recount after every step", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(command, { minLength: 1, maxLength: 60 }), async (commands) => {
        const world = new World();
        for (const step of commands) {
          switch (step.kind) {
            case "write":
              world.write(step.at, step.length);
              break;
            case "trim":
              world.trim(step.at, step.length);
              break;
            case "flush": {
              const { record, victims } = world.packWithVictims(
                step.writes,
                step.ratio,
                step.badDrop,
              );
              for (const between of step.between) world.write(between.at, between.length);
              // Applied again, its pieces change nothing. The pieces free the victims;
              // only the bad drop can be refused, if no write between packing and apply
              // freed that chunk after all.
              for (let times = step.twice ? 2 : 1; times > 0; times--) {
                for (const chunkNumber of record.drop ?? []) {
                  if (!victims.has(chunkNumber) && world.metadata.refBytes(chunkNumber) > 0)
                    world.refusedExpected += 1;
                }
                world.applyRecord(record);
                for (const chunkNumber of victims)
                  expect(world.metadata.chunks.has(chunkNumber)).toBe(false);
              }
              break;
            }
            case "restore":
              await world.restore();
              break;
            case "replay":
              world.replay(step.index);
              break;
          }
          world.check();
        }
      }),
      { numRuns: 300 },
    );
  });

  test("a drop of a referenced chunk is refused and counted, not applied", () => {
    const world = new World();
    world.write(0, 4);
    world.applyRecord(world.pack(1, 0, false));
    const [chunkNumber] = [...world.metadata.chunks.keys()];
    world.applyRecord({ throughOpNum: world.opNum, chunk: null, pieces: [], drop: [chunkNumber!] });
    expect(world.metadata.chunks.has(chunkNumber!)).toBe(true);
    expect(world.metadata.dropsRefused).toBe(1);
    world.refusedExpected = 1;
    world.check();
  });

  test("an overwritten chunk drops to no references; compaction moves a half-dead one", () => {
    const world = new World();
    world.write(0, 4);
    world.applyRecord(world.pack(1, 0, false));
    world.write(0, 4); // the whole chunk is dead
    expect(world.metadata.unreferencedChunks()).toEqual([0]);
    world.write(8, 4);
    world.applyRecord(world.pack(2, 0, false));
    expect(world.metadata.chunks.has(0)).toBe(false);
    world.write(0, 3);
    world.write(8, 2); // chunk 1 has 3 of its 8 units live
    expect(world.metadata.refBytes(1)).toBe(3 * unit);
    world.applyRecord(world.pack(0, 0.5, false));
    expect(world.metadata.chunks.has(1)).toBe(false);
    expect(world.metadata.refBytes(2)).toBe(3 * unit);
    expect(world.metadata.chunkBytes).toBe(3 * unit);
    world.check();
  });
});
