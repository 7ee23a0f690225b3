// A sled back on an empty disk (its data directory wiped, the process restarted at once
// under its old id, long before it could be declared out), on real processes: two head
// nodes and two sleds, so that every chunk has a copy on each and no other sled could
// take the lost ones. The copies the head nodes list on that sled are gone.
//
// Before, it was simply back: status said full strength and every chunk had two copies,
// `status --check` exited 0, and a primary whose checkpoint look did not meet the sled
// (here the look is held off for the whole test) left each chunk at one real copy until
// its daily scrub. An earlier fix kept such a sled out of service until its copies were
// whole elsewhere: with two sleds that never happens (the head nodes restore the copies
// on the sled itself), and it stayed out for ever.
//
// Now the coordinator sees the new data directory in the sled's heartbeats and keeps it
// in service but refilling: status shows it, `--check` exits 5, and the answer to the
// head nodes' reports asks them to audit it. Each primary looks for every copy its table
// lists there, writes the missing ones again, and says so in its reports; then the sled
// is verified and `--check` exits 0. The sleds' own listings are the judge that the
// copies are back. More chunks than one audit step repairs are written, so that the
// audit takes more than one scrub step and the refilling state lasts long enough to be
// seen by a polling CLI.

import { rm } from "node:fs/promises";
import { join } from "node:path";
import { subjects } from "@ballast/protocol";
import { afterAll, beforeAll, expect, test } from "vitest";
import { exitCodes } from "../../apps/cli/src/errors.ts";
import { sledAuditRepairsPerStepMax } from "../../services/headnode/src/replicator.ts";
import { runCli } from "../support/cli.ts";
import {
  startTestCluster,
  type TestCluster,
  waitFor,
  waitUntilHealthy,
} from "../support/cluster.ts";
import { describeVolume, writeBlocks } from "../support/faults.ts";
import { listSledChunks } from "../support/sled-chunks.ts";

const volume = "new-disk";
const mebibyte = 1024 * 1024;
const partitionBytes = 16 * mebibyte;
/** Chunks written: more than one audit step repairs, so the audit takes two steps. */
const chunksWritten = sledAuditRepairsPerStepMax + 4;
/**
 * Each round's bytes: above compaction's small-chunk size, so chunks are not merged. One
 * request a round: its writes commit together, so no flush takes part of a round.
 */
const blocksPerRound = 160;
/**
 * The head nodes flush once a round's bytes are committed (BALLAST_FLUSH_BYTES), not at
 * their next flush interval (a second): a chunk per round, without a second's wait each.
 */
const flushBytes = blocksPerRound * 4096;
/** Liveness bounds on a loaded machine (an audit step every 10 s). */
const seenWithinMs = 30_000;
const verifiedWithinMs = 60_000;

let cluster: TestCluster;

beforeAll(async () => {
  cluster = await startTestCluster({
    headNodes: 2,
    sleds: 2,
    env: {
      // Never out while the test runs: the sled is back long before.
      BALLAST_SLED_OUT_AFTER_MS: String(3_600_000),
      // The head nodes' own checkpoint look never comes: only the coordinator's ask can
      // start the audit within the test.
      BALLAST_CHECKPOINT_CHECK_MS: String(3_600_000),
      BALLAST_FLUSH_BYTES: String(flushBytes),
    },
  });
});
afterAll(() => cluster?.stop());

interface SledShown {
  id: string;
  state: string;
  disk?: string;
  refilling?: { partitions: number; volumes: string[] };
}

async function check(): Promise<{ code: number | null; sleds: SledShown[] }> {
  const result = await runCli(["status", "--check", "--json", "--nats", cluster.cluster.natsUrl]);
  const parsed = JSON.parse(result.stdout) as { sleds?: SledShown[] };
  return { code: result.code, sleds: parsed.sleds ?? [] };
}

async function primaryOf(): Promise<string> {
  return (await describeVolume(cluster.bus, volume)).partitions[0]!.primary;
}

test("a sled back on a wiped disk stays in service, is shown refilling and fails the check until every primary has audited it", async () => {
  await cluster.bus.request(subjects.coordinator.build(), {
    type: "volume.create.v1",
    name: volume,
    sizeBytes: partitionBytes,
    partitionBytes,
    replicaCount: 2,
  });
  // A chunk per round: written, then flushed.
  for (let round = 0; round < chunksWritten; round++) {
    const offset = round * blocksPerRound * 4096;
    const written = await writeBlocks(cluster.bus, volume, 0, offset, blocksPerRound, 1 + round);
    const opNum = (written as { opNumLast: number }).opNumLast;
    await waitFor(`round ${round} flushed`, async () => {
      const replica = await cluster.bus.request(
        subjects.node.build("headnode", await primaryOf()),
        { type: "headnode.replica.status.v1", volume, partition: 0 },
      );
      return replica.flushedThroughOpNum >= opNum ? true : undefined;
    });
  }
  const [victim, survivor] = cluster.cluster.ids("sled") as [string, string];
  const held = await waitFor("every chunk on both sleds", async () => {
    const on = await listSledChunks(cluster.bus, victim, volume);
    const other = await listSledChunks(cluster.bus, survivor, volume);
    return on.length >= chunksWritten && other.length === on.length ? on : undefined;
  });
  const before = await check();
  expect(before.code).toBe(exitCodes.ok);
  const diskBefore = before.sleds.find((sled) => sled.id === victim)?.disk;
  expect(diskBefore).toMatch(/^[0-9a-f]{32}$/);

  await cluster.cluster.kill(victim);
  await rm(join(cluster.dataDir, victim), { recursive: true, force: true });
  const restartedAtMs = performance.now();
  cluster.cluster.restart(victim);
  await waitUntilHealthy(cluster.bus, [victim]);
  const empty = await waitFor(`${victim} to answer`, async () => {
    try {
      return await listSledChunks(cluster.bus, victim, volume);
    } catch {
      return undefined;
    }
  });
  expect(empty).toEqual([]);

  // Back and alive, but unverified: the old coordinator called this full strength. The
  // check and the plain status run at once, so that both see the same stretch of the
  // refill: run one after the other, the second could come after its last audit step.
  const refillingLine = new RegExp(`${victim}\\s+REFILLING`);
  const refilling = await waitFor(
    `status --check to exit 5 and status to show ${victim} refilling`,
    async () => {
      const [seen, text] = await Promise.all([
        check(),
        runCli(["status", "--nats", cluster.cluster.natsUrl]),
      ]);
      const shown = seen.sleds.find((sled) => sled.id === victim);
      return seen.code === exitCodes.notFullStrength &&
        shown?.refilling !== undefined &&
        refillingLine.test(text.stdout)
        ? shown
        : undefined;
    },
    seenWithinMs,
    250,
  );
  // In service all along (no deadlock: no other sled could take the copies), on a new disk.
  expect(refilling.state).toBe("in");
  expect(refilling.disk).not.toBe(diskBefore);
  expect(refilling.refilling?.volumes).toEqual([volume]);

  // The primaries audit it now, not at their daily scrub: every copy is back on it, and
  // the sled is verified.
  const verified = await waitFor(
    `status --check to exit 0 with ${victim} verified`,
    async () => {
      const seen = await check();
      const shown = seen.sleds.find((sled) => sled.id === victim);
      return seen.code === exitCodes.ok && shown !== undefined && shown.refilling === undefined
        ? shown
        : undefined;
    },
    verifiedWithinMs,
    500,
  );
  expect(verified.state).toBe("in");
  process.stdout.write(
    `sled-new-disk: ${held.length} chunk copies lost; verified ${Math.round(performance.now() - restartedAtMs)} ms after the restart\n`,
  );
  const back = new Set((await listSledChunks(cluster.bus, victim, volume)).map((c) => c.chunkId));
  for (const chunk of held) expect(back.has(chunk.chunkId)).toBe(true);
}, 150_000);
