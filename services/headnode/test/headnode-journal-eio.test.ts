// A replica whose journal failed on the file system is not reopened from that journal in
// the same boot of the machine ("fsyncgate": journal/failed-marker.ts). The segment
// files' writev (and writevSync) is wrapped so that a test can make it do what an O_DSYNC write whose
// sync fails does: the bytes reach the page cache, which serves them to any later read
// in this boot, and the call fails with EIO. The kernel's boot id is a value the test
// sets, to stand for a reboot. Named out of the replica set, such a replica keeps the out
// epoch on its disk before it closes, as a healthy one does (configure-decision.ts
// `close-out`): the failed marker's refusal ends with the boot. Real files in a temporary
// directory, a fake service in place of NATS (fake-service.ts).

import type * as FileSystem from "node:fs";
import { existsSync } from "node:fs";
import type * as FilePromises from "node:fs/promises";
import { join, sep } from "node:path";
import { BallastError, ErrorCode, subjects } from "@ballast/protocol";
import type * as Runtime from "@ballast/runtime";
import { afterEach, beforeEach, describe, expect, test, vi } from "vitest";
import { partitionDirectory, storedEpoch } from "../src/partition-host.ts";
import { type FakeService, type StartedHeadNode, startHeadNode } from "./fake-service.ts";
import { restartHeadNode } from "./one-partition.ts";

const disk = vi.hoisted(() => ({
  /** Record writes land in the page cache and then fail with EIO, as a failed sync. */
  failWrites: false,
  /** The replica's voter-epoch file cannot be opened to be raised (EIO). */
  failVoterEpoch: false,
  bootId: "boot-1",
}));

vi.mock("node:fs/promises", async (importOriginal) => {
  const actual = await importOriginal<typeof FilePromises>();
  const segment = (path: unknown) =>
    typeof path === "string" && path.includes(`${sep}journal${sep}segment-`);
  const wrap = (handle: FilePromises.FileHandle): FilePromises.FileHandle =>
    new Proxy(handle, {
      get(target, property) {
        if (property === "writev") {
          return async (buffers: Uint8Array[], position: number) => {
            const written = await target.writev(buffers, position);
            // Records only: a runway extension (zeros) still running from the write
            // before goes through, so that the failure is the new record's.
            const records = buffers.some((buffer) => buffer.some((byte) => byte !== 0));
            if (disk.failWrites && records) {
              throw Object.assign(new Error("EIO: i/o error, write"), { code: "EIO" });
            }
            return written;
          };
        }
        const value = Reflect.get(target, property, target);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
  const open = async (...parameters: Parameters<typeof actual.open>) => {
    const path = parameters[0];
    if (disk.failVoterEpoch && typeof path === "string" && path.endsWith(`${sep}voter-epoch`)) {
      throw Object.assign(new Error("EIO: i/o error, open"), { code: "EIO" });
    }
    const handle = await actual.open(...parameters);
    return segment(parameters[0]) ? wrap(handle) : handle;
  };
  return { ...actual, open, default: { ...actual, open } };
});

// A small commit's blocking writev (journal.ts, "Blocking writes"), the only writevSync of
// the head node: it fails the same way.
vi.mock("node:fs", async (importOriginal) => {
  const actual = await importOriginal<typeof FileSystem>();
  const writevSync = (...parameters: Parameters<typeof actual.writevSync>) => {
    const written = actual.writevSync(...parameters);
    const [, buffers] = parameters;
    const records = buffers.some((buffer) =>
      new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength).some(
        (byte) => byte !== 0,
      ),
    );
    if (disk.failWrites && records) {
      throw Object.assign(new Error("EIO: i/o error, write"), { code: "EIO" });
    }
    return written;
  };
  return { ...actual, writevSync, default: { ...actual, writevSync } };
});

vi.mock("@ballast/runtime", async (importOriginal) => ({
  ...(await importOriginal<typeof Runtime>()),
  currentBootId: async () => disk.bootId,
}));

const partitionBytes = 1024 * 1024;
let started: StartedHeadNode;
let dataDir: string;
let service: FakeService;
/** The node started again on the same disk, if a test did. */
let restarted: FakeService | undefined;

beforeEach(async () => {
  disk.failWrites = false;
  disk.failVoterEpoch = false;
  disk.bootId = "boot-1";
  started = await startHeadNode("ballast-headnode-eio-");
  ({ dataDir, service } = started);
  vi.spyOn(process, "kill").mockImplementation(() => true);
});

afterEach(async () => {
  disk.failWrites = false;
  disk.failVoterEpoch = false;
  vi.restoreAllMocks();
  await restarted?.close();
  restarted = undefined;
  await started.stop();
});

function configure(
  epoch: number,
  members: { primary: string; secondaries: string[]; learners?: string[] } = {
    primary: "head-1",
    secondaries: [],
  },
  to: FakeService = service,
) {
  return to.inbox({
    type: "headnode.configure.v1",
    volume: "vol",
    partition: 0,
    partitionStart: 0,
    partitionBytes,
    epoch,
    ...members,
    sleds: ["sled-1"],
  }) as Promise<{ role: string; failed?: string; lastOpNum: number }>;
}

function write(epoch: number, fill: number) {
  return service.call(subjects.volume.build("vol", 0), {
    type: "volume.write.v1",
    volume: "vol",
    partition: 0,
    epoch,
    writes: [{ offset: 0, data: new Uint8Array(4096).fill(fill) }],
  });
}

async function read(epoch: number): Promise<number | undefined> {
  const { data } = (await service.call(subjects.volume.build("vol", 0), {
    type: "volume.read.v1",
    volume: "vol",
    partition: 0,
    epoch,
    reads: [{ offset: 0, length: 4096 }],
  })) as { data: Uint8Array[] };
  return data[0]![0];
}

/** The journal's record of its failure (journal/failed-marker.ts), by its name on disk. */
const marker = () => join(partitionDirectory(dataDir, "vol", 0), "journal", "failed-on-boot");

/** Makes the next write's journal commit fail after its bytes reached the page cache. */
async function failAWrite(epoch: number, fill: number): Promise<void> {
  disk.failWrites = true;
  const failed = await write(epoch, fill).catch((error: unknown) => error);
  disk.failWrites = false;
  expect(failed).toBeInstanceOf(BallastError);
  expect((failed as BallastError).code).toBe(ErrorCode.Unavailable);
  expect((failed as BallastError).message).toMatch(/EIO/);
}

describe("a replica whose journal write failed with EIO", () => {
  test("configured again in the same boot, is not reopened from its journal; after a reboot it is", async () => {
    await configure(1);
    await write(1, 0x31);
    await failAWrite(1, 0x32);

    // A lone primary, configured again by the coordinator (it has no secondary to fail
    // over to). Reopened, recovery read the failed write from the page cache: the
    // partition served 0x32, a write never acknowledged and perhaps not on the disk,
    // and went on to acknowledge writes after it, which a crash would leave behind a
    // hole that recovery refuses as corruption.
    const refused = await configure(2).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(BallastError);
    expect((refused as BallastError).code).toBe(ErrorCode.Unavailable);
    expect((refused as BallastError).details?.refusal).toBe("journal-failed-this-boot");
    expect(service.served.has(subjects.volume.build("vol", 0))).toBe(false);
    expect(existsSync(marker())).toBe(true);
    // And again: it stays refused for the rest of the boot.
    await expect(configure(3)).rejects.toThrow("it opens again only after a reboot");

    // After a reboot the disk is what recovery reads (here it holds the failed write
    // too: the page cache was written back later). The record goes.
    disk.bootId = "boot-2";
    const reopened = await configure(4);
    expect(reopened.role).toBe("primary");
    expect(reopened.failed).toBeUndefined();
    expect(existsSync(marker())).toBe(false);
    expect([0x31, 0x32]).toContain(await read(4));
    await write(4, 0x33);
    expect(await read(4)).toBe(0x33);
  });

  test("named a voter again in the same boot, is refused; added back as a learner, it is rebuilt afresh", async () => {
    await configure(1, { primary: "head-1", secondaries: [] });
    await write(1, 0x41);
    await failAWrite(1, 0x42);
    // Named a voter again (a restart of the node's configure, say): refused.
    await expect(configure(2, { primary: "head-2", secondaries: ["head-1"] })).rejects.toThrow(
      "it opens again only after a reboot",
    );
    // Added as a learner: its directory, journal and record are removed, and it is
    // rebuilt from the configure's checkpoint (none here: from op 1).
    const learner = await configure(3, {
      primary: "head-2",
      secondaries: [],
      learners: ["head-1"],
    });
    expect(learner.failed).toBeUndefined();
    expect(learner.lastOpNum).toBe(0);
    expect(existsSync(marker())).toBe(false);
  });

  test("configured again and again in the same boot, its refusal is logged once an interval, not once a configure", async () => {
    await configure(1);
    await write(1, 0x51);
    await failAWrite(1, 0x52);
    const error = vi.spyOn(service.logger, "error");
    // The coordinator resends the configure every reconcile round while the lone
    // primary's partition waits for a reboot.
    for (let epoch = 2; epoch < 12; epoch++) {
      await expect(configure(epoch)).rejects.toThrow("it opens again only after a reboot");
    }
    const refusals = error.mock.calls.filter(([, message]) =>
      String(message).startsWith("refusing to reopen a replica whose journal failed"),
    );
    // Old: an error line per configure (10).
    expect(refusals).toHaveLength(1);
  });
});

describe("a replica whose journal failed, named out of the replica set", () => {
  /** The replicas a node's info lists. */
  const replicasOf = (node: FakeService) => node.description?.().replicas as unknown[];
  const out = { primary: "head-2", secondaries: [] };

  test("keeps the out epoch on its disk before it closes: a delayed configure of an older epoch is refused, after a reboot too", async () => {
    await configure(3);
    await write(3, 0x61);
    await failAWrite(3, 0x62);
    // Failed over to head-2 in epoch 5: head-1, a former member, is told it is out.
    await expect(configure(5, out)).rejects.toThrow("is not in the replica set");
    expect(replicasOf(service)).toEqual([]);
    // Before, closed with epoch 3 on its disk: the out epoch was kept nowhere.
    expect(await storedEpoch(dataDir, "vol", 0)).toBe(5);
    // A coordinator leader frozen past its tenure sends epoch 4, which named head-1 the
    // primary. In this boot the failed marker would refuse the journal anyway; the disk
    // refuses it first.
    await expect(configure(4)).rejects.toThrow("is in epoch 5; refusing epoch 4");

    // The machine reboots (the failed marker is lifted) and the node restarts. Before,
    // the configure of epoch 4 found epoch 3 on the disk and opened the replica, a
    // primary of epoch 4 beside head-2's of epoch 5.
    disk.bootId = "boot-2";
    restarted = await restartHeadNode(started);
    const refused = await configure(4, undefined, restarted).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(BallastError);
    expect((refused as BallastError).code).toBe(ErrorCode.WrongEpoch);
    expect(replicasOf(restarted)).toEqual([]);
    // Named a voter again in a later epoch, it opens what it stores.
    const reopened = await configure(6, undefined, restarted);
    expect(reopened.role).toBe("primary");
    expect(reopened.failed).toBeUndefined();
  });

  test("whose disk refuses the out epoch, stays hosted and refuses an older epoch from memory", async () => {
    await configure(3);
    await write(3, 0x71);
    await failAWrite(3, 0x72);
    disk.failVoterEpoch = true;
    const warn = vi.spyOn(service.logger, "warn");
    // Not answered NotFound (the coordinator would forget it): it fails, to be sent again.
    const failed = await configure(5, out).catch((error: unknown) => error);
    expect(failed).toBeInstanceOf(Error);
    expect((failed as Error).message).toMatch(/EIO/);
    expect(replicasOf(service)).toHaveLength(1);
    expect(
      warn.mock.calls.some(([, message]) => String(message).includes("did not keep the out epoch")),
    ).toBe(true);
    expect(await storedEpoch(dataDir, "vol", 0)).toBe(3);
    // Its failed core still holds epoch 3; the out epoch, held beside it, refuses 4.
    await expect(configure(4)).rejects.toThrow("is in epoch 5; refusing epoch 4");
    expect(replicasOf(service)).toHaveLength(1);
    // Sent again once the disk takes it: closed, the out epoch kept.
    disk.failVoterEpoch = false;
    await expect(configure(5, out)).rejects.toThrow("is not in the replica set");
    expect(replicasOf(service)).toEqual([]);
    expect(await storedEpoch(dataDir, "vol", 0)).toBe(5);
  });

  test("named out after a restart, with nothing hosted, whose disk refuses the out epoch: the configure fails, to be sent again", async () => {
    await configure(3);
    await write(3, 0x81);
    // Restarted before it heard that epoch 5 went on without it: nothing is hosted.
    restarted = await restartHeadNode(started);
    disk.failVoterEpoch = true;
    // Not answered NotFound (the coordinator would take it as done and forget it):
    // nothing kept the out epoch, so the configure fails, to be sent again.
    const failed = await configure(5, out, restarted).catch((error: unknown) => error);
    expect(failed).toBeInstanceOf(Error);
    expect(failed).not.toBeInstanceOf(BallastError);
    expect((failed as Error).message).toMatch(/EIO/);
    expect(await storedEpoch(dataDir, "vol", 0)).toBe(3);
    expect(replicasOf(restarted)).toEqual([]);
    // Sent again once the disk takes it: the out epoch kept, a delayed configure of
    // epoch 3 (which named head-1 the primary) refused.
    disk.failVoterEpoch = false;
    await expect(configure(5, out, restarted)).rejects.toThrow("is not in the replica set");
    expect(await storedEpoch(dataDir, "vol", 0)).toBe(5);
    await expect(configure(3, undefined, restarted)).rejects.toThrow(
      "is in epoch 5; refusing epoch 3",
    );
    expect(replicasOf(restarted)).toEqual([]);
  });
});
