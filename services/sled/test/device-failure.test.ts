// Device failures and damaged slots, on simulated disks: a device whose writes, syncs or
// slot-table reads fail is failed on its own and the sled goes on with the others; a
// slot that fails its checks is recovered from its extent header, or read as free when a
// torn write left it, or else kept and reported as damage, never silently free.

import { BallastError, crc32c, ErrorCode } from "@ballast/protocol";
import { describe, expect, test } from "vitest";
import type { BlockFile } from "../src/block-file.ts";
import { slotBytes } from "../src/constants.ts";
import { Device, type DeviceIdentity } from "../src/device.ts";
import { slotOffset } from "../src/format.ts";
import { SledStore } from "../src/store.ts";
import { MemoryBlockFile } from "./memory-block-file.ts";
import { codeOf, mebibyte, patterned, silentLogger } from "./support.ts";

const sledId = "sled-faults";
const deviceBytes = 1 * mebibyte;
const owner = { volume: "vol-faults", partition: 0 };

/** A memory file whose writes, syncs or reads in a range fail with EIO while switched on. */
class FaultyFile implements BlockFile {
  failWrites = false;
  failSyncs = false;
  /** Fails the sync after this many more succeed, as Linux may: the writes stay visible. */
  failSyncAfter: number | undefined;
  failReadsIn: { from: number; to: number } | undefined;

  constructor(readonly inner: MemoryBlockFile) {}

  read(position: number, length: number): Promise<Buffer> {
    const range = this.failReadsIn;
    if (range !== undefined && position < range.to && position + length > range.from) {
      return Promise.reject(new Error("EIO: read error"));
    }
    return this.inner.read(position, length);
  }
  write(position: number, buffers: readonly Uint8Array[]): Promise<void> {
    if (this.failWrites) return Promise.reject(new Error("EIO: write error"));
    return this.inner.write(position, buffers);
  }
  sync(): Promise<void> {
    if (this.failSyncs) return Promise.reject(new Error("EIO: fdatasync error"));
    if (this.failSyncAfter !== undefined && this.failSyncAfter-- === 0) {
      this.failSyncAfter = undefined;
      this.inner.failSync();
      return Promise.reject(new Error("EIO: fdatasync error"));
    }
    return this.inner.sync();
  }
  size(): Promise<number> {
    return this.inner.size();
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

function identity(deviceIndex: number, deviceCount: number): DeviceIdentity {
  return { sledId, deviceIndex, deviceCount, deviceBytes };
}

async function formattedFiles(count: number): Promise<MemoryBlockFile[]> {
  const files = Array.from({ length: count }, () => MemoryBlockFile.zeroed(deviceBytes));
  for (const [index, file] of files.entries()) {
    await Device.format(file, identity(index, count), {
      createdAtMs: 1,
      deviceUuid: "0".repeat(32),
    });
  }
  return files;
}

async function openOn(files: readonly BlockFile[]) {
  const devices: Device[] = [];
  for (const [index, file] of files.entries()) {
    devices.push(
      (await Device.open(file, `memory-${index}`, identity(index, files.length))).device,
    );
  }
  return SledStore.open({ sledId, devices, logger: silentLogger });
}

/** A file with the durable bytes of `file`, as a restart finds them. */
function restarted(file: MemoryBlockFile): MemoryBlockFile {
  return new MemoryBlockFile(file.durable);
}

describe("a failed device", () => {
  test("is skipped by the allocator: writes go to the healthy device beside it", async () => {
    const files = (await formattedFiles(2)).map((file) => new FaultyFile(file));
    const { store } = await openOn(files);
    // Device 0 is chosen first (a tie on free space goes to the lower index); it fails.
    files[0]!.failWrites = true;
    const results = await Promise.allSettled(
      Array.from({ length: 40 }, (_, index) =>
        store.writeChunk(owner, `c-${index}`, patterned(8192, index)),
      ),
    );
    const written = results.filter((result) => result.status === "fulfilled").length;
    expect(written).toBe(40);
    for (let index = 0; index < 40; index++) {
      expect(store.statChunk(owner, `c-${index}`).location.device).toBe(1);
    }
    const stat = store.stat();
    expect(stat.devices[0]).toMatchObject({ failed: true, freeBytes: 0 });
    expect(stat.devices[1]!.failed).toBe(false);
    expect(store.health().failedDevices).toMatchObject([{ device: 0 }]);
  });

  test("a blob whose device fails before its commit fails with the device's own error", async () => {
    const files = (await formattedFiles(1)).map((file) => new FaultyFile(file));
    const { store } = await openOn(files);
    const data = patterned(8192, 3);
    const { uploadId } = store.beginBlob(
      "checkpoints/v/0/head-1/1-1-1",
      data.byteLength,
      crc32c(data),
    );
    await store.putBlobPart(uploadId, 0, data);
    files[0]!.failSyncs = true;
    const failure = await store.commitBlob(uploadId).then(
      () => undefined,
      (error: unknown) => error,
    );
    // The internal marker of a failed data phase never reaches a caller.
    expect(failure).toBeInstanceOf(Error);
    expect((failure as Error).message).not.toMatch(/data phase/);
  });

  test("a failed sync fails the writes that shared it and latches the device", async () => {
    const files = (await formattedFiles(2)).map((file) => new FaultyFile(file));
    const { store } = await openOn(files);
    await store.writeChunk(owner, "before", patterned(4096, 1)); // on device 0
    await store.writeChunk(owner, "other", patterned(4096, 9)); // on device 1: a tie again
    files[0]!.failSyncs = true;
    await expect(store.writeChunk(owner, "during", patterned(4096, 2))).resolves.toMatchObject({
      location: { device: 1 },
    });
    // The sync works again, but the device stays failed until reopened.
    files[0]!.failSyncs = false;
    expect(store.stat().devices[0]!.failed).toBe(true);
    expect(await codeOf(() => store.deleteChunk(owner, "before"))).toBe(ErrorCode.Unavailable);
    expect((await store.readChunk(owner, "before", 0, 4096)).equals(patterned(4096, 1))).toBe(true);
  });

  test("a slot whose sync failed, read back by a restart in the same boot, is made durable before a retry is acknowledged", async () => {
    const files = (await formattedFiles(1)).map((file) => new FaultyFile(file));
    const { store } = await openOn(files);
    const data = patterned(8192, 5);
    // The data phase's sync succeeds; the slot's fails, and its page stays readable.
    files[0]!.failSyncAfter = 1;
    expect(await codeOf(() => store.writeChunk(owner, "c", data))).toBe(ErrorCode.Unavailable);
    // The sled restarts in the same boot: recovery reads the slot from the page cache.
    const { store: sameBoot } = await openOn(files);
    expect(sameBoot.statChunk(owner, "c").bytes).toBe(8192);
    // The head node retries the write. Answered "stored" with the slot only in the page
    // cache, the copy was counted and then lost with the next reboot.
    await expect(sameBoot.writeChunk(owner, "c", data)).resolves.toMatchObject({
      created: false,
    });
    const { store: afterReboot } = await openOn([restarted(files[0]!.inner)]);
    expect((await afterReboot.readChunk(owner, "c", 0, 8192)).equals(data)).toBe(true);
  });

  test("an unreadable slot table fails that device, and the sled starts with the others", async () => {
    const memory = await formattedFiles(2);
    const first = await openOn(memory);
    await first.store.writeChunk(owner, "on-0", patterned(4096, 3));
    await first.store.writeChunk(owner, "on-1", patterned(4096, 4));
    expect(first.store.statChunk(owner, "on-1").location.device).toBe(1);
    const files = memory.map((file) => new FaultyFile(restarted(file)));
    const layout = (await Device.open(memory[1]!, "probe", identity(1, 2))).device.layout;
    files[1]!.failReadsIn = { from: slotOffset(layout, 0), to: layout.dataOffset };
    const { store, report } = await openOn(files);
    expect(report.failedDevices).toBe(1);
    expect(store.stat().devices.map((device) => device.failed)).toEqual([false, true]);
    expect(store.health().failedDevices[0]).toMatchObject({ device: 1 });
    expect(store.health().failedDevices[0]!.reason).toMatch(/EIO/);
    expect((await store.readChunk(owner, "on-0", 0, 4096)).equals(patterned(4096, 3))).toBe(true);
    await expect(store.writeChunk(owner, "after", patterned(4096, 5))).resolves.toMatchObject({
      location: { device: 0 },
    });
  });
});

describe("a slot that fails its checks", () => {
  /** One device with chunk `c` on it; returns the device file and the slot's offset. */
  async function oneChunk() {
    const [file] = await formattedFiles(1);
    const { store } = await openOn([file!]);
    await store.writeChunk(owner, "c", patterned(3 * 4096, 7));
    const layout = store.devices[0]!.layout;
    return { file: file!, at: slotOffset(layout, 0), store };
  }

  function damage(
    file: MemoryBlockFile,
    at: number,
    change: (slot: Buffer) => void,
  ): MemoryBlockFile {
    const image = new Uint8Array(file.durable);
    const slot = Buffer.from(image.buffer, image.byteOffset + at, slotBytes);
    change(slot);
    return new MemoryBlockFile(image);
  }

  test("whose extent header still names it is rebuilt from the header and rewritten", async () => {
    const { file, at } = await oneChunk();
    const damaged = damage(file, at, (slot) => {
      slot[100]! ^= 0x55; // bit rot inside the key
    });
    const { store, report } = await openOn([damaged]);
    expect(report).toMatchObject({ recoveredSlots: 1, damagedSlots: 0, chunks: 1 });
    expect((await store.readChunk(owner, "c", 0, 3 * 4096)).equals(patterned(3 * 4096, 7))).toBe(
      true,
    );
    // The slot was rewritten: the next start finds it whole.
    const again = await openOn([restarted(damaged)]);
    expect(again.report).toMatchObject({ recoveredSlots: 0, damagedSlots: 0, chunks: 1 });
  });

  test("that cannot be rebuilt is damage: ChecksumMismatch with where, never free", async () => {
    const { file, at } = await oneChunk();
    const damaged = damage(file, at, (slot) => {
      slot.fill(0xff, 8, 16); // the generation: no header can vouch for it
    });
    const { store, report } = await openOn([damaged]);
    expect(report).toMatchObject({ damagedSlots: 1, tornSlots: 0, chunks: 0 });
    const error = await store.readChunk(owner, "c", 0, 4096).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(BallastError);
    expect((error as BallastError).code).toBe(ErrorCode.ChecksumMismatch);
    expect((error as BallastError).details).toMatchObject({ device: 0, offset: at, chunkId: "c" });
    expect(store.stat().devices[0]!.slotsUsed).toBe(1);
    expect(store.stat().usedBytes).toBeGreaterThan(0); // its extent is held, not reused
    expect(store.health().damagedSlots).toMatchObject([
      { device: 0, slot: 0, offset: at, key: "c" },
    ]);
    const scrub = await store.scrub();
    expect(scrub.damaged).toMatchObject([{ kind: "chunk", id: "c", device: 0, offset: at }]);
    // New writes never take the damaged slot or its extent.
    for (let index = 0; index < 5; index++) {
      const { location } = await store.writeChunk(owner, `n-${index}`, patterned(4096, index));
      expect(location.offset).not.toBe(store.devices[0]!.layout.dataOffset);
    }
    // A repair that writes the chunk again clears the damage, durably.
    await store.writeChunk(owner, "c", patterned(3 * 4096, 7));
    expect(store.health().damagedSlots).toEqual([]);
  });

  test("a delete of a key only a damaged slot names clears it and frees its space", async () => {
    const { file, at } = await oneChunk();
    const damaged = damage(file, at, (slot) => {
      slot.fill(0xff, 8, 16);
    });
    const { store } = await openOn([damaged]);
    expect((await store.deleteChunk(owner, "c")).freedBytes).toBeGreaterThan(0);
    expect(await codeOf(() => store.readChunk(owner, "c", 0, 4096))).toBe(ErrorCode.NotFound);
    expect(store.stat()).toMatchObject({ usedBytes: 0 });
    const again = await openOn([restarted(damaged)]);
    expect(again.report).toMatchObject({ damagedSlots: 0, tornSlots: 0, chunks: 0 });
  });

  test("left by a torn write that never completed reads as free", async () => {
    // The slot write was cut after its first bytes: the rest of the sector is still the
    // zeros of the free slot, the generation among them, so no header vouches for it.
    const { file, at } = await oneChunk();
    const torn = damage(file, at, (slot) => {
      slot.fill(0, 8);
    });
    const { store, report } = await openOn([torn]);
    expect(report).toMatchObject({ tornSlots: 1, damagedSlots: 0, chunks: 0 });
    expect(await codeOf(() => store.readChunk(owner, "c", 0, 4096))).toBe(ErrorCode.NotFound);
    expect(store.stat()).toMatchObject({ usedBytes: 0 });
  });
});
