// The partition rules a clone's reads rely on (replica/layering.ts): a trim and a
// write-zeroes leave explicit zero extents, so only ranges no mutation ever covered read
// as unmapped; the same after a snapshot and a rollback to it, and after a checkpoint
// restore (a rebuilt replica agrees with the others).

import { describe, expect, test } from "vitest";
import { encodeControlRecord } from "../src/replica/control-record.ts";
import { unmappedRanges } from "../src/replica/layering.ts";
import { PartitionMetadata, type ReadPart } from "../src/replica/metadata.ts";
import type { Note } from "../src/replica/note.ts";

const base = { epoch: 1, session: 1, checksum: 0 };

function write(opNum: number, offset: number, length: number): Note {
  return { ...base, opNum, kind: "write", offset, length, data: new Uint8Array(length).fill(7) };
}

function mutation(opNum: number, kind: "trim" | "zeroes", offset: number, length: number): Note {
  return { ...base, opNum, kind, offset, length };
}

function control(opNum: number, record: Parameters<typeof encodeControlRecord>[0]): Note {
  return {
    ...base,
    opNum,
    kind: "control",
    offset: 0,
    length: 0,
    data: encodeControlRecord(record),
  };
}

function unmapped(metadata: PartitionMetadata, snapshotId?: string) {
  const held = new Map<number, Uint8Array>();
  const parts = metadata.planRead(
    0,
    16384,
    (opNum) => held.get(opNum) ?? new Uint8Array(16384),
    snapshotId,
  );
  return unmappedRanges(parts);
}

describe("unmapped ranges of a partition", () => {
  test("a trim and a write-zeroes leave zero extents: only never-covered ranges are unmapped", () => {
    const metadata = new PartitionMetadata();
    expect(unmapped(metadata)).toEqual([{ offset: 0, length: 16384 }]);
    metadata.apply(write(1, 0, 4096));
    metadata.apply(mutation(2, "trim", 1024, 512));
    metadata.apply(mutation(3, "zeroes", 8192, 512));
    metadata.apply(mutation(4, "trim", 12288, 1024));
    // The trims and the write-zeroes are mapped (as zeros), not holes.
    expect(unmapped(metadata)).toEqual([
      { offset: 4096, length: 4096 },
      { offset: 8704, length: 3584 },
      { offset: 13312, length: 3072 },
    ]);
    // A trim over data that was never written still counts as mapped.
    const parts = metadata.planRead(12288, 1024, () => undefined);
    expect(parts).toEqual([{ kind: "zero", offset: 12288, length: 1024 }]);
  });

  test("a snapshot keeps its holes, and a rollback to it brings them back", () => {
    const metadata = new PartitionMetadata();
    metadata.apply(write(1, 0, 4096));
    metadata.apply(control(2, { kind: "snapshot.take", id: "s1" }));
    metadata.apply(write(3, 4096, 8192));
    metadata.apply(mutation(4, "trim", 12288, 4096));
    expect(unmapped(metadata)).toEqual([]);
    expect(unmapped(metadata, "s1")).toEqual([{ offset: 4096, length: 12288 }]);
    metadata.apply(control(5, { kind: "snapshot.rollback", id: "s1" }));
    expect(unmapped(metadata)).toEqual([{ offset: 4096, length: 12288 }]);
  });

  test("a replica restored from a checkpoint has the same unmapped ranges", async () => {
    const metadata = new PartitionMetadata();
    metadata.apply(write(1, 0, 4096));
    metadata.apply(mutation(2, "trim", 4096, 4096));
    metadata.apply(control(3, { kind: "snapshot.take", id: "s1" }));
    metadata.apply(mutation(4, "zeroes", 8192, 512));
    const bytes = metadata.snapshot(4, { epoch: 1, session: 1 });
    const { metadata: restored } = await PartitionMetadata.restore(bytes);
    expect(unmapped(restored)).toEqual(unmapped(metadata));
    expect(unmapped(restored)).toEqual([{ offset: 8704, length: 7680 }]);
    expect(unmapped(restored, "s1")).toEqual([{ offset: 8192, length: 8192 }]);
  });

  test("adjacent unmapped parts merge; mapped and zero parts are left out", () => {
    const parts: ReadPart[] = [
      { kind: "zero", offset: 0, length: 512, unmapped: true },
      { kind: "zero", offset: 512, length: 512, unmapped: true },
      { kind: "zero", offset: 1024, length: 512 },
      { kind: "memory", offset: 1536, length: 512, data: new Uint8Array(512) },
      { kind: "zero", offset: 2048, length: 1024, unmapped: true },
    ];
    expect(unmappedRanges(parts)).toEqual([
      { offset: 0, length: 1024 },
      { offset: 2048, length: 1024 },
    ]);
  });
});
