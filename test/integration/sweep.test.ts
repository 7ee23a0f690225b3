// The coordinator's orphan sweep (issue 12), on real processes: objects of a live volume
// that no recorded checkpoint references — a chunk below every checkpoint's next chunk
// number and in no chunk table (what a failed flush or a dropped chunk leaves), and a
// checkpoint blob no pointer names (a departed replica's, an unrecorded upload) — are
// deleted after the grace, while everything the checkpoints reference stays and the
// volume reads back byte for byte. And under leader churn: with the leading coordinator
// killed before any tenure has seen the orphan for a grace, it still goes.

import { Catalogue, type CheckpointPointer } from "@ballast/coordinator";
import {
  buckets,
  type CheckpointHeader,
  checkpointBlobPrefixOf,
  crc32c,
  readCheckpointHeader,
  subjects,
} from "@ballast/protocol";
import { Kvm } from "@nats-io/kv";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { startTestCluster, type TestCluster, waitFor } from "../support/cluster.ts";
import { describeVolume, readBytes, writeBlocks } from "../support/faults.ts";

const mebibyte = 1024 * 1024;
const partitionBytes = 4 * mebibyte;
const name = "swept";
const blocksPerWrite = 64;
const writes = 4;
/** Grace, a few passes, and slack for a loaded machine. */
const sweptWithinMs = 30_000;
/** The first cluster's sweep interval and grace (BALLAST_SWEEP_INTERVAL_MS, _GRACE_MS). */
const sweepIntervalMs = 250;
const sweepGraceMs = 2000;
/**
 * Complete passes after a snapshot's create within which a sweep that took it for
 * unrecorded would have dropped it: the pass running at the create may have read the
 * catalogue before it (1), the next sees it (1), a pass a grace later confirms and drops
 * it (passes are at least an interval apart), and one pass of slack.
 */
const passesToDrop = 1 + 1 + Math.ceil(sweepGraceMs / sweepIntervalMs) + 1;

let cluster: TestCluster;
let catalogue: Catalogue;

beforeAll(async () => {
  cluster = await startTestCluster({
    headNodes: 2,
    sleds: 2,
    env: {
      BALLAST_SWEEP_INTERVAL_MS: String(sweepIntervalMs),
      BALLAST_SWEEP_GRACE_MS: String(sweepGraceMs),
      BALLAST_CHECKPOINT_INTERVAL_MS: "500",
    },
  });
  catalogue = new Catalogue(await new Kvm(cluster.bus.connection).open(buckets.control));
});
afterAll(() => cluster?.stop());

function sledSubject(sled: string) {
  return subjects.node.build("sled", sled);
}

async function headerOf(pointer: CheckpointPointer): Promise<CheckpointHeader> {
  const got = await cluster.bus.request(sledSubject(pointer.sleds[0]!), {
    type: "sled.blob.get.v1",
    key: pointer.blobKey,
    offset: 0,
  });
  return readCheckpointHeader(got.data).header;
}

/** Partition 0's recorded pointers with their headers. */
async function recorded(): Promise<{ pointer: CheckpointPointer; header: CheckpointHeader }[]> {
  const pointers = (await catalogue.checkpoints(name)).get(0) ?? new Map();
  return Promise.all(
    [...pointers.values()].map(async (pointer) => ({ pointer, header: await headerOf(pointer) })),
  );
}

async function chunksOn(sled: string): Promise<string[]> {
  const listed = await cluster.bus.request(sledSubject(sled), {
    type: "sled.chunk.list.v1",
    volume: name,
  });
  return listed.chunks.map((chunk) => chunk.chunkId).sort();
}

async function blobsOn(sled: string, volumeId: string): Promise<string[]> {
  const listed = await cluster.bus.request(sledSubject(sled), {
    type: "sled.blob.list.v1",
    prefix: checkpointBlobPrefixOf(volumeId),
  });
  return listed.blobs.map((blob) => blob.key).sort();
}

async function putBlob(
  sled: string,
  key: string,
  data: Uint8Array,
  bus = cluster.bus,
): Promise<void> {
  const begun = await bus.request(sledSubject(sled), {
    type: "sled.blob.begin.v1",
    key,
    bytes: data.byteLength,
    checksum: crc32c(data),
  });
  await bus.request(sledSubject(sled), {
    type: "sled.blob.part.v1",
    uploadId: begun.uploadId,
    offset: 0,
    data,
  });
  await bus.request(sledSubject(sled), {
    type: "sled.blob.commit.v1",
    uploadId: begun.uploadId,
  });
}

test("orphans of a live volume are swept; what checkpoints reference stays and reads back", async () => {
  const created = await cluster.bus.request(subjects.coordinator.build(), {
    type: "volume.create.v1",
    name,
    sizeBytes: partitionBytes,
    partitionBytes,
    replicaCount: 2,
  });
  expect(created.id).toBeDefined();
  const volumeId = created.id!;
  const expected = new Uint8Array(writes * blocksPerWrite * 4096);
  for (let write = 0; write < writes; write++) {
    const fill = 0x31 + write * 17;
    await writeBlocks(cluster.bus, name, 0, write * blocksPerWrite * 4096, blocksPerWrite, fill);
    expected.fill(fill, write * blocksPerWrite * 4096, (write + 1) * blocksPerWrite * 4096);
  }
  // Both replicas have recorded a checkpoint that counts a flushed chunk.
  await waitFor(
    "both replicas to record a checkpoint after a flush",
    async () => {
      const state = await describeVolume(cluster.bus, name);
      if (state.partitions[0]!.checkpoints.length !== 2) return undefined;
      const checkpoints = await recorded();
      return checkpoints.length === 2 &&
        checkpoints.every(({ header }) => header.nextChunkNumber >= 1)
        ? checkpoints
        : undefined;
    },
    30_000,
  );

  // Plant orphans on one sled: a chunk in the head node's id format numbered 0 (below
  // every recorded next chunk number) from an epoch and session that never flushed it,
  // and a checkpoint blob no pointer names. And a control: a chunk numbered far above
  // any next chunk number (a flush in flight could have written it) must stay.
  const sled = cluster.cluster.ids("sled")[0]!;
  const owner = { volume: name, partition: 0 };
  const orphanChunk = `${volumeId}-p0-e99-s99-c0`;
  const futureChunk = `${volumeId}-p0-e99-s99-c999999`;
  const strayBlob = `${checkpointBlobPrefixOf(volumeId, 0)}departed-node/1-1-1`;
  for (const chunkId of [orphanChunk, futureChunk]) {
    await cluster.bus.request(sledSubject(sled), {
      type: "sled.chunk.write.v1",
      owner,
      chunkId,
      data: new Uint8Array(4096).fill(0xee),
    });
  }
  await putBlob(sled, strayBlob, new Uint8Array(1000).fill(7));
  expect(await chunksOn(sled)).toContain(orphanChunk);
  expect(await blobsOn(sled, volumeId)).toContain(strayBlob);

  await waitFor(
    "the planted orphans to be swept",
    async () => {
      const [chunks, blobs] = await Promise.all([chunksOn(sled), blobsOn(sled, volumeId)]);
      return !chunks.includes(orphanChunk) && !blobs.includes(strayBlob) ? true : undefined;
    },
    sweptWithinMs,
    250,
  ).catch(async (error) => {
    throw new Error(
      `${(error as Error).message}: chunks ${JSON.stringify(await chunksOn(sled))}, blobs ${JSON.stringify(await blobsOn(sled, volumeId))}`,
    );
  });
  expect(await chunksOn(sled)).toContain(futureChunk);
  // The leader counts what it freed (it counts a delete once the sled has answered).
  const coordinator = cluster.cluster.ids("coordinator")[0]!;
  const swept = await waitFor("the sweep to count both orphans", async () => {
    const info = await cluster.bus.request(subjects.node.build("coordinator", coordinator), {
      type: "node.info.v1",
    });
    const status = info.details.sweep as { objectsFreed: number; bytesFreed: number };
    return status.objectsFreed >= 2 ? status : undefined;
  });
  process.stdout.write(`sweep: ${JSON.stringify(swept)}\n`);
  expect(swept.bytesFreed).toBeGreaterThanOrEqual(4096 + 1000);

  // The volume reads back byte for byte.
  const read = await readBytes(cluster.bus, name, 0, 0, expected.byteLength);
  expect(Buffer.compare(Buffer.from(read), Buffer.from(expected))).toBe(0);

  // Remove the control, then every sled holds exactly the chunks the recorded
  // checkpoints reference (their tables list each copy), and exactly their blobs.
  await cluster.bus.request(sledSubject(sled), {
    type: "sled.chunk.delete.v1",
    owner,
    chunkId: futureChunk,
  });
  await waitFor(
    "each sled to hold exactly what the checkpoints reference",
    async () => {
      const checkpoints = await recorded();
      for (const each of cluster.cluster.ids("sled")) {
        const referenced = new Set<string>();
        for (const { header } of checkpoints) {
          for (const [, chunkId, copies] of header.chunks) {
            if (copies.includes(each)) referenced.add(chunkId);
          }
        }
        const keys = checkpoints
          .filter(({ pointer }) => pointer.sleds.includes(each))
          .map(({ pointer }) => pointer.blobKey)
          .sort();
        const [chunks, blobs] = await Promise.all([chunksOn(each), blobsOn(each, volumeId)]);
        if (JSON.stringify(chunks) !== JSON.stringify([...referenced].sort())) return undefined;
        if (JSON.stringify(blobs) !== JSON.stringify(keys)) return undefined;
      }
      return true;
    },
    sweptWithinMs,
    250,
  );
  process.stdout.write(
    `sweep: ${(await chunksOn(sled)).length} chunks of ${name} on ${sled} after the sweep, all referenced\n`,
  );
});

test("a snapshot taken on a partition and never recorded (a create cut off) is dropped", async () => {
  // What a leader that dies between its takes and its catalogue record leaves behind:
  // a frozen tree on the partition that no snapshot record names.
  const volumeId = (await describeVolume(cluster.bus, name)).id!;
  const abandoned = "abandoned-create-1";
  await cluster.bus.request(subjects.partitionControl.build(name, 0), {
    type: "partition.snapshot.take.v1",
    volume: name,
    volumeId,
    partition: 0,
    snapshot: abandoned,
  });
  // Checkpoints follow flushes: a write makes the next one, which holds the snapshot.
  await writeBlocks(cluster.bus, name, 0, 0, 8, 0x31);
  const heldIn = async () =>
    (await recorded()).filter(({ header }) =>
      (header.snapshots ?? []).some(([id]) => id === abandoned),
    ).length;
  await waitFor(
    "a recorded checkpoint to hold the unrecorded snapshot",
    async () => ((await heldIn()) > 0 ? true : undefined),
    sweptWithinMs,
    250,
  );
  // Then the sweep drops it on the partition; the checkpoints after the next flushes no
  // longer hold it (a write each poll makes them).
  await waitFor(
    "the unrecorded snapshot to be dropped and checkpointed without it",
    async () => {
      await writeBlocks(cluster.bus, name, 0, 0, 8, 0x31);
      return (await heldIn()) === 0 ? true : undefined;
    },
    sweptWithinMs,
    250,
  );
  const coordinator = cluster.cluster.ids("coordinator")[0]!;
  const sweepStatus = async () =>
    (
      await cluster.bus.request(subjects.node.build("coordinator", coordinator), {
        type: "node.info.v1",
      })
    ).details.sweep as { snapshotsDropped: number; passes: number };
  // At least once: until a checkpoint without it is recorded, a later pass may drop it
  // again (a drop of an id the partition no longer has is a no-op).
  expect((await sweepStatus()).snapshotsDropped).toBeGreaterThanOrEqual(1);
  // A recorded snapshot is left alone: through as many passes as would have dropped it
  // had the sweep taken it for unrecorded (counted, not a fixed sleep: a loaded machine
  // stretches the passes, not the wait's power).
  await cluster.bus.request(subjects.coordinator.build(), {
    type: "snapshot.create.v1",
    volume: name,
    name: "kept",
  });
  const passesAtCreate = (await sweepStatus()).passes;
  await waitFor(
    `${passesToDrop} sweep passes after the snapshot's create`,
    async () => ((await sweepStatus()).passes >= passesAtCreate + passesToDrop ? true : undefined),
    sweptWithinMs,
    100,
  );
  const list = await cluster.bus.request(subjects.coordinator.build(), {
    type: "snapshot.list.v1",
    volume: name,
  });
  expect(list.snapshots.map((snapshot) => snapshot.name)).toEqual(["kept"]);
  // And the partitions keep it: the checkpoints recorded after its create hold it. Those
  // follow flushes, which follow writes (one each poll), so on a loaded machine a
  // partition's newest recorded checkpoint may still predate the create; had a pass
  // dropped it on a partition, no later checkpoint of that partition would hold it.
  const keptId = list.snapshots[0]!.id;
  await waitFor(
    "every recorded checkpoint to hold the recorded snapshot",
    async () => {
      await writeBlocks(cluster.bus, name, 0, 0, 8, 0x32);
      const headers = await recorded();
      return headers.every(({ header }) => header.snapshots?.some(([id]) => id === keptId))
        ? true
        : undefined;
    },
    sweptWithinMs,
    250,
  );
});

describe("under leader churn", () => {
  const grace = 3000;
  /** How long each leader leads once it is seen to (and the orphan is there): < grace. */
  const tenureMs = 1200;
  let churned: TestCluster;

  beforeAll(async () => {
    churned = await startTestCluster({
      coordinators: 2,
      headNodes: 2,
      sleds: 2,
      env: {
        BALLAST_SWEEP_INTERVAL_MS: "200",
        BALLAST_SWEEP_GRACE_MS: String(grace),
        BALLAST_CHECKPOINT_INTERVAL_MS: "500",
      },
    });
  });
  afterAll(() => churned?.stop());

  test("an orphan is swept though the leader is killed before any tenure sees it a grace", async () => {
    const { bus } = churned;
    const control = new Catalogue(await new Kvm(bus.connection).open(buckets.control));
    const volume = "churned";
    const created = await bus.request(subjects.coordinator.build(), {
      type: "volume.create.v1",
      name: volume,
      sizeBytes: partitionBytes,
      partitionBytes,
      replicaCount: 2,
    });
    const volumeId = created.id!;
    await writeBlocks(bus, volume, 0, 0, blocksPerWrite, 0x5a);
    await waitFor(
      "a recorded checkpoint of partition 0",
      async () => (((await control.checkpoints(volume)).get(0)?.size ?? 0) > 0 ? true : undefined),
      30_000,
    );
    const sled = churned.cluster.ids("sled")[0]!;
    const stray = `${checkpointBlobPrefixOf(volumeId, 0)}departed-node/1-1-1`;
    const leader = async () =>
      (await bus.request(subjects.coordinator.build(), { type: "cluster.status.v1" })).coordinator;
    const strayThere = async () =>
      (
        await bus.request(sledSubject(sled), {
          type: "sled.blob.list.v1",
          prefix: checkpointBlobPrefixOf(volumeId),
        })
      ).blobs.some((blob) => blob.key === stray);
    await putBlob(sled, stray, new Uint8Array(1000).fill(7), bus);
    let kills = 0;
    const windowsMs: number[] = [];
    // From here each leader leads for tenureMs after it is first seen (the first from
    // the plant): no tenure sees the orphan for a grace, so one grace per tenure never
    // deleted it; handed on, the grace adds up over a few tenures.
    for (; kills < 10 && (await strayThere()); kills++) {
      const holder = await waitFor("a leading coordinator", () => leader().catch(() => undefined));
      const seenAtMs = Date.now();
      await new Promise((resolve) => setTimeout(resolve, tenureMs));
      if (!(await strayThere())) break;
      await churned.cluster.kill(holder, "SIGKILL");
      windowsMs.push(Date.now() - seenAtMs);
      churned.cluster.restart(holder);
    }
    const gone = !(await strayThere());
    // Not asserted (a loaded machine may stretch them), shown: each should be < grace.
    process.stdout.write(
      `sweep under leader churn: the orphan ${gone ? "went" : "stayed"} after ${kills} kills; each leader saw it for at most ${JSON.stringify(windowsMs)} ms (grace ${grace} ms)\n`,
    );
    expect(gone).toBe(true);
    expect(kills).toBeGreaterThanOrEqual(1);
  });
});
