// A head node restarted with a voter's journal on its disk, then sent a delayed configure
// that names it a learner in an older epoch (review-retries.md, item 3: a coordinator
// leader frozen past its tenure). Rebuilt afresh, the replica's directory went, with the
// notes it had acknowledged as a voter of the later epoch. The configure is refused and
// every file kept. Real journals in a temporary directory, the fake service of
// fake-service.ts in place of NATS.

import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { ErrorCode, subjects } from "@ballast/protocol";
import { counterFileBytes } from "@ballast/runtime";
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

/** The replica's files, each with its bytes. */
async function filesOf(directory: string): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>();
  for (const entry of await readdir(directory, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const path = join(entry.parentPath, entry.name);
    files.set(path, await readFile(path));
  }
  return files;
}

/** The node stopped as a process exit would stop it, and a new one on the same disk. */
async function restart(): Promise<FakeService> {
  restarted = await restartHeadNode(started!);
  return restarted;
}

test("a restarted voter refuses a learner's configure older than its journal, and keeps its files", async () => {
  started = await startHeadNode("ballast-stale-configure-");
  const directory = join(started.dataDir, "partitions", volumeId, "0");
  // Epoch 5: a voter (the primary, alone) that acknowledged a write.
  await configure(started.service, { epoch: 5 });
  await write(started.service, 5, 9);
  const service = await restart();
  expect(await storedEpoch(started.dataDir, volumeId, 0)).toBe(5);
  const before = await filesOf(directory);
  expect(before.size).toBeGreaterThan(0);

  // The delayed configure of epoch 4, from a leader that last saw this node a learner.
  const stale = await refusal(
    configure(service, { epoch: 4, primary: "head-2", secondaries: [], learners: ["head-1"] }),
  );
  expect(stale).toMatchObject({ code: ErrorCode.WrongEpoch, message: /epoch 5; refusing epoch 4/ });
  expect(await filesOf(directory)).toEqual(before);
  // As a voter in that epoch too: opened, its core would take the old epoch's part.
  expect(await refusal(configure(service, { epoch: 4 }))).toMatchObject({
    code: ErrorCode.WrongEpoch,
  });
  expect(await filesOf(directory)).toEqual(before);

  // The current epoch's configure opens what it stores: the acknowledged write is there.
  await configure(service, { epoch: 6 });
  expect((await read(service, 6))[0]).toBe(9);
});

test("a voter of an epoch its journal has no note of refuses an older learner's configure too", async () => {
  // Promoted while no write came: the journal's newest note is of epoch 3, but as a voter
  // of epoch 5 the replica answers for every write acknowledged before (the coordinator's
  // safe-promotion rule). The epoch it was configured a voter in is on its disk.
  started = await startHeadNode("ballast-stale-configure-");
  const directory = join(started.dataDir, "partitions", volumeId, "0");
  await configure(started.service, { epoch: 3 });
  await write(started.service, 3, 7);
  await configure(started.service, { epoch: 5 });
  const service = await restart();
  expect(await storedEpoch(started.dataDir, volumeId, 0)).toBe(5);
  const before = await filesOf(directory);
  const stale = await refusal(
    configure(service, { epoch: 4, primary: "head-2", secondaries: [], learners: ["head-1"] }),
  );
  expect(stale).toMatchObject({ code: ErrorCode.WrongEpoch, message: /epoch 5; refusing epoch 4/ });
  expect(await filesOf(directory)).toEqual(before);
  await configure(service, { epoch: 6 });
  expect((await read(service, 6))[0]).toBe(7);
});

test("a learner's configure of the stored epoch or a later one still rebuilds afresh", async () => {
  started = await startHeadNode("ballast-stale-configure-");
  await configure(started.service, { epoch: 5 });
  await write(started.service, 5, 9);
  const service = await restart();
  // A learner of epoch 5 that restarted, sent its configure again: rebuilt (from op 1).
  const status = (await configure(service, {
    epoch: 5,
    primary: "head-2",
    secondaries: [],
    learners: ["head-1"],
  })) as { lastOpNum: number; epoch: number };
  expect(status).toMatchObject({ lastOpNum: 0, epoch: 5 });
  // Its state discarded, but not the epoch it was rebuilt in (partition-host.ts `keepEpoch`).
  expect(await storedEpoch(started.dataDir, volumeId, 0)).toBe(5);
});

test("a rebuild whose fetch fails keeps the learner's epoch: a delayed voter configure of an older epoch opens nothing", async () => {
  // Found by the simulator (seed 9120891, --failover with late voter configures): a voter
  // of epoch 5 named a learner in epoch 6 is removed to be rebuilt, and the checkpoint
  // fetch fails, leaving nothing of the replica on disk. A configure of epoch 5 delayed
  // past that (a leader frozen past its tenure) then found no epoch stored and opened an
  // empty voter in epoch 5, in the session its removed life had used in that epoch.
  started = await startHeadNode("ballast-stale-configure-");
  const { service } = started;
  const voter = { epoch: 5, primary: "head-2", secondaries: ["head-1"] };
  await configure(service, voter);
  const rebuild = await refusal(
    configure(service, {
      epoch: 6,
      primary: "head-2",
      secondaries: [],
      learners: ["head-1"],
      // On a sled nothing answers for in this test: the fetch fails.
      checkpoint: {
        opNum: 4,
        blobKey: `checkpoints/${volumeId}/0/head-2/4-1-1`,
        sleds: ["sled-1"],
        bytes: 100,
        createdAtMs: 1,
      },
    }),
  );
  expect(rebuild).toBeDefined();
  expect(await storedEpoch(started.dataDir, volumeId, 0)).toBe(6);
  // Named out in epoch 7 with nothing open: refused, as before.
  expect(
    await refusal(configure(service, { epoch: 7, primary: "head-2", secondaries: [] })),
  ).toMatchObject({ code: ErrorCode.NotFound });
  const stale = await refusal(configure(service, voter));
  expect(stale).toMatchObject({ code: ErrorCode.WrongEpoch, message: /epoch 6; refusing epoch 5/ });
  // And after a restart: the epoch is on disk, not in memory.
  const again = await restart();
  expect(await refusal(configure(again, voter))).toMatchObject({ code: ErrorCode.WrongEpoch });
});

test("a deleted incarnation's late learner configure after a restart leaves the new incarnation's files to its own configure", async () => {
  // The steps of simulator seed 9713115, whose model got them wrong: after a restart,
  // with nothing of the current incarnation open, a frozen leader's learner configure of
  // the deleted one is rebuilt in the partition's place; the current incarnation's next
  // configure removes it and opens its own directory, the acknowledged write there (the
  // simulated node opened an empty primary beside those files).
  started = await startHeadNode("ballast-stale-configure-");
  const current = "2-bbbbbbbbbbbb";
  const address = { volume: "vol", volumeId: current, partition: 0, epoch: 5 };
  await configure(started.service, { volumeId: current, epoch: 5 });
  await started.service.call(subjects.volume.build("vol", 0), {
    type: "volume.write.v1",
    ...address,
    writes: [{ offset: 0, data: new Uint8Array(4096).fill(9) }],
  });
  const service = await restart();
  const late = await configure(service, {
    epoch: 3,
    primary: "head-2",
    secondaries: [],
    learners: ["head-1"],
  });
  expect(late).toMatchObject({ lastOpNum: 0, epoch: 3 });
  expect(existsSync(join(started.dataDir, "partitions", volumeId, "0"))).toBe(true);

  await configure(service, { volumeId: current, epoch: 5 });
  const { data } = (await service.call(subjects.volume.build("vol", 0), {
    type: "volume.read.v1",
    ...address,
    reads: [{ offset: 0, length: 4096 }],
  })) as { data: Uint8Array[] };
  expect(data[0]![0]).toBe(9);
  expect(existsSync(join(started.dataDir, "partitions", volumeId, "0"))).toBe(false);
});

test("a disk that stores no journal of the partition shows no epoch", async () => {
  started = await startHeadNode("ballast-stale-configure-");
  expect(await storedEpoch(started.dataDir, volumeId, 0)).toBeUndefined();
  expect(existsSync(join(started.dataDir, "partitions", volumeId))).toBe(false);
});

test("a voter's epoch is raised in place: a configure needs no new file, as on a full disk", async () => {
  // The voter-epoch file was replaced through a temporary file and a rename, which needs
  // a free block: on a full data disk every configure of a voter failed with ENOSPC. A
  // directory at the temporary path makes that way fail as a full disk does.
  started = await startHeadNode("ballast-stale-configure-");
  const path = join(started.dataDir, "partitions", volumeId, "0", "voter-epoch");
  await configure(started.service, { epoch: 3 });
  await write(started.service, 3, 7);
  const made = await stat(path);
  await mkdir(`${path}.tmp`);
  await configure(started.service, { epoch: 5 });
  await configure(started.service, { epoch: 6 });
  expect((await read(started.service, 6))[0]).toBe(7);
  expect(await storedEpoch(started.dataDir, volumeId, 0)).toBe(6);
  expect((await stat(path)).ino).toBe(made.ino);
  expect((await stat(path)).size).toBe(counterFileBytes);
  // Read again by a restarted node: a delayed configure of epoch 5 is refused.
  const service = await restart();
  const stale = await refusal(
    configure(service, { epoch: 5, primary: "head-2", secondaries: [], learners: ["head-1"] }),
  );
  expect(stale).toMatchObject({ code: ErrorCode.WrongEpoch, message: /epoch 6; refusing epoch 5/ });
});

test("a voter-epoch file of the first layout (text) is read, and converted at the next raise", async () => {
  started = await startHeadNode("ballast-stale-configure-");
  const path = join(started.dataDir, "partitions", volumeId, "0", "voter-epoch");
  await configure(started.service, { epoch: 3 });
  await write(started.service, 3, 7);
  await writeFile(path, "5\n");
  expect(await storedEpoch(started.dataDir, volumeId, 0)).toBe(5);
  const service = await restart();
  const stale = await refusal(
    configure(service, { epoch: 4, primary: "head-2", secondaries: [], learners: ["head-1"] }),
  );
  expect(stale).toMatchObject({ code: ErrorCode.WrongEpoch, message: /epoch 5; refusing epoch 4/ });
  await configure(service, { epoch: 6 });
  expect((await stat(path)).size).toBe(counterFileBytes);
  expect(await storedEpoch(started.dataDir, volumeId, 0)).toBe(6);
});
