// `ballast scrub --repair` on real sleds: a chunk whose copy on one sled has a flipped
// byte on disk is rewritten from the sound copy on the other sled, and reads back whole
// there afterwards; a damaged chunk with no other copy is reported and left in place;
// `ballast scrub` without --repair changes nothing, and the sled's stat counts the damage
// found until it is repaired. Devices are tiny (2 × 8 MiB).

import { open } from "node:fs/promises";
import { join } from "node:path";
import {
  BallastError,
  ErrorCode,
  type MessageOf,
  type RequestType,
  type ResultOf,
  subjects,
} from "@ballast/protocol";
import { afterAll, beforeAll, describe, expect, test, vi } from "vitest";
import { scrubCommand } from "../../apps/cli/src/scrub.ts";
import { startTestCluster, type TestCluster } from "../support/cluster.ts";

const mebibyte = 1024 * 1024;
const owner = { volume: "vol-1", partition: 0 };
let cluster: TestCluster;

beforeAll(async () => {
  cluster = await startTestCluster({
    sleds: 2,
    env: { BALLAST_SLED_DEVICES: "2", BALLAST_SLED_DEVICE_BYTES: String(8 * mebibyte) },
  });
});
afterAll(() => cluster?.stop());

function request<T extends RequestType>(sled: string, message: MessageOf<T>): Promise<ResultOf<T>> {
  return cluster.bus.request<T>(subjects.node.build("sled", sled), message, { deadlineMs: 10_000 });
}

function patterned(bytes: number, seed: number): Uint8Array {
  const data = new Uint8Array(bytes);
  for (let at = 0; at < bytes; at++) data[at] = (at * 31 + seed * 17 + (at >> 9)) & 0xff;
  return data;
}

async function flipByteOnDisk(sled: string, device: number, offset: number): Promise<void> {
  const handle = await open(join(cluster.dataDir, sled, `device-${device}.dev`), "r+");
  try {
    const byte = Buffer.alloc(1);
    await handle.read(byte, 0, 1, offset);
    byte[0]! ^= 0xff;
    await handle.write(byte, 0, 1, offset);
    await handle.datasync();
  } finally {
    await handle.close();
  }
}

async function captureStdout<T>(work: () => Promise<T>): Promise<{ result: T; output: string }> {
  const output: string[] = [];
  const write = vi.spyOn(process.stdout, "write").mockImplementation((chunk) => {
    output.push(String(chunk));
    return true;
  });
  try {
    return { result: await work(), output: output.join("") };
  } finally {
    write.mockRestore();
  }
}

async function readWhole(
  sled: string,
  chunkId: string,
  bytes: number,
): Promise<Uint8Array | string> {
  try {
    const { data } = await request(sled, {
      type: "sled.chunk.read.v1",
      owner,
      chunkId,
      offset: 0,
      length: bytes,
    });
    return Uint8Array.prototype.slice.call(data);
  } catch (error) {
    if (error instanceof BallastError) return error.code;
    throw error;
  }
}

describe("scrub --repair", () => {
  test("rewrites a damaged copy from the other sled's sound copy; without --repair it only reports", async () => {
    const victim = patterned(32 * 1024, 3);
    const lonely = patterned(16 * 1024, 4);
    let damagedAt = { device: 0, offset: 0 };
    for (const sled of ["sled-1", "sled-2"]) {
      const { location } = await request(sled, {
        type: "sled.chunk.write.v1",
        owner,
        chunkId: "victim",
        data: victim,
      });
      if (sled === "sled-1") damagedAt = { device: location.device, offset: location.dataOffset };
    }
    const { location: lonelyAt } = await request("sled-1", {
      type: "sled.chunk.write.v1",
      owner,
      chunkId: "lonely",
      data: lonely,
    });
    await flipByteOnDisk("sled-1", damagedAt.device, damagedAt.offset + 3 * 4096 + 7);
    await flipByteOnDisk("sled-1", lonelyAt.device, lonelyAt.dataOffset + 100);
    expect(await readWhole("sled-1", "victim", victim.byteLength)).toBe(ErrorCode.ChecksumMismatch);

    // Read-only: the damage is reported and stays.
    const looked = await captureStdout(() =>
      scrubCommand(["--all", "--json", "--nats", cluster.cluster.natsUrl]),
    );
    expect(looked.result).toBe(1);
    expect(JSON.parse(looked.output)).toMatchObject({ damaged: 2 });
    expect(JSON.parse(looked.output).repairs).toBeUndefined();
    expect(await readWhole("sled-1", "victim", victim.byteLength)).toBe(ErrorCode.ChecksumMismatch);
    // The sled remembers what the scrub found (status and its gauge show it); before,
    // only the scrub's caller and the log heard of it.
    expect((await request("sled-1", { type: "sled.stat.v1" })).damagedObjects).toBe(2);
    expect((await request("sled-2", { type: "sled.stat.v1" })).damagedObjects).toBe(0);

    const repaired = await captureStdout(() =>
      scrubCommand(["--sled", "sled-1", "--repair", "--json", "--nats", cluster.cluster.natsUrl]),
    );
    const summary = JSON.parse(repaired.output);
    expect(summary.damaged).toBe(2);
    expect(summary.unrepaired).toBe(1);
    expect(summary.repairs).toEqual(
      expect.arrayContaining([
        { sled: "sled-1", kind: "chunk", id: "victim", owner, from: "sled-2", repaired: true },
        expect.objectContaining({ sled: "sled-1", id: "lonely", repaired: false }),
      ]),
    );
    // The lonely chunk had no other copy: exit 1, and its damaged copy is still there.
    expect(repaired.result).toBe(1);
    expect(await readWhole("sled-1", "lonely", lonely.byteLength)).toBe(ErrorCode.ChecksumMismatch);
    const reread = await readWhole("sled-1", "victim", victim.byteLength);
    expect(reread).toBeInstanceOf(Uint8Array);
    expect(Buffer.from(reread as Uint8Array).equals(Buffer.from(victim))).toBe(true);

    // The repaired copy is no longer counted; the lonely one is, until deleted.
    expect((await request("sled-1", { type: "sled.stat.v1" })).damagedObjects).toBe(1);

    // The text form says what was repaired.
    await request("sled-1", { type: "sled.chunk.delete.v1", owner, chunkId: "lonely" });
    expect((await request("sled-1", { type: "sled.stat.v1" })).damagedObjects).toBe(0);
    const clean = await captureStdout(() =>
      scrubCommand(["--all", "--repair", "--nats", cluster.cluster.natsUrl]),
    );
    expect(clean.result).toBe(0);
    expect(clean.output).toContain("No damage found.");
    for (const sled of ["sled-1", "sled-2"]) {
      await request(sled, { type: "sled.chunk.delete.v1", owner, chunkId: "victim" });
    }
  });
});
