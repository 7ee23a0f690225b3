// Chunk writes hedged past a sled whose writes hang (headnode sled-client.ts,
// `sledWriteHedgeMs`): a real sled's device writes stop answering (BALLAST_TEST_FAULTS
// and SIGUSR2, the chaos runner's gray failure: it heartbeats and answers all else), and
// the primary's flushes to sleds still complete, each chunk on the two sleds that
// answer, without waiting out the hung sled's 10 s deadline; the head node counts the
// hedges, and what was written reads back once the sled resumes. Before session 24 a
// flush waited for both copies it began: one that began on the hung sled took its whole
// deadline, and so did every flush until the sled was known slow.

import { setTimeout as sleep } from "node:timers/promises";
import { BallastClient } from "@ballast/client";
import { subjects } from "@ballast/protocol";
import { afterAll, expect, test } from "vitest";
import { connectTestBus, startTestCluster, type TestCluster, waitFor } from "../support/cluster.ts";
import { describeVolume } from "../support/faults.ts";

const mebibyte = 1024 * 1024;
/** Flushes while the sled hangs: chunks spread over the three sleds, so most begin on it. */
const rounds = 3;
/** A sled's deadline for a data request (sled-client.ts `sledDeadlineMs`). */
const sledDeadlineMs = 10_000;

let cluster: TestCluster | undefined;
afterAll(() => cluster?.stop());

function pattern(round: number): Uint8Array {
  const bytes = new Uint8Array(mebibyte);
  for (let at = 0; at < mebibyte; at++) bytes[at] = (at * 7 + round * 13) & 0xff;
  return bytes;
}

test("flushes to sleds complete while one of three sleds hangs, each chunk hedged past it", async () => {
  cluster = await startTestCluster({
    headNodes: 2,
    sleds: 3,
    env: { BALLAST_TEST_FAULTS: "1" },
  });
  const control = cluster.bus;
  await control.request(subjects.coordinator.build(), {
    type: "volume.create.v1",
    name: "hedged",
    sizeBytes: 8 * mebibyte,
    partitionBytes: 8 * mebibyte,
    replicaCount: 2,
  });
  const user = await connectTestBus(cluster.cluster.natsUrl, "client");
  try {
    const volume = await new BallastClient(user.bus).openVolume("hedged");
    const replicaStatus = async () => {
      const { primary } = (await describeVolume(control, "hedged")).partitions[0]!;
      return control.request(subjects.node.build("headnode", primary), {
        type: "headnode.replica.status.v1",
        volume: "hedged",
        partition: 0,
      });
    };
    /** Writes a round, then prompts a flush and waits until the primary flushed it. */
    const writeAndFlush = async (round: number): Promise<number> => {
      await volume.write(round * mebibyte, pattern(round));
      const written = (await replicaStatus()).commitOpNum;
      const startedMs = performance.now();
      await volume.flushToSleds();
      await waitFor(
        `round ${round} flushed to sleds`,
        async () => ((await replicaStatus()).flushedThroughOpNum >= written ? true : undefined),
        30_000,
        20,
      );
      return Math.round(performance.now() - startedMs);
    };
    // A first flush with every sled answering.
    await writeAndFlush(0);

    cluster.cluster.signal("sled-2", "SIGUSR2");
    // The signal is handled on the sled's next turn.
    await sleep(500);
    const tookMs: number[] = [];
    for (let round = 1; round <= rounds; round++) tookMs.push(await writeAndFlush(round));
    process.stderr.write(`hedged writes: flushes to sleds took ${JSON.stringify(tookMs)} ms\n`);
    // Each within the hedge (4 s) and the flush's own work, short of the hung sled's
    // deadline, which every flush that began on it took before (10,029 ms here).
    for (const ms of tookMs) expect(ms).toBeLessThan(sledDeadlineMs * 0.75);

    const { primary } = (await describeVolume(control, "hedged")).partitions[0]!;
    const info = await control.request(
      subjects.node.build("headnode", primary),
      { type: "node.info.v1" },
      { deadlineMs: 2000 },
    );
    const slow = (info.details as { slowSleds: { hedgedWrites?: number } }).slowSleds;
    expect(slow.hedgedWrites).toBeGreaterThan(0);

    cluster.cluster.signal("sled-2", "SIGUSR2");
    for (let round = 0; round <= rounds; round++) {
      const data = await volume.read(round * mebibyte, mebibyte);
      expect(Buffer.compare(data, pattern(round)), `round ${round}`).toBe(0);
    }
  } finally {
    await user.close();
  }
}, 120_000);
