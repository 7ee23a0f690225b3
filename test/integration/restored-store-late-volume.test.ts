// A whole-cluster power cut whose cold start comes back on a control store restored from
// an older copy of the same store (same identity, so the store's mark on the sleds does
// not tell it from the newer one), taken before a volume was created. The catalogue then
// does not name that volume, and before the catalogue's sequence was witnessed on the
// sleds (coordinator store-marks.ts) the leftover sweep took it for deleted: its chunks
// and checkpoint blobs went from the sleds two leftover passes after the restart, though
// every write to it had been acknowledged. Now the sleds witness a higher sequence than
// the restored catalogue holds: nothing is deleted for being absent, no volume is
// created on the old copy, and status says why.

import { cp, readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { BallastError, ErrorCode, subjects } from "@ballast/protocol";
import { afterAll, expect, test } from "vitest";
import { runCli } from "../support/cli.ts";
import {
  pathExists,
  startTestCluster,
  type TestCluster,
  waitFor,
  waitUntilHealthy,
} from "../support/cluster.ts";
import { sledObjectsOf } from "../support/sled-chunks.ts";
import { VolumeModel } from "../support/volume-io.ts";

const mebibyte = 1024 * 1024;
let cluster: TestCluster | undefined;
afterAll(() => cluster?.stop());

test("a cold start on an older copy of the control store deletes nothing of a volume created after the copy", async () => {
  const running = await startTestCluster({
    headNodes: 2,
    sleds: 2,
    env: {
      BALLAST_CHECKPOINT_INTERVAL_MS: "500",
      // A leftover pass every second, a grace of half that: on the old code the late
      // volume's objects were gone within seconds of the restart.
      BALLAST_SWEEP_INTERVAL_MS: "100",
      BALLAST_SWEEP_GRACE_MS: "500",
    },
  });
  cluster = running;
  const nodes = running.cluster;
  const create = (name: string) =>
    running.bus.request(subjects.coordinator.build(), {
      type: "volume.create.v1",
      name,
      sizeBytes: 4 * mebibyte,
      partitionBytes: 4 * mebibyte,
      replicaCount: 2,
    });
  await create("early");
  for (const sled of nodes.ids("sled")) {
    await waitFor(`the control store's mark on ${sled}`, async () => {
      const marks = await running.bus.request(subjects.node.build("sled", sled), {
        type: "sled.blob.list.v1",
        prefix: "control-store/",
      });
      return marks.blobs.length > 0 ? true : undefined;
    });
  }

  // The copy of the control store (nats-server stopped for it, as a cold backup).
  const store = nodes.natsServer!.storeDir;
  await nodes.killNatsServer("SIGKILL");
  await cp(store, `${store}.copy`, { recursive: true });
  await nodes.restartNatsServer();
  const early = new VolumeModel(running.bus, "early");
  await waitFor("the catalogue again", () => early.describe().catch(() => undefined), 30_000);

  // A volume created after the copy, written and flushed to the sleds.
  const created = await waitFor("the late volume's create", () =>
    create("late").catch((error: unknown) => {
      if (error instanceof BallastError && error.code === ErrorCode.Unavailable) return undefined;
      throw error;
    }),
  );
  const volumeId = created.id!;
  const late = new VolumeModel(running.bus, "late");
  for (let block = 0; block < 16; block++) await late.writeBlock(block, block + 1);
  await late.flush();
  const before = await waitFor(
    "chunks and checkpoint blobs of the late volume on the sleds",
    async () => {
      const held = await sledObjectsOf(running.bus, running.cluster.ids("sled"), volumeId);
      const blobs = held.filter((entry) => entry.includes(" checkpoints/"));
      return blobs.length > 0 && held.length > blobs.length ? held : undefined;
    },
    30_000,
    250,
  );
  const directories = nodes
    .ids("headnode")
    .map((head) => join(running.dataDir, head, "partitions", volumeId));
  for (const directory of directories) expect(await pathExists(directory)).toBe(true);

  // The power cut: every process at once, then the older copy of the store comes back.
  await Promise.all(nodes.ids().map((id) => nodes.kill(id, "SIGKILL")));
  await nodes.killNatsServer("SIGKILL");
  await rm(store, { recursive: true, force: true });
  await cp(`${store}.copy`, store, { recursive: true });
  await rm(`${store}.copy`, { recursive: true, force: true });
  await nodes.restartNatsServer();
  for (const id of nodes.ids()) nodes.restart(id);
  await waitUntilHealthy(running.bus, nodes.ids(), 30_000);

  // The leader says why it deletes nothing: the sleds witnessed a later catalogue.
  const refused = await waitFor(
    "the leader to refuse absence-based deletion",
    async () => {
      const status = await running.bus.request(subjects.coordinator.build(), {
        type: "cluster.status.v1",
      });
      const reason = status.controlStore?.refused;
      return reason?.includes("witnessed catalogue sequence") ? status.controlStore : undefined;
    },
    15_000,
    250,
  );
  expect(refused.sequence!.witnessed).toBeGreaterThan(refused.sequence!.catalogue);
  const checked = await runCli(["status", "--check", "--nats", nodes.natsUrl]);
  expect(checked.code).toBe(5);
  expect(checked.stderr).toContain("CONTROL STORE NOT THE DATA'S");
  // A create on the old copy would raise its sequence back to the witness: refused.
  const again = await create("another").catch((error: unknown) => error);
  expect(again).toBeInstanceOf(BallastError);
  expect((again as BallastError).message).toContain("older than the data");

  // Several leftover passes have come and gone: every object of the late volume seen
  // before the cut is still there, and so are its replica directories.
  await new Promise((resolve) => setTimeout(resolve, 5000));
  expect(await sledObjectsOf(running.bus, running.cluster.ids("sled"), volumeId)).toEqual(
    expect.arrayContaining(before),
  );
  for (const directory of directories) {
    expect(await pathExists(directory)).toBe(true);
    expect((await readdir(directory)).length).toBeGreaterThan(0);
  }
}, 90_000);
