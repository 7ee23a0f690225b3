// A head node named out of a partition's replica set (a configure of a later epoch
// without it) closes its replica, keeping its files, and first keeps the epoch it was
// named out in on its disk (review-leaks.md, H1). Before, the replica stayed hosted, open
// and in memory (unreleased notes, journal descriptors, its replication subject, gauges)
// for the process's life, its idle core the only fence against a delayed configure of an
// older epoch naming the node a voter; after a restart the disk showed only the older
// epoch, and such a configure opened it as a voter of that epoch. Named out only after a
// restart (nothing open), it keeps the out epoch in the replica's directory all the same. Real journals in a
// temporary directory, the fake service of fake-service.ts in place of NATS.

import { existsSync } from "node:fs";
import { join } from "node:path";
import { ErrorCode } from "@ballast/protocol";
import { afterEach, expect, test } from "vitest";
import { storedEpoch } from "../src/partition-host.ts";
import { type FakeService, type StartedHeadNode, startHeadNode } from "./fake-service.ts";
import { configure, read, refusal, restartHeadNode, volumeId, write } from "./one-partition.ts";

let started: StartedHeadNode | undefined;
let restarted: FakeService | undefined;

afterEach(async () => {
  await restarted?.close();
  restarted = undefined;
  await started?.stop();
  started = undefined;
});

/** The replicas the node's info lists. */
function replicasOf(service: FakeService): unknown[] {
  return service.description?.().replicas as unknown[];
}

/** The node stopped as a process exit would stop it, and a new one on the same disk. */
async function restart(): Promise<FakeService> {
  restarted = await restartHeadNode(started!);
  return restarted;
}

/** head-1 a voter of epoch 3 with a write acknowledged, then named out in epoch 5. */
async function namedOut(): Promise<{ service: FakeService; directory: string }> {
  started = await startHeadNode("ballast-named-out-");
  const { service } = started;
  const directory = join(started.dataDir, "partitions", volumeId, "0");
  await configure(service, { epoch: 3 });
  await write(service, 3, 9);
  expect(replicasOf(service)).toHaveLength(1);
  // A failover without it: a former member, it holds nothing any more (configurer.ts).
  const out = await refusal(configure(service, { epoch: 5, primary: "head-2", secondaries: [] }));
  expect(out).toMatchObject({ code: ErrorCode.NotFound, message: /not in the replica set/ });
  return { service, directory };
}

test("a replica named out is closed, not hosted for the process's life, and its files kept", async () => {
  const { service, directory } = await namedOut();
  expect(replicasOf(service)).toEqual([]);
  expect(
    await refusal(
      service.inbox({ type: "headnode.replica.status.v1", volume: "vol", partition: 0 }),
    ),
  ).toMatchObject({ code: ErrorCode.NotFound });
  expect(existsSync(join(directory, "journal"))).toBe(true);
  // The epoch it was named out in is on its disk before it closes.
  expect(await storedEpoch(started!.dataDir, volumeId, 0)).toBe(5);
  // Sent again (its answer lost): as for nothing hosted.
  expect(
    await refusal(configure(service, { epoch: 5, primary: "head-2", secondaries: [] })),
  ).toMatchObject({ code: ErrorCode.NotFound });
  // Named a voter again in a later epoch, it opens what it stores.
  await configure(service, { epoch: 6 });
  expect(replicasOf(service)).toHaveLength(1);
  expect((await read(service, 6))[0]).toBe(9);
});

test("a configure of an older epoch naming it a voter is refused after it closed", async () => {
  const { service, directory } = await namedOut();
  // A leader frozen past its tenure sends epoch 4, which still named head-1 the primary:
  // opened, it would acknowledge writes the members of epoch 5 never see.
  const stale = await refusal(configure(service, { epoch: 4 }));
  expect(stale).toMatchObject({ code: ErrorCode.WrongEpoch, message: /epoch 5; refusing epoch 4/ });
  expect(replicasOf(service)).toEqual([]);
  // And after a restart, from what its disk shows alone.
  const again = await restart();
  expect(await refusal(configure(again, { epoch: 4, secondaries: ["head-2"] }))).toMatchObject({
    code: ErrorCode.WrongEpoch,
    message: /epoch 5; refusing epoch 4/,
  });
  expect(
    await refusal(configure(again, { epoch: 4, primary: "head-2", learners: ["head-1"] })),
  ).toMatchObject({ code: ErrorCode.WrongEpoch });
  expect(replicasOf(again)).toEqual([]);
  expect(existsSync(join(directory, "journal"))).toBe(true);
});

test("a replica named out is rebuilt when it is added back as a learner", async () => {
  const { service } = await namedOut();
  const status = (await configure(service, {
    epoch: 6,
    primary: "head-2",
    secondaries: [],
    learners: ["head-1"],
  })) as { lastOpNum: number; epoch: number };
  expect(status).toMatchObject({ lastOpNum: 0, epoch: 6 });
  expect(replicasOf(service)).toHaveLength(1);
});

test("named out after a restart, with nothing hosted, it keeps the out epoch on its disk: a delayed configure of its last voter epoch is refused", async () => {
  started = await startHeadNode("ballast-named-out-");
  await configure(started.service, { epoch: 3 });
  await write(started.service, 3, 9);
  // Restarted before it heard that epoch 5 went on without it: nothing is hosted.
  const again = await restart();
  const out = await refusal(configure(again, { epoch: 5, primary: "head-2", secondaries: [] }));
  expect(out).toMatchObject({ code: ErrorCode.NotFound, message: /not in the replica set/ });
  expect(await storedEpoch(started.dataDir, volumeId, 0)).toBe(5);
  // A leader frozen past its tenure resends epoch 3, which named head-1 the primary.
  expect(await refusal(configure(again, { epoch: 3 }))).toMatchObject({
    code: ErrorCode.WrongEpoch,
    message: /epoch 5; refusing epoch 3/,
  });
  expect(replicasOf(again)).toEqual([]);
});
