// Faults of one replica's storage on the head node shell. A journal that fails (a full
// disk, an I/O error) fails that replica alone: it answers what waits, never acknowledges
// again, stops serving, says so in its status and node info, and the process and the
// other replicas carry on. A damaged local checkpoint file is refused, never started
// from, and a rebuild replaces it. Real files in a temporary directory, a fake service in
// place of NATS (fake-service.ts), and the test-only journal failure hook.

import { existsSync } from "node:fs";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { BallastError, crc32c, ErrorCode, subjects } from "@ballast/protocol";
import { afterEach, beforeEach, describe, expect, test, vi } from "vitest";
import { CheckpointFile } from "../src/adapters.ts";
import type { HeadNode } from "../src/headnode.ts";
import { partitionDirectory, storesReplica } from "../src/partition-host.ts";
import { PartitionMetadata } from "../src/replica/metadata.ts";
import { storedSession } from "../src/session.ts";
import { type FakeService, startHeadNode } from "./fake-service.ts";

const partitionBytes = 1024 * 1024;
let dataDir: string;
let service: FakeService;
let node: HeadNode;
let stop: () => Promise<void>;

beforeEach(async () => {
  ({ dataDir, service, node, stop } = await startHeadNode("ballast-headnode-faults-"));
});

afterEach(async () => {
  vi.restoreAllMocks();
  await stop();
});

/** Configures `partition` at `epoch`: by default with this node as its lone primary. */
function configure(
  partition: number,
  epoch: number,
  members: { primary: string; secondaries: string[]; learners?: string[] } = {
    primary: "head-1",
    secondaries: [],
  },
) {
  return service.inbox({
    type: "headnode.configure.v1",
    volume: "vol",
    partition,
    partitionStart: partition * partitionBytes,
    partitionBytes,
    epoch,
    ...members,
    sleds: ["sled-1"],
  });
}

function write(partition: number, epoch: number, fill: number) {
  return service.call(subjects.volume.build("vol", partition), {
    type: "volume.write.v1",
    volume: "vol",
    partition,
    epoch,
    writes: [{ offset: partition * partitionBytes, data: new Uint8Array(4096).fill(fill) }],
  });
}

async function read(partition: number, epoch: number): Promise<number | undefined> {
  const { data } = (await service.call(subjects.volume.build("vol", partition), {
    type: "volume.read.v1",
    volume: "vol",
    partition,
    epoch,
    reads: [{ offset: partition * partitionBytes, length: 4096 }],
  })) as { data: Uint8Array[] };
  return data[0]![0];
}

function status(partition: number) {
  return service.inbox({
    type: "headnode.replica.status.v1",
    volume: "vol",
    partition,
  }) as Promise<{
    role: string;
    failed?: string;
    lastOpNum: number;
  }>;
}

describe("a journal that fails", () => {
  for (const errno of ["ENOSPC", "EIO"] as const) {
    test(`with ${errno} fails its replica alone, which never acknowledges again`, async () => {
      const kill = vi.spyOn(process, "kill").mockImplementation(() => true);
      await configure(0, 1);
      await configure(1, 1);
      await write(0, 1, 0x11);
      await write(1, 1, 0x21);

      node.injectJournalFailureForTesting("vol", 0, errno);
      // The write waiting on the failed append is answered, not acknowledged.
      const failed = await write(0, 1, 0x12).catch((error: unknown) => error);
      expect(failed).toBeInstanceOf(BallastError);
      expect((failed as BallastError).code).toBe(ErrorCode.Unavailable);
      expect((failed as BallastError).message).toMatch(
        errno === "ENOSPC" ? /no space left/ : /EIO/,
      );
      // The process is not stopped.
      expect(kill).not.toHaveBeenCalled();

      // It serves nothing of the partition any more: neither volume nor replication.
      expect(service.served.has(subjects.volume.build("vol", 0))).toBe(false);
      expect(service.served.has(subjects.replica.build("vol", 0, "head-1"))).toBe(false);
      const failedStatus = await status(0);
      expect(failedStatus.role).toBe("idle");
      expect(failedStatus.failed).toMatch(/journal append failed/);
      const replicas = service.description?.().replicas as { partition: number; failed?: string }[];
      expect(replicas.find((replica) => replica.partition === 0)?.failed).toMatch(/stopped/);
      expect(replicas.find((replica) => replica.partition === 1)?.failed).toBeUndefined();

      // Its reports say it failed, so that the coordinator fails the partition over
      // although the node is alive; the healthy partition is reported as before.
      service.reports.length = 0;
      const deadlineMs = performance.now() + 5000;
      while (service.reports.length === 0 && performance.now() < deadlineMs) {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      const primaries = service.reports[0]?.primaries ?? [];
      expect(primaries.find((entry) => entry.partition === 0)).toMatchObject({
        epoch: 1,
        failed: true,
      });
      expect(primaries.find((entry) => entry.partition === 1)?.failed).toBeUndefined();

      // The other partition on the node goes on working.
      await write(1, 1, 0x22);
      expect(await read(1, 1)).toBe(0x22);
      expect((await status(1)).role).toBe("primary");
      expect(kill).not.toHaveBeenCalled();
    });
  }

  test("a replica configured again after its journal failed is reopened from what is durable", async () => {
    vi.spyOn(process, "kill").mockImplementation(() => true);
    await configure(0, 1);
    await write(0, 1, 0x31);
    node.injectJournalFailureForTesting("vol", 0, "ENOSPC");
    await write(0, 1, 0x32).catch(() => undefined);
    expect((await status(0)).failed).toBeDefined();

    // Space freed, the coordinator configures it again: recovery reopens it.
    const reopened = (await configure(0, 2)) as { role: string; failed?: string };
    expect(reopened.role).toBe("primary");
    expect(reopened.failed).toBeUndefined();
    expect(await read(0, 2)).toBe(0x31);
    await write(0, 2, 0x33);
    expect(await read(0, 2)).toBe(0x33);
  });

  test("a configure delayed from an older incarnation never replaces a failed replica of the current one", async () => {
    vi.spyOn(process, "kill").mockImplementation(() => true);
    const configureOf = (volumeId: string, epoch: number) =>
      service.inbox({
        type: "headnode.configure.v1",
        volume: "vol",
        volumeId,
        partition: 0,
        partitionStart: 0,
        partitionBytes,
        epoch,
        primary: "head-1",
        secondaries: [],
        sleds: ["sled-1"],
      });
    await configureOf("2-new", 1);
    await write(0, 1, 0x61);
    node.injectJournalFailureForTesting("vol", 0, "ENOSPC");
    await write(0, 1, 0x62).catch(() => undefined);
    expect((await status(0)).failed).toBeDefined();

    // The shell reopened a failed replica before it compared incarnations, and so opened
    // the deleted incarnation in its place (an empty primary of the volume's name).
    const stale = await configureOf("1-old", 9).catch((error: unknown) => error);
    expect((stale as BallastError).code).toBe(ErrorCode.NotFound);
    expect(existsSync(join(dataDir, "partitions", "1-old", "0"))).toBe(false);
    expect((await status(0)).failed).toBeDefined();
    // The current incarnation, configured again, reopens from what is durable.
    await configureOf("2-new", 2);
    expect(await read(0, 2)).toBe(0x61);
  });
});

describe("a primary reopened in place after its journal failed", () => {
  /** A fenced write of client session `session`, attempt `sequence`: applied or its code. */
  const fenced = (epoch: number, session: string, sequence: number, fill: number) =>
    service
      .call(subjects.volume.build("vol", 0), {
        type: "volume.write.v1",
        volume: "vol",
        partition: 0,
        epoch,
        writes: [{ offset: 0, data: new Uint8Array(4096).fill(fill) }],
        fence: { session, sequence },
      })
      .then(
        () => "applied",
        (error: BallastError) => error.code,
      );

  test("keeps its ordering fence in the same epoch: a stale attempt read after the reopen is Superseded", async () => {
    vi.spyOn(process, "kill").mockImplementation(() => true);
    const session = "a".repeat(32);
    await configure(0, 1);
    expect(await fenced(1, session, 3, 0x43)).toBe("applied");
    node.injectJournalFailureForTesting("vol", 0, "ENOSPC");
    await write(0, 1, 0x44).catch(() => undefined);
    expect((await status(0)).failed).toBeDefined();

    // With no secondary to take over, the coordinator configures it again in the same
    // epoch: closed and opened from its files, in this process.
    const reopened = (await configure(0, 1)) as { role: string; failed?: string };
    expect(reopened).toMatchObject({ role: "primary" });
    expect(reopened.failed).toBeUndefined();
    // Attempt 1 of the session, a stale copy read only now (say from a link socket of
    // this process): the reopened core refuses it as the failed one would have, rather
    // than apply it over attempt 3, which its client was told is done.
    expect(await fenced(1, session, 1, 0x41)).toBe(ErrorCode.Superseded);
    expect(await read(0, 1)).toBe(0x43);
    // Later attempts of the session, and other sessions, are taken.
    expect(await fenced(1, session, 4, 0x45)).toBe("applied");
    expect(await fenced(1, "b".repeat(32), 1, 0x46)).toBe("applied");
    expect(await read(0, 1)).toBe(0x46);
    // Handed over: the node keeps nothing of it any more.
    expect(node.keptFencesForTesting).toBe(0);
  });

  test("reopened in a newer epoch, it starts with an empty fence, and a drop leaves nothing kept", async () => {
    vi.spyOn(process, "kill").mockImplementation(() => true);
    const session = "a".repeat(32);
    await configure(0, 1);
    expect(await fenced(1, session, 3, 0x53)).toBe("applied");
    node.injectJournalFailureForTesting("vol", 0, "ENOSPC");
    await write(0, 1, 0x54).catch(() => undefined);
    expect((await status(0)).failed).toBeDefined();

    // A newer epoch: a stale attempt names the old one and is refused by it.
    await configure(0, 2);
    expect(await fenced(1, session, 1, 0x51)).toBe(ErrorCode.WrongEpoch);
    // One of the new epoch is as from a new table.
    expect(await fenced(2, session, 1, 0x52)).toBe("applied");
    expect(await read(0, 2)).toBe(0x52);

    // Failed again, closed, and the volume dropped before any reopen: nothing stays.
    node.injectJournalFailureForTesting("vol", 0, "ENOSPC");
    await write(0, 2, 0x55).catch(() => undefined);
    await configure(0, 2, { primary: "head-2", secondaries: [] }).catch(() => undefined);
    expect(node.keptFencesForTesting).toBe(1);
    await service.inbox({ type: "headnode.drop.v1", volume: "vol", volumeId: "vol" });
    expect(node.keptFencesForTesting).toBe(0);
  });
});

describe("a configure recorded on another disk", () => {
  test("is refused with NotFound naming both disks, opens nothing, and one for this disk is served", async () => {
    const configureOn = (disk: string) =>
      service.inbox({
        type: "headnode.configure.v1",
        volume: "vol",
        volumeId: "1-a",
        partition: 0,
        partitionStart: 0,
        partitionBytes,
        epoch: 1,
        primary: "head-1",
        secondaries: [],
        sleds: ["sled-1"],
        disk,
      });
    // The coordinator recorded this replica on a disk the node no longer has: opened
    // from what this disk stores (nothing), it would be an empty primary.
    const refused = await configureOn("e".repeat(32)).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(BallastError);
    expect((refused as BallastError).code).toBe(ErrorCode.NotFound);
    expect((refused as BallastError).message).toContain("e".repeat(32));
    expect((refused as BallastError).message).toContain(service.disk);
    // Named, so that the coordinator backs off rather than resend it every round.
    expect((refused as BallastError).details).toEqual({
      refusal: "other-disk",
      disk: "e".repeat(32),
    });
    expect(existsSync(join(dataDir, "partitions", "1-a", "0"))).toBe(false);
    expect(service.served.has(subjects.volume.build("vol", 0))).toBe(false);
    const served = (await configureOn(service.disk)) as { role: string };
    expect(served.role).toBe("primary");
  });
});

describe("a configure naming no disk, from a sender that records disks (members placed before disk ids)", () => {
  test("a voter this disk stores nothing of is refused with no-replica and nothing opens; the answer to one that opens names the disk", async () => {
    const configureOf = (partition: number, epoch: number, disk?: string) =>
      service.inbox({
        type: "headnode.configure.v1",
        volume: "vol",
        volumeId: "1-a",
        partition,
        partitionStart: partition * partitionBytes,
        partitionBytes,
        epoch,
        primary: "head-1",
        secondaries: [],
        sleds: ["sled-1"],
        disksRecorded: true,
        ...(disk === undefined ? {} : { disk }),
      });
    // A node back on an empty disk under its old id: opened, it would be an empty primary.
    const refused = await configureOf(0, 1).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(BallastError);
    expect((refused as BallastError).code).toBe(ErrorCode.NotFound);
    expect((refused as BallastError).details).toMatchObject({ refusal: "no-replica" });
    expect((refused as BallastError).message).toContain(service.disk);
    expect(existsSync(partitionDirectory(dataDir, "1-a", 0))).toBe(false);
    expect(service.served.has(subjects.volume.build("vol", 0))).toBe(false);
    expect(await storesReplica(dataDir, "1-a", 0)).toBe(false);
    // Placed on this disk by name (a first placement): opened empty, and the answer says
    // which disk holds it.
    const placed = (await configureOf(0, 1, service.disk)) as { role: string; disk?: string };
    expect(placed).toMatchObject({ role: "primary", disk: service.disk });
    expect(await storesReplica(dataDir, "1-a", 0)).toBe(true);
    // Hosted: a configure naming no disk applies, and its answer is the proof.
    const again = (await configureOf(0, 2)) as { epoch: number; disk?: string };
    expect(again).toMatchObject({ epoch: 2, disk: service.disk });
    // Without the sender's word (a static assignment), an empty voter opens as before.
    const plain = (await configure(1, 1)) as { role: string };
    expect(plain.role).toBe("primary");
  });
});

describe("a secondary whose journal fails", () => {
  test("is reported at once among the failures, at its epoch, and never as a primary", async () => {
    vi.spyOn(process, "kill").mockImplementation(() => true);
    await configure(0, 2, { primary: "head-2", secondaries: ["head-1"] });
    node.injectJournalFailureForTesting("vol", 0, "ENOSPC");
    const data = new Uint8Array(512).fill(0x51);
    await service.call(subjects.replica.build("vol", 0, "head-1"), {
      type: "replica.notes.v1",
      volume: "vol",
      partition: 0,
      epoch: 2,
      primary: "head-2",
      session: 7,
      commitOpNum: 0,
      previousOpNum: 0,
      previousEpoch: 0,
      previousSession: 0,
      notes: [
        {
          opNum: 1,
          epoch: 2,
          session: 7,
          kind: "write",
          offset: 0,
          length: 512,
          data,
          checksum: crc32c(data),
        },
      ],
    });

    const deadlineMs = performance.now() + 5000;
    const failureOf = () =>
      service.reports
        .flatMap((report) => report.failures ?? [])
        .find((entry) => entry.partition === 0);
    while (failureOf() === undefined && performance.now() < deadlineMs) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(failureOf()).toEqual({ volume: "vol", volumeId: "vol", partition: 0, epoch: 2 });
    expect((await status(0)).failed).toMatch(/journal append failed/);
    expect(service.reports.flatMap((report) => report.primaries)).toEqual([]);
  });
});

describe("a replica reopened after its journal failed", () => {
  /** The next report entry of partition 0 that `match` accepts. */
  async function reported(match: (entry: { session: number; failed?: boolean }) => boolean) {
    const deadlineMs = performance.now() + 5000;
    for (;;) {
      const entry = service.reports
        .flatMap((report) => report.primaries)
        .find((candidate) => candidate.partition === 0 && match(candidate));
      if (entry !== undefined) return entry;
      if (performance.now() > deadlineMs) throw new Error("no such report of partition 0");
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  test("is in a new session, even at the same epoch", async () => {
    vi.spyOn(process, "kill").mockImplementation(() => true);
    await configure(0, 1);
    await write(0, 1, 0x41);
    const before = await reported((entry) => entry.failed === undefined);
    node.injectJournalFailureForTesting("vol", 0, "EIO");
    await write(0, 1, 0x42).catch(() => undefined);
    await reported((entry) => entry.failed === true);

    // Configured again in the same epoch: what it sent before the failure may not be in
    // its journal, so the ops it assigns next could reuse numbers a secondary holds; in
    // the old session they would match them (log matching compares epoch and session).
    service.reports.length = 0;
    await configure(0, 1);
    await write(0, 1, 0x43);
    expect(await read(0, 1)).toBe(0x43);
    const after = await reported((entry) => entry.failed === undefined);
    expect(after.session).toBeGreaterThan(before.session);
    // Durable in the data directory, so that a restart goes beyond it.
    expect(await storedSession(dataDir)).toBeGreaterThanOrEqual(after.session);
  });

  test("is in a new session even when taking one failed the first time it was configured again", async () => {
    vi.spyOn(process, "kill").mockImplementation(() => true);
    await configure(0, 1);
    await write(0, 1, 0x51);
    const before = await reported((entry) => entry.failed === undefined);
    node.injectJournalFailureForTesting("vol", 0, "EIO");
    await write(0, 1, 0x52).catch(() => undefined);
    await reported((entry) => entry.failed === true);

    // Taking a session fails once (a directory where its temporary file goes). The failed
    // replica used to be closed before the session was taken: the configure failed with
    // nothing hosted, and the next found nothing failed and reopened it in the node's
    // session, the one it had used before the failure.
    const blocker = join(dataDir, "session.tmp");
    await mkdir(blocker);
    await expect(configure(0, 1)).rejects.toThrow(/session\.tmp/);
    await rm(blocker, { recursive: true });

    service.reports.length = 0;
    await configure(0, 1);
    await write(0, 1, 0x53);
    expect(await read(0, 1)).toBe(0x53);
    const after = await reported((entry) => entry.failed === undefined);
    expect(after.session).toBeGreaterThan(before.session);
  });
});

/** A snapshot whose header holds a chunk table, as a replica's checkpoint would. */
function snapshotWithChunks(): Uint8Array {
  const metadata = new PartitionMetadata();
  metadata.chunks.set(0, { sledChunkId: "chunk-aaaaaaaaaaaa", copies: ["sled-1"], bytes: 4096 });
  metadata.nextChunkNumber = 1;
  return metadata.snapshot(5, { epoch: 1, session: 1 });
}

async function writeCheckpoint(directory: string, snapshot: Uint8Array): Promise<void> {
  await mkdir(directory, { recursive: true });
  const file = new CheckpointFile(directory);
  await new Promise<void>((resolve, reject) =>
    file.write(snapshot, (outcome) => (outcome.ok ? resolve() : reject(outcome.error))),
  );
}

/** Reads and restores the checkpoint in `directory`, or returns what refused it. */
async function restoreFrom(directory: string) {
  try {
    const stored = await new CheckpointFile(directory).read();
    const restored = await PartitionMetadata.restore(stored!.bytes);
    return { chunkId: restored.metadata.chunks.get(0)?.sledChunkId, error: undefined };
  } catch (error) {
    return { chunkId: undefined, error: error as BallastError };
  }
}

describe("the local checkpoint file", () => {
  test("reads back what was written", async () => {
    const directory = join(dataDir, "checkpoint");
    await writeCheckpoint(directory, snapshotWithChunks());
    expect(await restoreFrom(directory)).toEqual({
      chunkId: "chunk-aaaaaaaaaaaa",
      error: undefined,
    });
  });

  test("with a byte flipped in its header (the chunk table) is refused, not restored", async () => {
    const directory = join(dataDir, "checkpoint");
    await writeCheckpoint(directory, snapshotWithChunks());
    const path = join(directory, "checkpoint.bin");
    const bytes = await readFile(path);
    // A letter of the chunk id in the snapshot's msgpack header, which the extent tree's
    // own checksums do not cover: the damage changes which chunk reads go to.
    const at = bytes.indexOf("chunk-aaaa");
    expect(at).toBeGreaterThan(0);
    bytes[at + 6] = "b".charCodeAt(0);
    await writeFile(path, bytes);
    const outcome = await restoreFrom(directory);
    expect(outcome.chunkId).toBeUndefined();
    expect(outcome.error?.code).toBe(ErrorCode.ChecksumMismatch);
    expect(outcome.error?.message).toContain(path);
  });

  test("cut short, or with a byte flipped anywhere, is refused", async () => {
    const directory = join(dataDir, "checkpoint");
    await writeCheckpoint(directory, snapshotWithChunks());
    const path = join(directory, "checkpoint.bin");
    const whole = await readFile(path);
    for (let offset = 0; offset < whole.length; offset += 7) {
      const damaged = Buffer.from(whole);
      damaged[offset] = (damaged[offset] ?? 0) ^ 0x01;
      await writeFile(path, damaged);
      expect((await restoreFrom(directory)).error?.code, `byte ${offset}`).toBe(
        ErrorCode.ChecksumMismatch,
      );
    }
    await writeFile(path, whole.subarray(0, whole.length - 1));
    expect((await restoreFrom(directory)).error?.code).toBe(ErrorCode.ChecksumMismatch);
  });

  test("damaged, keeps the replica from opening, and a rebuild as a learner replaces it", async () => {
    const directory = partitionDirectory(dataDir, "vol", 0);
    await writeCheckpoint(directory, snapshotWithChunks());
    const path = join(directory, "checkpoint.bin");
    const bytes = await readFile(path);
    bytes[bytes.length - 1] = (bytes[bytes.length - 1] ?? 0) ^ 0xff;
    await writeFile(path, bytes);

    const refused = await configure(0, 1).catch((error: unknown) => error as BallastError);
    expect((refused as BallastError).code).toBe(ErrorCode.ChecksumMismatch);
    expect(service.served.has(subjects.volume.build("vol", 0))).toBe(false);

    // Added back as a learner, it discards its state and starts afresh (here from op 1:
    // the configure names no checkpoint), never from the damaged file.
    await configure(0, 2, { primary: "head-2", secondaries: [], learners: ["head-1"] });
    expect(existsSync(path)).toBe(false);
    expect((await status(0)).lastOpNum).toBe(0);
  });
});
