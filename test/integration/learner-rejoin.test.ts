// A replica dropped from its partition comes back as a learner on a node that still
// hosts the partition, on real processes (issue 11, defect 3). Three head nodes and a
// three-replica volume, so that the only node the coordinator can add back is the one
// it dropped (with two replicas it would pick the spare instead, and the defect would
// not show). A secondary is frozen with SIGSTOP until it is dropped; meanwhile writes
// and flushes go on until the primary has checkpointed past everything the frozen
// replica holds and released its journal there. Woken, the old replica cannot catch up
// from where it stopped: the learner must start empty (from the checkpoint) and the
// partition must return to three voters, with every acknowledged write readable.

import { subjects } from "@ballast/protocol";
import { afterAll, beforeAll, expect, test } from "vitest";
import { startTestCluster, type TestCluster, waitFor } from "../support/cluster.ts";
import { VolumeModel } from "../support/volume-io.ts";

let cluster: TestCluster;
let io: VolumeModel;
let frozenPid: number | undefined;

beforeAll(async () => {
  cluster = await startTestCluster({
    headNodes: 3,
    sleds: 3,
    env: { BALLAST_CHECKPOINT_INTERVAL_MS: "300" },
  });
  io = new VolumeModel(cluster.bus, "rejoin");
});
afterAll(async () => {
  if (frozenPid !== undefined) {
    try {
      process.kill(frozenPid, "SIGCONT");
    } catch {
      // already gone
    }
  }
  await cluster?.stop();
});

function replicaStatus(node: string) {
  return cluster.bus.request(subjects.node.build("headnode", node), {
    type: "headnode.replica.status.v1",
    volume: "rejoin",
    partition: 0,
  });
}

/** Bound on getting back to full strength once the node is back: a liveness bound. */
const fullStrengthBoundMs = 20_000;

test("a secondary dropped while frozen rejoins, is rebuilt past the primary's release point, and votes again", async () => {
  await cluster.bus.request(subjects.coordinator.build(), {
    type: "volume.create.v1",
    name: "rejoin",
    sizeBytes: 8 * 1024 * 1024,
    partitionBytes: 8 * 1024 * 1024,
    replicaCount: 3,
  });
  for (let block = 0; block < 40; block++) await io.writeBlock(block, 1 + block);
  await io.flush();
  const before = (await io.describe()).partitions[0]!;
  expect(before.secondaries).toHaveLength(2);
  const primary = before.primary;
  const victim = before.secondaries[0]!;
  // No write is in flight: the frozen replica holds at most what the primary holds now.
  const heldByVictim = (await replicaStatus(primary)).lastOpNum;

  frozenPid = cluster.cluster.pid(victim);
  process.kill(frozenPid, "SIGSTOP");
  const frozenAtMs = Date.now();
  await waitFor(
    `${victim} dropped from the partition`,
    async () => {
      const state = (await io.describe()).partitions[0]!;
      return [state.primary, ...state.secondaries].includes(victim) ? undefined : state;
    },
    20_000,
  );
  const droppedMs = Date.now() - frozenAtMs;

  // Writes and flushes until the primary has recorded a checkpoint past everything the
  // frozen replica holds (its journal is released through the checkpoint).
  let block = 40;
  const checkpointed = await waitFor(
    "the primary's checkpoint past the frozen replica",
    async () => {
      for (let round = 0; round < 20; round++, block++) {
        await io.writeBlock(block % 1500, 1 + (block % 250));
      }
      await io.flush();
      const state = (await io.describe()).partitions[0]!;
      const recorded = state.checkpoints.find((checkpoint) => checkpoint.node === primary);
      return recorded !== undefined && recorded.opNum > heldByVictim + 20 ? recorded : undefined;
    },
    30_000,
    0,
  );

  process.kill(frozenPid, "SIGCONT");
  frozenPid = undefined;
  const wokenAtMs = Date.now();
  // Writes go on while it rejoins: it must catch up with a moving primary.
  let stop = false;
  const writing = (async () => {
    for (let round = 0; !stop; round++, block++) {
      await io.writeBlock(block % 1500, 1 + (block % 250));
      if (round % 25 === 24) await io.flush();
    }
  })();
  let last: unknown;
  try {
    const full = await waitFor(
      `the partition back at three voters with ${victim}, no learners`,
      async () => {
        const state = (await io.describe()).partitions[0]!;
        last = state;
        const voters = [state.primary, ...state.secondaries];
        const joining = state.joining ?? [];
        return voters.length === 3 &&
          voters.includes(victim) &&
          state.learners.length === 0 &&
          joining.length === 0
          ? state
          : undefined;
      },
      fullStrengthBoundMs,
      250,
    ).catch((error: Error) => {
      const { epoch, primary, secondaries, learners, joining, rebuilds } = last as {
        [key: string]: unknown;
      };
      throw new Error(
        `${error.message}; last seen: ${JSON.stringify({ epoch, primary, secondaries, learners, joining, rebuilds })}`,
      );
    });
    process.stdout.write(
      `learner rejoin: ${victim} dropped ${droppedMs} ms after SIGSTOP; primary checkpointed at op ${checkpointed.opNum} (frozen replica held ≤ ${heldByVictim}); ` +
        `full strength ${Date.now() - wokenAtMs} ms after SIGCONT (epoch ${full.epoch})\n`,
    );
  } finally {
    stop = true;
    await writing;
  }
  const state = (await io.describe()).partitions[0]!;
  await waitFor(`${victim}'s metadata to equal the primary's`, async () => {
    const [leader, rejoined] = await Promise.all([
      replicaStatus(state.primary),
      replicaStatus(victim),
    ]);
    return rejoined.commitOpNum === leader.lastOpNum &&
      rejoined.metadataDigest === leader.metadataDigest
      ? true
      : undefined;
  });
  await io.expectAllWritten();
});
