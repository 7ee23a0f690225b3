// Large writes kept without a copy (headnode byte-slab.ts, `keptInPlace`): a primary keeps
// the 1 MiB writes of a linked client, and a secondary the notes of its primary, as views
// of the frames their link decoders assembled, not as copies. Any buffer shared with
// something that writes into it or reuses it (a socket read, the next frame, a slab, the
// sender's own buffers) would show here as bytes that read back changed: each round
// overwrites the same blocks with new patterns (new frames) and the sender's buffers after
// each acknowledgement, reads back from the primary before and after a flush, and then
// from the secondary once it has taken over (kill -9 of the primary).

import { BallastClient } from "@ballast/client";
import { subjects } from "@ballast/protocol";
import type { Bus, LinkServerStats } from "@ballast/runtime";
import { afterAll, describe, expect, test } from "vitest";
import { connectTestBus, startTestCluster, type TestCluster, waitFor } from "../support/cluster.ts";
import { describeVolume } from "../support/faults.ts";

const mebibyte = 1024 * 1024;
const blocks = 6;

/** Block `block`'s bytes in round `round`: unlike any other block's or round's. */
function pattern(block: number, round: number): Uint8Array {
  const bytes = new Uint8Array(mebibyte);
  for (let at = 0; at < mebibyte; at += 4) {
    bytes[at] = block;
    bytes[at + 1] = round;
    bytes[at + 2] = (at >>> 10) & 0xff;
    bytes[at + 3] = (at >>> 18) & 0xff;
  }
  return bytes;
}

/** How many replication publishes node `id` took by link (runtime service.ts's info). */
async function replicaPublishesOf(bus: Bus, id: string): Promise<number> {
  const info = await bus.request(
    subjects.node.build("headnode", id),
    { type: "node.info.v1" },
    { deadlineMs: 2000 },
  );
  return (info.details as { links: { received: LinkServerStats } }).links.received.publishes
    .replica;
}

describe("large writes kept in place", () => {
  let cluster: TestCluster | undefined;
  afterAll(async () => {
    await cluster?.stop();
  });

  test("1 MiB writes over links read back exactly after the sender's buffers change, from the primary and from its secondary", async () => {
    cluster = await startTestCluster({ headNodes: 2, sleds: 2 });
    const control = cluster.bus;
    await control.request(subjects.coordinator.build(), {
      type: "volume.create.v1",
      name: "large",
      sizeBytes: 8 * mebibyte,
      partitionBytes: 8 * mebibyte,
      replicaCount: 2,
    });
    const user = await connectTestBus(cluster.cluster.natsUrl, "client");
    try {
      const volume = await new BallastClient(user.bus).openVolume("large");
      await waitFor(
        "volume requests over a link",
        async () => {
          await volume.write(7 * mebibyte, new Uint8Array(4096).fill(1));
          return user.bus.linkStats().link.requests >= 5 ? true : undefined;
        },
        10_000,
        0,
      );
      // The primary may ask its secondary for a link before the secondary serves its
      // replica subject: it asks again as notes go on.
      const { secondaries } = (await describeVolume(control, "large")).partitions[0]!;
      await waitFor(
        "notes over a link",
        async () => {
          await volume.write(7 * mebibyte, new Uint8Array(4096).fill(2));
          return (await replicaPublishesOf(control, secondaries[0]!)) > 0 ? true : undefined;
        },
        10_000,
        20,
      );
      const expectRound = async (round: number) => {
        for (let block = 0; block < blocks; block++) {
          const data = await volume.read(block * mebibyte, mebibyte);
          expect(Buffer.compare(data, pattern(block, round)), `block ${block}`).toBe(0);
        }
      };
      const writeRound = async (round: number) => {
        // All at once: the client sends several in one message.
        const sent = Array.from({ length: blocks }, (_, block) => pattern(block, round));
        await Promise.all(sent.map((data, block) => volume.write(block * mebibyte, data)));
        for (const data of sent) data.fill(0xee);
      };
      for (let round = 1; round <= 3; round++) {
        await writeRound(round);
        await expectRound(round);
      }
      await volume.flush();
      await expectRound(3);
      // Not flushed: the secondary must serve these from the notes it kept.
      await writeRound(4);
      await expectRound(4);

      const before = (await describeVolume(control, "large")).partitions[0]!;
      await cluster.cluster.kill(before.primary);
      await waitFor(
        "a new primary",
        async () => {
          const state = (await describeVolume(control, "large")).partitions[0]!;
          return state.primary !== before.primary ? state : undefined;
        },
        20_000,
        100,
      );
      await waitFor(
        "reads from the new primary",
        async () => {
          try {
            await volume.read(0, 4096);
            return true;
          } catch {
            return undefined;
          }
        },
        20_000,
        100,
      );
      await expectRound(4);
      await volume.close();
    } finally {
      await user.close();
    }
  });
});
