import fc from "fast-check";
import { describe, expect, test } from "vitest";
import { blockBytes, slotBytes, superblockBytes } from "../src/constants.ts";
import {
  blockChecksums,
  decodeExtentHeader,
  decodeSlot,
  decodeSuperblock,
  deviceLayout,
  encodeExtentHeader,
  encodeSlot,
  encodeSuperblock,
  extentBlocks,
  extentHeaderBytes,
  headerMismatch,
  type SlotRecord,
  type Superblock,
} from "../src/format.ts";

const superblock: Superblock = {
  ...deviceLayout(8 * 1024 * 1024),
  formatVersion: 1,
  sledId: "sled-7",
  deviceIndex: 1,
  deviceCount: 2,
  blockBytes,
  slotBytes,
  createdAtMs: 1_764_061_200_000,
  deviceUuid: "00112233445566778899aabbccddeeff",
};

const chunkRecord: SlotRecord = {
  kind: "chunk",
  key: "c-000042",
  owner: { volume: "vol-1", partition: 3 },
  generation: 2 ** 40 + 17,
  dataBytes: 5 * 4096 + 512,
  dataChecksum: 0xdeadbeef,
  start: 123_456,
  blocks: 8,
};

describe("device layout", () => {
  test("keeps superblocks, slot table and data apart, all block aligned", () => {
    for (const deviceBytes of [1 << 20, 8 << 20, 1 << 30, 2 ** 44]) {
      const layout = deviceLayout(deviceBytes);
      expect(layout.slotTableOffset).toBe(2 * superblockBytes);
      expect(layout.dataOffset).toBeGreaterThanOrEqual(
        layout.slotTableOffset + layout.slotCount * slotBytes,
      );
      expect(layout.dataOffset % blockBytes).toBe(0);
      expect(layout.dataOffset + layout.dataBlocks * blockBytes).toBeLessThanOrEqual(deviceBytes);
      // The allocation map costs 1/128 of the device.
      expect(layout.dataOffset / deviceBytes).toBeLessThan(0.05);
    }
  });
});

describe("superblock", () => {
  test("round trips", () => {
    expect(decodeSuperblock(encodeSuperblock(superblock))).toEqual({ ok: true, superblock });
  });

  test("any single damaged byte is caught", () => {
    const image = encodeSuperblock(superblock);
    fc.assert(
      fc.property(fc.nat(superblockBytes - 1), fc.integer({ min: 1, max: 255 }), (at, flip) => {
        const damaged = Buffer.from(image);
        damaged[at]! ^= flip;
        expect(decodeSuperblock(damaged).ok).toBe(false);
      }),
      { numRuns: 500 },
    );
  });

  test("names what it found: blank, foreign, damaged or another version", () => {
    expect(decodeSuperblock(Buffer.alloc(superblockBytes))).toMatchObject({ problem: "blank" });
    const foreign = Buffer.alloc(superblockBytes, 0x41);
    expect(decodeSuperblock(foreign)).toMatchObject({ problem: "not-ballast" });
    const torn = encodeSuperblock(superblock);
    torn.fill(0, 2048);
    expect(decodeSuperblock(torn)).toMatchObject({ problem: "checksum" });
    const future = encodeSuperblock({ ...superblock, formatVersion: 2 });
    expect(decodeSuperblock(future)).toMatchObject({ problem: "version" });
  });
});

describe("slot", () => {
  test("round trips chunks and blobs", () => {
    expect(decodeSlot(encodeSlot(chunkRecord))).toEqual({ state: "used", record: chunkRecord });
    const blob: SlotRecord = {
      ...chunkRecord,
      kind: "blob",
      key: `checkpoint/vol-1/3/${"9".repeat(150)}.v1`,
      owner: undefined,
    };
    expect(decodeSlot(encodeSlot(blob))).toEqual({ state: "used", record: blob });
  });

  test("zeros are a free slot", () => {
    expect(decodeSlot(Buffer.alloc(slotBytes))).toEqual({ state: "empty" });
  });

  test("a torn or damaged slot is never trusted", () => {
    const image = encodeSlot(chunkRecord);
    fc.assert(
      fc.property(fc.nat(slotBytes - 1), fc.integer({ min: 1, max: 255 }), (at, flip) => {
        const damaged = Buffer.from(image);
        damaged[at]! ^= flip;
        expect(decodeSlot(damaged).state).not.toBe("used");
      }),
      { numRuns: 1000 },
    );
    fc.assert(
      fc.property(fc.integer({ min: 1, max: slotBytes - 1 }), (keep) => {
        // Half written: the first `keep` bytes new, the rest still zero.
        const torn = Buffer.alloc(slotBytes);
        image.copy(torn, 0, 0, keep);
        expect(decodeSlot(torn).state).not.toBe("used");
      }),
      { numRuns: 500 },
    );
  });
});

describe("extent header", () => {
  test("round trips with one CRC per 4 KiB block", () => {
    const data = Buffer.alloc(3 * blockBytes + 1000, 7);
    data[blockBytes] = 9;
    const checksums = blockChecksums(data);
    expect(checksums.length).toBe(4);
    expect(checksums[0]).toBe(checksums[2]);
    expect(checksums[1]).not.toBe(checksums[0]);
    const header = {
      kind: "chunk" as const,
      key: "c-1",
      owner: { volume: "vol-1", partition: 0 },
      generation: 5,
      dataBytes: data.byteLength,
      dataChecksum: 42,
      blockChecksums: checksums,
    };
    const image = encodeExtentHeader(header);
    expect(image.byteLength).toBe(extentHeaderBytes(data.byteLength));
    expect(decodeExtentHeader(image)).toEqual({ ok: true, header });
  });

  test("a 4 MiB chunk costs two header blocks", () => {
    expect(extentHeaderBytes(4 * 1024 * 1024)).toBe(2 * blockBytes);
    expect(extentBlocks(4 * 1024 * 1024)).toBe(1026);
    expect(extentBlocks(512)).toBe(2);
  });

  test("damage to the header or its CRC table is caught", () => {
    const header = {
      kind: "blob" as const,
      key: "b",
      owner: undefined,
      generation: 1,
      dataBytes: 600 * blockBytes,
      dataChecksum: 1,
      blockChecksums: new Uint32Array(600).map((_, index) => index * 7919),
    };
    const image = encodeExtentHeader(header);
    fc.assert(
      fc.property(fc.nat(512 + 600 * 4 - 1), fc.integer({ min: 1, max: 255 }), (at, flip) => {
        const damaged = Buffer.from(image);
        damaged[at]! ^= flip;
        expect(decodeExtentHeader(damaged).ok).toBe(false);
      }),
      { numRuns: 500 },
    );
  });

  test("a header of another object or generation does not match the slot", () => {
    const header = {
      kind: chunkRecord.kind,
      key: chunkRecord.key,
      owner: chunkRecord.owner,
      generation: chunkRecord.generation,
      dataBytes: chunkRecord.dataBytes,
      dataChecksum: chunkRecord.dataChecksum,
      blockChecksums: new Uint32Array(6),
    };
    expect(headerMismatch(header, chunkRecord)).toBeUndefined();
    expect(headerMismatch({ ...header, generation: 1 }, chunkRecord)).toMatch(/generation/);
    expect(headerMismatch({ ...header, key: "c-other" }, chunkRecord)).toMatch(/c-other/);
    expect(
      headerMismatch({ ...header, owner: { volume: "vol-1", partition: 4 } }, chunkRecord),
    ).toMatch(/owner/);
  });
});
