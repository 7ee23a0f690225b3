// A sled back on an empty disk (its data directory wiped, the process restarted well
// within sledOutAfterMs), on real processes: three sleds, a volume whose data is flushed
// to chunks (two copies each). The copies recorded on that sled are gone. Before, it was
// heard again and stayed in service: its copies still counted, status said every chunk
// had two copies, `status --check` exited 0, and chunks with one real copy stayed so
// until a head node's daily scrub. Now the coordinator sees the new data directory in
// its heartbeats, declares it out at once, the primaries make those copies again on the
// other sleds, and only then is it in service again. The sleds' own listings are the
// judge: every chunk that had a copy on the wiped sled has two copies again.

import { rm } from "node:fs/promises";
import { join } from "node:path";
import { subjects } from "@ballast/protocol";
import { afterAll, beforeAll, expect, test } from "vitest";
import { exitCodes } from "../../apps/cli/src/errors.ts";
import { runCli } from "../support/cli.ts";
import { startTestCluster, type TestCluster, waitFor } from "../support/cluster.ts";
import { logLinesContaining } from "../support/logs.ts";
import { listSledChunks } from "../support/sled-chunks.ts";
import { VolumeModel } from "../support/volume-io.ts";

const volume = "wiped";
/** Blocks written, 32 KiB apart: spread over several chunks. */
const blocks = 256;
/** From the restart to every lost copy made again (a loaded machine; a few chunks). */
const recopiedMs = 60_000;

let cluster: TestCluster;
let io: VolumeModel;

beforeAll(async () => {
  cluster = await startTestCluster({ headNodes: 2, sleds: 3 });
  io = new VolumeModel(cluster.bus, volume);
});
afterAll(() => cluster?.stop());

/** Chunk id → the sleds whose listing holds it, over `sleds`. */
async function holders(sleds: readonly string[]): Promise<Map<string, string[]>> {
  const held = new Map<string, string[]>();
  for (const sled of sleds) {
    for (const chunk of await listSledChunks(cluster.bus, sled, volume)) {
      held.set(chunk.chunkId, [...(held.get(chunk.chunkId) ?? []), sled]);
    }
  }
  return held;
}

test("a sled back on an empty disk is out until the copies it held are made again elsewhere", async () => {
  const created = await runCli([
    "volume",
    "create",
    volume,
    "--size",
    "8MiB",
    "--partition-size",
    "8MiB",
    "--replicas",
    "2",
    "--nats",
    cluster.cluster.natsUrl,
  ]);
  expect(created.code).toBe(0);
  for (let block = 0; block < blocks; block++) await io.writeBlock(block * 8, 1 + (block % 200));
  const flushedOpNum = await io.flush();
  const sleds = cluster.cluster.ids("sled");
  const primary = (await io.describe()).partitions[0]!.primary;
  await waitFor(
    "the primary to have its writes in chunks on sleds, two copies each",
    async () => {
      const replica = await cluster.bus.request(subjects.node.build("headnode", primary), {
        type: "headnode.replica.status.v1",
        volume,
        partition: 0,
      });
      if (replica.chunks === 0 || replica.flushedThroughOpNum < flushedOpNum) return undefined;
      const held = await holders(sleds);
      return held.size > 0 && [...held.values()].every((on) => on.length >= 2) ? true : undefined;
    },
    30_000,
  );
  const before = await holders(sleds);
  // The sled holding the most copies loses its disk.
  const wiped = [...sleds].sort(
    (a, b) =>
      [...before.values()].filter((on) => on.includes(b)).length -
      [...before.values()].filter((on) => on.includes(a)).length,
  )[0]!;
  const lost = [...before].filter(([, on]) => on.includes(wiped)).map(([id]) => id);
  expect(lost.length).toBeGreaterThan(0);
  await cluster.cluster.kill(wiped, "SIGKILL");
  await rm(join(cluster.dataDir, wiped), { recursive: true, force: true });
  cluster.cluster.restart(wiped);

  // Every chunk it held has two copies again, on the sleds' own word. The old
  // coordinator took it back in service with its copies counted, and nothing copied.
  await waitFor(
    `every chunk that had a copy on ${wiped} to have two copies again`,
    async () => {
      const held = await holders(sleds);
      return lost.every((id) => (held.get(id)?.length ?? 0) >= 2) ? true : undefined;
    },
    recopiedMs,
    250,
  );
  const said = await logLinesContaining(cluster.dataDir, ["sled back on another disk"]);
  expect(said.some((hit) => hit.file === "coordinator-1.log" && hit.line.includes(wiped))).toBe(
    true,
  );
  // Back in service once every primary reports its chunks whole without it; the check
  // then passes.
  const healthy = await waitFor(
    `${wiped} in service again and status --check 0`,
    async () => {
      const result = await runCli([
        "status",
        "--check",
        "--json",
        "--nats",
        cluster.cluster.natsUrl,
      ]);
      if (result.code !== exitCodes.ok) return undefined;
      const status = JSON.parse(result.stdout) as {
        sleds?: { id: string; state: string; newDisk?: true }[];
      };
      const record = status.sleds?.find((sled) => sled.id === wiped);
      return record?.state === "in" && record.newDisk === undefined ? status : undefined;
    },
    recopiedMs,
    250,
  );
  expect(healthy.sleds?.find((sled) => sled.id === wiped)?.state).toBe("in");
  await io.expectAllWritten();
}, 180_000);
