// The leftover sweep on real processes: a sled holding a chunk and a checkpoint blob of
// a volume incarnation that no catalogue record names (a sled that was away while its
// volume was deleted and purged) gets them deleted, while objects that are no
// incarnation's — the chaos nemesis's filler chunk, a blob under another prefix — stay.

import { crc32c, subjects } from "@ballast/protocol";
import { afterAll, beforeAll, expect, test } from "vitest";
import {
  removeStoreMarks,
  startTestCluster,
  type TestCluster,
  waitFor,
} from "../support/cluster.ts";

/** An incarnation id no record names. */
const goneId = "9-0123456789ab";
const leftoverChunk = `${goneId}-p0-e1-s1-c0`;
const leftoverBlob = `checkpoints/${goneId}/0/head-1/1-1-1`;
const fillerChunk = "chaos-filler-0";
const otherBlob = `elsewhere/${goneId}`;

let cluster: TestCluster;
let sled: string;

beforeAll(async () => {
  cluster = await startTestCluster({
    sleds: 1,
    // A leftover pass every 10 sweep intervals: every second, a grace of half that.
    env: { BALLAST_SWEEP_INTERVAL_MS: "100", BALLAST_SWEEP_GRACE_MS: "500" },
  });
  sled = cluster.cluster.ids("sled")[0]!;
  // The test lists every object of the sled: the coordinator's mark is not one of them.
  await removeStoreMarks(cluster);
});
afterAll(() => cluster?.stop());

async function putBlob(key: string): Promise<void> {
  const subject = subjects.node.build("sled", sled);
  const data = new Uint8Array(4096).fill(7);
  const begun = await cluster.bus.request(subject, {
    type: "sled.blob.begin.v1",
    key,
    bytes: data.byteLength,
    checksum: crc32c(data),
  });
  await cluster.bus.request(subject, {
    type: "sled.blob.part.v1",
    uploadId: begun.uploadId,
    offset: 0,
    data,
  });
  await cluster.bus.request(subject, { type: "sled.blob.commit.v1", uploadId: begun.uploadId });
}

async function held(): Promise<string[]> {
  const subject = subjects.node.build("sled", sled);
  const chunks = await cluster.bus.request(subject, { type: "sled.chunk.list.v1" });
  const blobs = await cluster.bus.request(subject, { type: "sled.blob.list.v1" });
  return [...chunks.chunks.map((chunk) => chunk.chunkId), ...blobs.blobs.map((blob) => blob.key)];
}

test("objects of an incarnation no record names are deleted; objects of no incarnation stay", async () => {
  const subject = subjects.node.build("sled", sled);
  const data = new Uint8Array(4096).fill(3);
  await cluster.bus.request(subject, {
    type: "sled.chunk.write.v1",
    owner: { volume: "gone", partition: 0 },
    chunkId: leftoverChunk,
    data,
  });
  await cluster.bus.request(subject, {
    type: "sled.chunk.write.v1",
    owner: { volume: "chaos-filler", partition: 0 },
    chunkId: fillerChunk,
    data,
  });
  await putBlob(leftoverBlob);
  await putBlob(otherBlob);
  expect((await held()).sort()).toEqual(
    [fillerChunk, leftoverChunk, leftoverBlob, otherBlob].sort(),
  );
  await waitFor(
    "the leftovers to be deleted",
    async () => {
      const now = await held();
      return now.includes(leftoverChunk) || now.includes(leftoverBlob) ? undefined : now;
    },
    20_000,
    250,
  );
  expect((await held()).sort()).toEqual([fillerChunk, otherBlob].sort());
}, 30_000);
