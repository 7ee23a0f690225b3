// Crash simulation: the store runs on simulated disks that lose every unsynced write at
// a random operation, sector by sector, tearing some sectors inside. After recovery
// from what was durable, every acknowledged write reads back byte-identical, every
// acknowledged delete stays deleted, unacknowledged writes are absent or complete (never
// damaged: scrub finds nothing, and no slot is taken for damage), and the allocator's
// books match the objects found (no leaked space). A failure prints the seed and crash point, which replay it exactly.

import { BallastError, crc32c, ErrorCode } from "@ballast/protocol";
import fc from "fast-check";
import { expect, test } from "vitest";
import { Device, type DeviceIdentity } from "../src/device.ts";
import { SledStore } from "../src/store.ts";
import { CrashSwitch, MemoryBlockFile, seededRandom } from "./memory-block-file.ts";
import { mebibyte, patterned, silentLogger } from "./support.ts";

const sledId = "sled-sim";
const deviceCount = 2;
const deviceBytes = 1 * mebibyte;
const owner = { volume: "vol-sim", partition: 1 };

function identity(deviceIndex: number): DeviceIdentity {
  return { sledId, deviceIndex, deviceCount, deviceBytes };
}

async function openStoreReporting(files: MemoryBlockFile[]) {
  const devices: Device[] = [];
  for (const [index, file] of files.entries()) {
    devices.push((await Device.open(file, `memory-${index}`, identity(index))).device);
  }
  return SledStore.open({ sledId, devices, logger: silentLogger });
}

async function openStore(files: MemoryBlockFile[]): Promise<SledStore> {
  return (await openStoreReporting(files)).store;
}

interface Written {
  kind: "chunk" | "blob";
  id: string;
  data: Buffer;
  acknowledged: boolean;
  deletion: "none" | "issued" | "acknowledged";
}

/** Runs a random workload until the crash; returns what the clients were told. */
async function runWorkload(store: SledStore, random: () => number, crashSwitch: CrashSwitch) {
  const objects: Written[] = [];
  const pick = (kind: Written["kind"]) => {
    const candidates = objects.filter(
      (object) => object.kind === kind && object.acknowledged && object.deletion === "none",
    );
    return candidates[Math.floor(random() * candidates.length)];
  };
  for (let round = 0; round < 40 && !crashSwitch.crashed; round++) {
    const operations: Promise<unknown>[] = [];
    const count = 1 + Math.floor(random() * 6);
    for (let index = 0; index < count; index++) {
      const roll = random();
      if (roll < 0.5) {
        const object: Written = {
          kind: "chunk",
          id: `c-${objects.length}`,
          data: patterned((1 + Math.floor(random() * 48)) * 512, objects.length),
          acknowledged: false,
          deletion: "none",
        };
        objects.push(object);
        operations.push(
          store.writeChunk(owner, object.id, object.data).then(() => {
            object.acknowledged = true;
          }),
        );
      } else if (roll < 0.7) {
        const object = pick("chunk");
        if (object === undefined) continue;
        object.deletion = "issued";
        operations.push(
          store.deleteChunk(owner, object.id).then(() => {
            object.deletion = "acknowledged";
          }),
        );
      } else if (roll < 0.85) {
        const object: Written = {
          kind: "blob",
          id: `b-${objects.length}`,
          data: patterned(Math.floor(random() * 3 * 4096) + 1, objects.length),
          acknowledged: false,
          deletion: "none",
        };
        objects.push(object);
        operations.push(
          (async () => {
            const { uploadId } = store.beginBlob(
              object.id,
              object.data.byteLength,
              crc32c(object.data),
            );
            for (let offset = 0; offset < object.data.byteLength; offset += 4096) {
              await store.putBlobPart(
                uploadId,
                offset,
                object.data.subarray(offset, offset + 4096),
              );
            }
            await store.commitBlob(uploadId);
            object.acknowledged = true;
          })(),
        );
      } else if (roll < 0.95) {
        const object = pick("blob");
        if (object === undefined) continue;
        object.deletion = "issued";
        operations.push(
          store.deleteBlob(object.id).then(() => {
            object.deletion = "acknowledged";
          }),
        );
      } else {
        const object = pick("chunk");
        if (object === undefined) continue;
        operations.push(store.writeChunk(owner, object.id, object.data)); // a retry
      }
    }
    await Promise.allSettled(operations);
  }
  return objects;
}

async function readWhole(store: SledStore, object: Written): Promise<Buffer | "absent"> {
  try {
    if (object.kind === "chunk") {
      return await store.readChunk(owner, object.id, 0, object.data.byteLength);
    }
    return Buffer.from((await store.getBlob(object.id, 0, undefined)).data);
  } catch (error) {
    if (error instanceof BallastError && error.code === ErrorCode.NotFound) return "absent";
    throw error;
  }
}

test("after a crash at any point, acknowledged state is exact and nothing leaks", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 1, max: 2 ** 31 - 1 }),
      fc.integer({ min: 1, max: 600 }),
      async (seed, crashAfterOperations) => {
        const random = seededRandom(seed);
        const crashSwitch = new CrashSwitch(random);
        const files = Array.from({ length: deviceCount }, () =>
          MemoryBlockFile.zeroed(deviceBytes, crashSwitch),
        );
        for (const [index, file] of files.entries()) {
          await Device.format(file, identity(index), {
            createdAtMs: 1,
            deviceUuid: "0".repeat(32),
          });
        }
        const store = await openStore(files);
        crashSwitch.arm(crashAfterOperations);
        const objects = await runWorkload(store, random, crashSwitch);
        try {
          crashSwitch.crash(); // a workload that finished before its crash point crashes now
        } catch {}

        const { store: recovered, report } = await openStoreReporting(
          files.map((file) => new MemoryBlockFile(file.durable)),
        );
        // A crash tears slot writes, which were never acknowledged: it never makes damage.
        expect(report.damagedSlots, `damage after a crash (seed ${seed})`).toBe(0);
        let presentBytes = 0;
        for (const object of objects) {
          const found = await readWhole(recovered, object);
          const where = `${object.kind} ${object.id} (seed ${seed}, crash after ${crashAfterOperations})`;
          if (found !== "absent") {
            expect(found.equals(object.data), `${where} reads back other bytes`).toBe(true);
          }
          if (object.acknowledged && object.deletion === "none") {
            expect(found, `${where} was acknowledged and is lost`).not.toBe("absent");
          }
          if (object.deletion === "acknowledged") {
            expect(found, `${where} was deleted and came back`).toBe("absent");
          }
          if (found !== "absent") {
            const location =
              object.kind === "chunk"
                ? recovered.statChunk(owner, object.id).location
                : (await recovered.listBlobs(object.id, undefined, 1)).blobs[0]!.location;
            presentBytes += location.extentBytes;
          }
        }
        const stat = recovered.stat();
        expect(stat.usedBytes, `leaked space (seed ${seed})`).toBe(presentBytes);
        expect((await recovered.scrub()).damaged).toEqual([]);
      },
    ),
    { numRuns: 80 },
  );
}, 60_000);
