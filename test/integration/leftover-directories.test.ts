// A head node's leftover directories on real processes: a node comes back with the
// directory of an incarnation no catalogue record names (as one away while its volume
// was deleted and the purge record forgotten finds it: no drop will ever reach it), and
// removes it once it has asked the leading coordinator; the directory of a live volume
// it holds and one of a static name stay.
//
// The directory is planted while the node is down rather than made by a delete: after
// a delete the purge record keeps the drop owed to the missing node for a day
// (`purgeRecordAgeMsMax`), and that path (drop-owed.test.ts) would remove it first.
// What the node finds on its disk is the same either way.

import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { subjects } from "@ballast/protocol";
import { afterAll, beforeAll, expect, test } from "vitest";
import { pathExists, startTestCluster, type TestCluster, waitFor } from "../support/cluster.ts";

const mebibyte = 1024 * 1024;
/** An incarnation id of the issued shape that no record names. */
const goneId = "9-0123456789ab";
/** A static assignment's directory: the volume's name. */
const staticId = "static-vol";
const node = "head-1";

let cluster: TestCluster;

beforeAll(async () => {
  cluster = await startTestCluster({ headNodes: 2, sleds: 1 });
}, 60_000);
afterAll(() => cluster?.stop());

function directoryOf(volumeId: string): string {
  return join(cluster.dataDir, node, "partitions", volumeId);
}

async function plant(volumeId: string): Promise<void> {
  const partition = join(directoryOf(volumeId), "0");
  await mkdir(join(partition, "journal"), { recursive: true });
  await writeFile(join(partition, "journal", "segment-1"), new Uint8Array(4096).fill(1));
}

test("a restarted head node removes the directory of an incarnation no record names", async () => {
  const created = await cluster.bus.request(subjects.coordinator.build(), {
    type: "volume.create.v1",
    name: "vol",
    sizeBytes: 4 * mebibyte,
    partitionBytes: 4 * mebibyte,
    replicaCount: 2,
  });
  const liveId = created.id!;
  await waitFor("the live replica on disk", async () =>
    (await pathExists(directoryOf(liveId))) ? true : undefined,
  );

  // The leader answers only once it has read the control store's marks on the sleds
  // (coordinator store-marks.ts), within a second or so of leading; a node asking before
  // that is told to ask again a minute later.
  await waitFor("the leader to have read the control store's marks", async () => {
    const status = await cluster.bus.request(subjects.coordinator.build(), {
      type: "cluster.status.v1",
    });
    return status.controlStore !== undefined && status.controlStore.refused === undefined
      ? true
      : undefined;
  });
  await cluster.cluster.kill(node, "SIGKILL");
  await plant(goneId);
  await plant(staticId);
  cluster.cluster.restart(node);

  await waitFor(
    "the leftover directory to be removed",
    async () => ((await pathExists(directoryOf(goneId))) ? undefined : true),
    20_000,
    200,
  );
  expect(await pathExists(directoryOf(liveId))).toBe(true);
  expect(await pathExists(directoryOf(staticId))).toBe(true);
}, 60_000);
