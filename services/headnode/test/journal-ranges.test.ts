// What a flush packs of each op (PartitionMetadata.journalRangesOf): the ranges of the
// op's write that some tree still maps to its journal note. With no snapshot it merges
// the one tree's pieces as they come; a property test holds that to the plain way
// (every tree's pieces gathered, sorted and merged), with and without snapshots.

import fc from "fast-check";
import { expect, test } from "vitest";
import { encodeControlRecord } from "../src/replica/control-record.ts";
import { type JournalRange, PartitionMetadata } from "../src/replica/metadata.ts";
import type { Note } from "../src/replica/note.ts";

const base = { epoch: 1, session: 1, checksum: 0 };
const sector = 512;

/** The plain way: every tree's journal pieces of the op, sorted, then merged. */
function plainJournalRanges(
  metadata: PartitionMetadata,
  opNum: number,
  range: { offset: number; length: number },
): JournalRange[] {
  const found: { start: number; end: number }[] = [];
  for (const tree of metadata.trees()) {
    for (const piece of tree.lookup(range.offset, range.length)) {
      if (piece.location?.kind === "journal" && piece.location.segment === opNum) {
        found.push({ start: piece.offset, end: piece.offset + piece.length });
      }
    }
  }
  found.sort((a, b) => a.start - b.start);
  const merged: JournalRange[] = [];
  for (const { start, end } of found) {
    const last = merged[merged.length - 1];
    if (last !== undefined && start <= last.offset + last.length) {
      last.length = Math.max(last.length, end - last.offset);
    } else {
      merged.push({ offset: start, length: end - start, position: start - range.offset });
    }
  }
  return merged;
}

const step = fc.oneof(
  fc.record({
    kind: fc.constantFrom("write" as const, "write" as const, "trim" as const),
    sector: fc.integer({ min: 0, max: 63 }),
    sectors: fc.integer({ min: 1, max: 16 }),
  }),
  fc.constant({ kind: "snapshot" as const, sector: 0, sectors: 0 }),
);

test("the one-tree way finds the same ranges as the plain way, snapshots or not", () => {
  fc.assert(
    fc.property(fc.array(step, { minLength: 1, maxLength: 60 }), (steps) => {
      const metadata = new PartitionMetadata();
      const writes: { opNum: number; offset: number; length: number }[] = [];
      let opNum = 0;
      let snapshots = 0;
      for (const { kind, sector: at, sectors } of steps) {
        opNum++;
        let note: Note;
        if (kind === "snapshot") {
          note = {
            ...base,
            opNum,
            kind: "control",
            offset: 0,
            length: 0,
            data: encodeControlRecord({ kind: "snapshot.take", id: `s${snapshots++}` }),
          };
        } else {
          const offset = at * sector;
          const length = sectors * sector;
          note =
            kind === "write"
              ? { ...base, opNum, kind, offset, length, data: new Uint8Array(length) }
              : { ...base, opNum, kind: "trim", offset, length };
          if (kind === "write") writes.push({ opNum, offset, length });
        }
        metadata.apply(note);
        for (const write of writes) {
          expect(metadata.journalRangesOf(write.opNum, write)).toEqual(
            plainJournalRanges(metadata, write.opNum, write),
          );
        }
      }
    }),
    { numRuns: 300 },
  );
});
