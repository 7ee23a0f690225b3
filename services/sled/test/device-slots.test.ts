// Reading a large device's allocation map: only the slots in use come back, and a free
// slot costs no object (unit: a sparse in-memory BlockFile that stores only what was
// written, so a device of 2^22 slots needs no 2 GiB of memory).

import { describe, expect, test } from "vitest";
import type { BlockFile } from "../src/block-file.ts";
import { deviceBytesPerSlot, slotBytes } from "../src/constants.ts";
import { Device } from "../src/device.ts";
import type { SlotRecord } from "../src/format.ts";

const sectorBytes = 512;

/** Reads as zeros except for the sectors written; keeps nothing else. */
class SparseBlockFile implements BlockFile {
  private readonly sectors = new Map<number, Buffer>();
  constructor(private readonly bytes: number) {}

  async read(position: number, length: number): Promise<Buffer> {
    if (position + length > this.bytes) throw new Error("short read: past the end");
    const out = Buffer.alloc(length);
    for (const [at, sector] of this.sectors) {
      if (at + sectorBytes <= position || at >= position + length) continue;
      sector.copy(out, Math.max(0, at - position), Math.max(0, position - at));
    }
    return out;
  }

  async write(position: number, buffers: readonly Uint8Array[]): Promise<void> {
    let at = position;
    for (const buffer of buffers) {
      for (let offset = 0; offset < buffer.byteLength; offset += sectorBytes) {
        expect((at + offset) % sectorBytes).toBe(0);
        const sector = Buffer.alloc(sectorBytes);
        sector.set(buffer.subarray(offset, offset + sectorBytes));
        this.sectors.set(at + offset, sector);
      }
      at += buffer.byteLength;
    }
  }

  async sync(): Promise<void> {}
  async size(): Promise<number> {
    return this.bytes;
  }
  async close(): Promise<void> {}
}

const record = (key: string, generation: number): SlotRecord => ({
  kind: "chunk",
  key,
  owner: { volume: "vol-1", partition: 0 },
  generation,
  dataBytes: 4096,
  dataChecksum: 0x1234_5678,
  start: generation * 8,
  blocks: 8,
});

describe("a large device's allocation map", () => {
  test("2^22 slots, four not free: exactly those come back, in slot order", async () => {
    const slotCount = 2 ** 22;
    const deviceBytes = slotCount * deviceBytesPerSlot;
    const identity = { sledId: "sled-1", deviceIndex: 0, deviceCount: 1, deviceBytes };
    const file = new SparseBlockFile(deviceBytes);
    await Device.format(file, identity, { createdAtMs: 1, deviceUuid: "0".repeat(32) });
    const { device } = await Device.open(file, "sparse", identity);
    expect(device.layout.slotCount).toBe(slotCount);
    // The first slot, one inside a later piece, a damaged one, and the last.
    await device.writeSlot(0, record("c-first", 1));
    await device.writeSlot(1_000_003, record("c-middle", 2));
    await device.writeSlot(slotCount - 1, record("c-last", 3));
    const damagedAt = 2_500_000;
    const garbage = Buffer.alloc(slotBytes, 0x5a);
    await file.write(device.layout.slotTableOffset + damagedAt * slotBytes, [garbage]);
    // A slot written then freed again reads as zeros: not in use.
    await device.writeSlot(17, record("c-freed", 4));
    await device.writeSlot(17, undefined);

    const slots = await device.readSlots();
    expect(slots.map((entry) => [entry.slot, entry.decoding.state])).toEqual([
      [0, "used"],
      [1_000_003, "used"],
      [damagedAt, "damaged"],
      [slotCount - 1, "used"],
    ]);
    expect(slots[1]!.decoding).toEqual({ state: "used", record: record("c-middle", 2) });
  });
});
