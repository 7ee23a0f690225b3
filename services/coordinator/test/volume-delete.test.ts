// A volume delete that names the incarnation it means (`volume.delete.v1` `id`): the
// real Volumes and Catalogue over an in-memory store (fake-store.ts, two-leaders.ts),
// head nodes that answer drops (a fake bus). review-retries.md item 2: a retried delete,
// whose first attempt deleted the volume and lost its answer, deleted the volume created
// again under the name in between.

import { type BallastError, ErrorCode, type Message } from "@ballast/protocol";
import { expect, test } from "vitest";
import { keys, type VolumeRecord } from "../src/catalogue.ts";
import type { PartitionRecord } from "../src/decisions.ts";
import { FakeStore } from "./fake-store.ts";
import { leaderOver, partitionBytes, seed } from "./two-leaders.ts";

const firstId = "1-aaaaaaaaaaaa";
const secondId = "2-bbbbbbbbbbbb";

/** Volume `v` created again as incarnation `secondId`, with its one partition record. */
function recreate(store: FakeStore): void {
  store.put(keys.volume("v"), {
    name: "v",
    id: secondId,
    sizeBytes: partitionBytes,
    replicaCount: 2,
    partitionBytes,
    createdAtMs: 1,
  } satisfies VolumeRecord);
  store.put(keys.partition("v", 0), {
    volume: "v",
    volumeId: secondId,
    partition: 0,
    partitionStart: 0,
    partitionBytes,
    epoch: 1,
    primary: "head-1",
    secondaries: ["head-2"],
    term: 1,
  } satisfies PartitionRecord);
}

function start() {
  const store = new FakeStore();
  seed(store);
  const drops: string[] = [];
  const leader = leaderOver(
    store,
    1,
    async () => undefined,
    (_subject: string, message: Message) => {
      if (message.type === "headnode.drop.v1") drops.push(message.volumeId);
      return undefined;
    },
  );
  return { store, drops, leader };
}

test("a delete naming a gone incarnation refuses the one created since, and deletes nothing", async () => {
  const { store, drops, leader } = start();
  // Attempt 1 deletes the first incarnation; its answer is lost.
  await leader.volumes.delete(leader.tenure, "v", firstId);
  expect(drops).toContain(firstId);
  recreate(store);
  drops.length = 0;
  // The retry names the incarnation it meant: NotFound (for the client, done), and the
  // new volume is kept whole.
  const retry = await leader.volumes
    .delete(leader.tenure, "v", firstId)
    .catch((error: BallastError) => error);
  expect(retry).toMatchObject({
    code: ErrorCode.NotFound,
    details: { name: "v", id: firstId, current: secondId },
  });
  expect((await leader.catalogue.volume("v"))?.value.id).toBe(secondId);
  expect((await leader.catalogue.partition("v", 0))?.value.volumeId).toBe(secondId);
  expect(drops).toEqual([]);
});

test("a delete naming the current incarnation, or none (an older client), deletes it", async () => {
  const { store, drops, leader } = start();
  expect(await leader.volumes.delete(leader.tenure, "v", firstId)).toEqual({
    name: "v",
    deleted: true,
  });
  recreate(store);
  await leader.volumes.delete(leader.tenure, "v");
  expect(await leader.catalogue.volume("v")).toBeUndefined();
  expect(drops).toEqual([firstId, firstId, firstId, secondId, secondId, secondId]);
});
