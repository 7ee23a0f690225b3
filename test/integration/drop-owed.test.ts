// A head node frozen (SIGSTOP) while its volume is deleted, on real processes: frozen
// past its heartbeats, it is not counted alive, so the delete sends it no drop, and
// nothing but the drop would ever close its replica (the incarnation's records are gone,
// so no configure reaches it) or remove its files. (Frozen for less, the drop waits in
// its socket and runs when it wakes: not the case under test.) The purge record keeps
// the drop owed; once the node is heard again, a purge pass tells it, and its replica
// directory of the deleted incarnation goes.

import { join } from "node:path";
import { subjects } from "@ballast/protocol";
import { afterAll, beforeAll, expect, test } from "vitest";
import { pathExists, startTestCluster, type TestCluster, waitFor } from "../support/cluster.ts";

const mebibyte = 1024 * 1024;
/** The purge grace (3 s), a pass or two (every 2 s), and slack for a loaded machine. */
const droppedWithinMs = 15_000;

let cluster: TestCluster;

beforeAll(async () => {
  cluster = await startTestCluster({ headNodes: 2, sleds: 1 });
}, 60_000);
afterAll(() => cluster?.stop());

/** Where `node` keeps the replicas of incarnation `volumeId` (partition-host.ts). */
function replicasOf(node: string, volumeId: string): string {
  return join(cluster.dataDir, node, "partitions", volumeId);
}

test("a primary frozen through the delete drops its replica once it wakes", async () => {
  const created = await cluster.bus.request(subjects.coordinator.build(), {
    type: "volume.create.v1",
    name: "vol",
    sizeBytes: 4 * mebibyte,
    partitionBytes: 4 * mebibyte,
    replicaCount: 2,
  });
  const volumeId = created.id!;
  const primary = created.partitions[0]!.primary;
  const other = created.partitions[0]!.secondaries[0]!;
  await waitFor("both replicas on disk", async () =>
    (await pathExists(replicasOf(primary, volumeId))) &&
    (await pathExists(replicasOf(other, volumeId)))
      ? true
      : undefined,
  );

  const pid = cluster.cluster.pid(primary);
  process.kill(pid, "SIGSTOP");
  try {
    await waitFor(
      `${primary} to be counted dead`,
      async () => {
        const status = await cluster.bus.request(
          subjects.coordinator.build(),
          { type: "cluster.status.v1" },
          { deadlineMs: 1000 },
        );
        return status.services.some((service) => service.id === primary && service.healthy)
          ? undefined
          : true;
      },
      15_000,
      200,
    );
    const deleted = await cluster.bus.request(subjects.coordinatorAdmin.build(), {
      type: "volume.delete.v1",
      name: "vol",
    });
    expect(deleted).toEqual({ name: "vol", deleted: true });
    expect(await pathExists(replicasOf(other, volumeId))).toBe(false);
    expect(await pathExists(replicasOf(primary, volumeId))).toBe(true);
  } finally {
    process.kill(pid, "SIGCONT");
  }
  await waitFor(
    "the woken node to drop the deleted incarnation's replica",
    async () => ((await pathExists(replicasOf(primary, volumeId))) ? undefined : true),
    droppedWithinMs,
    200,
  );
}, 60_000);
