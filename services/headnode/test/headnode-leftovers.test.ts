// A head node restarted with directories of incarnations left on its disk (it was away
// while a volume was deleted and its purge record forgotten): it asks the coordinator
// (a fake, in fake-service.ts) which are gone, removes those, and keeps everything else:
// live incarnations, static names, and everything when no coordinator answers.

import { existsSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { type BallastError, ErrorCode } from "@ballast/protocol";
import { afterEach, expect, test } from "vitest";
import { type StartedHeadNode, startHeadNode } from "./fake-service.ts";

/** Deleted while the node was away, its purge record forgotten: no record names it. */
const goneId = "1-aaaaaaaaaaaa";
/** A live volume's incarnation the node has not been configured with again yet. */
const liveId = "3-bbbbbbbbbbbb";
/** A static assignment's directory: the volume's name. */
const staticId = "vol";

let started: StartedHeadNode | undefined;

afterEach(async () => {
  await started?.stop();
  started = undefined;
});

/** A replica's files as a head node leaves them (their contents are never read here). */
async function plantReplica(dataDir: string, volumeId: string): Promise<void> {
  const partition = join(dataDir, "partitions", volumeId, "0");
  await mkdir(join(partition, "journal"), { recursive: true });
  await writeFile(join(partition, "journal", "segment-1"), new Uint8Array(4096).fill(1));
  await writeFile(join(partition, "checkpoint.bin"), new Uint8Array(512).fill(2));
}

function directory(volumeId: string): string {
  return join(started!.dataDir, "partitions", volumeId);
}

async function until(what: string, check: () => boolean, timeoutMs = 5000): Promise<void> {
  const start = performance.now();
  while (!check()) {
    if (performance.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

async function settle(): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, 100));
}

test("a restarted node removes the directories of incarnations the coordinator says are gone", async () => {
  started = await startHeadNode("ballast-leftovers-", async (dataDir, service) => {
    for (const id of [goneId, liveId, staticId]) await plantReplica(dataDir, id);
    // A careless coordinator that also calls the static name gone: it is never asked
    // about, and kept regardless.
    service.answerLeftovers = ({ volumeIds }) => ({
      gone: [...volumeIds.filter((id) => id === goneId), staticId],
    });
  });
  const { service } = started;
  await until("the gone incarnation's directory to go", () => !existsSync(directory(goneId)));
  expect(service.leftoverAsks).toEqual([
    { type: "headnode.leftovers.v1", node: "head-1", volumeIds: [goneId, liveId] },
  ]);
  await settle();
  expect(existsSync(directory(liveId))).toBe(true);
  expect(existsSync(directory(staticId))).toBe(true);
  expect(service.description?.()).toMatchObject({ leftoverDirectoriesRemoved: 1 });

  // Remembered as dropped: a late configure of it is refused, and makes no files.
  const refused = await service
    .inbox({
      type: "headnode.configure.v1",
      volume: "old",
      volumeId: goneId,
      partition: 0,
      partitionStart: 0,
      partitionBytes: 1024 * 1024,
      epoch: 1,
      primary: "head-1",
      secondaries: [],
      sleds: ["sled-1"],
    })
    .then(
      () => undefined,
      (error: BallastError) => error,
    );
  expect(refused).toMatchObject({ code: ErrorCode.NotFound, message: /was deleted/ });
  expect(existsSync(directory(goneId))).toBe(false);
});

test("with no coordinator to answer, every directory stays", async () => {
  started = await startHeadNode("ballast-leftovers-", async (dataDir) => {
    for (const id of [goneId, liveId, staticId]) await plantReplica(dataDir, id);
  });
  await until("the node to ask", () => started!.service.leftoverAsks.length === 1);
  await settle();
  for (const id of [goneId, liveId, staticId]) expect(existsSync(directory(id)), id).toBe(true);
  expect(started.service.description?.()).toMatchObject({ leftoverDirectoriesRemoved: 0 });
});

test("a node with only static directories asks nothing", async () => {
  started = await startHeadNode("ballast-leftovers-", async (dataDir) => {
    await plantReplica(dataDir, staticId);
  });
  await settle();
  expect(started.service.leftoverAsks).toEqual([]);
  expect(existsSync(directory(staticId))).toBe(true);
});
