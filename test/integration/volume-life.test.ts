// A volume deleted and created again with the same name, on real processes (issue 11,
// defect 2). With two head nodes and two replicas, the new volume's replicas land on
// the very nodes that hosted the old one, which is where a stale replica would be
// reused: the new volume must read as zeros, and must come up even when the old one's
// partition had reached an epoch above the new one's 1.

import { subjects } from "@ballast/protocol";
import { afterAll, beforeAll, expect, test } from "vitest";
import { runCli } from "../support/cli.ts";
import {
  startTestCluster,
  type TestCluster,
  waitFor,
  waitUntilHealthy,
} from "../support/cluster.ts";
import { bytesIn, describeVolume, readBytes, writeBlocks } from "../support/faults.ts";

const mebibyte = 1024 * 1024;
let cluster: TestCluster;

beforeAll(async () => {
  cluster = await startTestCluster({ headNodes: 2, sleds: 2 });
});
afterAll(() => cluster?.stop());

function create(name: string) {
  return cluster.bus.request(subjects.coordinator.build(), {
    type: "volume.create.v1",
    name,
    sizeBytes: 8 * mebibyte,
    partitionBytes: 8 * mebibyte,
    replicaCount: 2,
  });
}

async function deleteWithCli(name: string) {
  const deleted = await runCli(["volume", "delete", name, "--nats", cluster.cluster.natsUrl]);
  expect(deleted.stderr).toBe("");
  expect(deleted.stdout).toContain(`deleted volume ${name}`);
}

test("a volume deleted and created again with the same name reads as zeros", async () => {
  await create("life");
  await writeBlocks(cluster.bus, "life", 0, 0, 16, 0xa5);
  expect(bytesIn(await readBytes(cluster.bus, "life", 0, 0, 16 * 4096))).toEqual([0xa5]);

  await deleteWithCli("life");
  const again = await create("life");
  expect(new Set([again.partitions[0]!.primary, ...again.partitions[0]!.secondaries]).size).toBe(2);
  // Today: [0xa5] — the head nodes reused the deleted volume's replica.
  const read = await readBytes(cluster.bus, "life", 0, 0, 16 * 4096);
  expect(bytesIn(read), "the new volume's first 64 KiB").toEqual([0]);

  // And it is a working volume of its own.
  await writeBlocks(cluster.bus, "life", 0, 4096, 1, 0x3c);
  expect(bytesIn(await readBytes(cluster.bus, "life", 0, 0, 4096))).toEqual([0]);
  expect(bytesIn(await readBytes(cluster.bus, "life", 0, 4096, 4096))).toEqual([0x3c]);
  await deleteWithCli("life");
});

test("a volume whose partition reached a higher epoch is deleted; the new one comes up", async () => {
  await create("life2");
  await writeBlocks(cluster.bus, "life2", 0, 0, 8, 0x5a);
  const before = (await describeVolume(cluster.bus, "life2")).partitions[0]!;
  const victim = before.secondaries[0]!;
  await cluster.cluster.kill(victim, "SIGKILL");
  // The primary goes on alone in a new epoch, and takes a write there.
  const degraded = await waitFor("the partition to continue degraded", async () => {
    const state = (await describeVolume(cluster.bus, "life2")).partitions[0]!;
    return state.epoch > before.epoch ? state : undefined;
  });
  await writeBlocks(cluster.bus, "life2", 0, 8 * 4096, 8, 0x5b);
  cluster.cluster.restart(victim);
  await waitUntilHealthy(cluster.bus, [victim]);
  const last = (await describeVolume(cluster.bus, "life2")).partitions[0]!;
  process.stdout.write(
    `volume life: old incarnation at epoch ${last.epoch} (degraded at ${degraded.epoch}) before delete\n`,
  );

  expect(last.epoch).toBeGreaterThan(1);

  await deleteWithCli("life2");
  await create("life2");
  // Today: every configure is refused (the primary's node holds the old, higher epoch),
  // so the write below fails with WrongEpoch or times out after 20 s of retries.
  await writeBlocks(cluster.bus, "life2", 0, 0, 4, 0x77);
  expect(bytesIn(await readBytes(cluster.bus, "life2", 0, 0, 4 * 4096))).toEqual([0x77]);
  expect(bytesIn(await readBytes(cluster.bus, "life2", 0, 4 * 4096, 12 * 4096))).toEqual([0]);
  const state = (await describeVolume(cluster.bus, "life2")).partitions[0]!;
  expect(1 + state.secondaries.length).toBe(2);
});
