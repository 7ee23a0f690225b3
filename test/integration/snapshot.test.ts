// Snapshots on the whole stack: real coordinator, head nodes, sleds and an NBD gateway,
// read with NBD clients this project did not write (qemu-io, nbdcopy, nbdinfo). A
// snapshot and its volume each show their own data after an overwrite, and again after
// a kill -9 of a primary; a snapshot taken during a write workload holds exactly a
// prefix of the workload's writes, covering every write acknowledged before the create
// began; deleting it frees it. Prints how long a create took and the sleds' usage
// before and after (a snapshot copies no data). The `ballast snapshot` command too.

import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { BallastClient } from "@ballast/client";
import { type BallastError, subjects } from "@ballast/protocol";
import { afterAll, beforeAll, expect, test } from "vitest";
import { runCli } from "../support/cli.ts";
import { startTestCluster, type TestCluster, waitFor } from "../support/cluster.ts";

const run = promisify(execFile);
const mebibyte = 1024 * 1024;
const partitionBytes = 16 * mebibyte;
const volumeBytes = 3 * partitionBytes;
/** NBD clients run under a timeout, so that a hang fails the test rather than stalls it. */
const clientTimeoutMs = 120_000;
let cluster: TestCluster;
let nbd: string;

beforeAll(async () => {
  cluster = await startTestCluster({ headNodes: 3, sleds: 3, gateways: 1, nbdPortFirst: 0 });
  for (const name of ["disk", "busy"]) {
    await cluster.bus.request(subjects.coordinator.build(), {
      type: "volume.create.v1",
      name,
      sizeBytes: volumeBytes,
      partitionBytes,
    });
  }
  nbd = await waitFor("the gateway's NBD address", async () => {
    const result = await cluster.bus.request(subjects.node.build("gateway", "gateway-1"), {
      type: "node.info.v1",
    });
    return typeof result.details.nbd === "string" ? (result.details.nbd as string) : undefined;
  });
});
afterAll(() => cluster?.stop());

const coordinator = () => subjects.coordinator.build();

async function qemuIo(exportName: string, commands: string[], readOnly = false) {
  const args = ["-f", "raw", ...(readOnly ? ["-r"] : []), `${nbd}/${exportName}`];
  for (const command of commands) args.push("-c", command);
  const { stdout } = await run("qemu-io", args, { timeout: clientTimeoutMs });
  return stdout;
}

/** Reads `pattern` back over the whole of each range; fails on any byte that differs. */
async function expectPatterns(exportName: string, ranges: [number, number, number][]) {
  const stdout = await qemuIo(
    exportName,
    ranges.map(
      ([pattern, offset, length]) => `read -P 0x${pattern.toString(16)} ${offset} ${length}`,
    ),
    exportName.includes("@"),
  );
  expect(stdout).not.toContain("Pattern verification failed");
  expect(stdout.match(/^read /gm)?.length).toBe(ranges.length);
}

/**
 * Waits until every replica of `volume` has flushed every op it held when called (a
 * flush comes within about a second of the writes): the sleds then hold what was
 * written, so their usage counts it. Was a fixed 2 s sleep, which only usually covered
 * the flushes; this waits for them and no longer. The flush's own note is the exception:
 * once a flush took a replica through the op before its commit point, that last op is
 * the flush (a flush note's op is above every op it covers, and any op committed after
 * the flush would be above it), so it has nothing left to flush. Waiting for the flush note
 * itself to be "flushed", as this did, waited for ever whenever the flush came before
 * the first status read (seen on loaded machines: every replica "flushed through 1 of 2").
 */
async function flushedToSleds(volume: string) {
  const state = await cluster.bus.request(coordinator(), {
    type: "volume.describe.v1",
    name: volume,
  });
  const status = (node: string, partition: number) =>
    cluster.bus.request(subjects.node.build("headnode", node), {
      type: "headnode.replica.status.v1",
      volume,
      partition,
    });
  const replicas = await Promise.all(
    state.partitions.flatMap(({ partition, primary, secondaries }) =>
      [primary, ...secondaries].map(async (node) => ({
        node,
        partition,
        lastOpNum: (await status(node, partition)).lastOpNum,
      })),
    ),
  );
  let lagging = "";
  const startedMs = performance.now();
  try {
    await waitFor(
      `every replica of ${volume} to flush what it holds`,
      async () => {
        const behind = await Promise.all(
          replicas.map(async ({ node, partition, lastOpNum }) => {
            const now = await status(node, partition);
            // A flush is itself a note (op n, flushed through an op before n), so the
            // last op held may be the flush of all before it: flushed (by a flush, so
            // not 0) through the op just before the commit point says every committed
            // write is on sleds.
            const flushed =
              now.commitOpNum >= lastOpNum &&
              (now.flushedThroughOpNum >= lastOpNum ||
                (now.flushedThroughOpNum > 0 && now.flushedThroughOpNum === now.commitOpNum - 1));
            return flushed
              ? undefined
              : `${node} p${partition} ${now.role}: flushed through ${now.flushedThroughOpNum} of ${lastOpNum}`;
          }),
        );
        lagging = behind.filter((line) => line !== undefined).join("; ");
        return lagging === "" ? true : undefined;
      },
      30_000,
      100,
    );
  } catch (error) {
    throw new Error(`${(error as Error).message}; still behind: ${lagging}`);
  }
  process.stdout.write(
    `${volume}: every replica flushed in ${(performance.now() - startedMs).toFixed(0)} ms\n`,
  );
}

/** Sled bytes in use, summed over every sled (every copy). */
async function sledUsedBytes(): Promise<number> {
  const status = await cluster.bus.request(
    coordinator(),
    { type: "cluster.status.v1", probe: true },
    { deadlineMs: 10_000 },
  );
  return status.capacity?.usedBytes ?? Number.NaN;
}

test("a snapshot and its volume each show their own data, before and after a kill -9 of a primary", async () => {
  // One pattern per partition, so the snapshot spans all three.
  await qemuIo("disk", [
    `write -P 0x11 0 4M`,
    `write -P 0x22 ${partitionBytes} 4M`,
    `write -P 0x33 ${2 * partitionBytes} 4M`,
  ]);
  await flushedToSleds("disk");
  const usedBefore = await sledUsedBytes();
  const startedMs = performance.now();
  const snapshot = await cluster.bus.request(
    coordinator(),
    { type: "snapshot.create.v1", volume: "disk", name: "first" },
    { deadlineMs: 30_000 },
  );
  const tookMs = performance.now() - startedMs;
  const usedAfter = await sledUsedBytes();
  process.stdout.write(
    `snapshot of a 48 MiB volume holding 12 MiB: created in ${tookMs.toFixed(0)} ms; sleds used ${usedBefore} bytes before, ${usedAfter} after\n`,
  );
  expect(snapshot.partitions.map((partition) => partition.index)).toEqual([0, 1, 2]);
  // Metadata only: the sleds hold no more than before, beyond checkpoint blobs that
  // carry the snapshot trees (a few KiB each).
  expect(usedAfter - usedBefore).toBeLessThan(mebibyte);

  const again = await cluster.bus
    .request(coordinator(), { type: "snapshot.create.v1", volume: "disk", name: "first" })
    .catch((error: BallastError) => error.code);
  expect(again).toBe("AlreadyExists");

  await qemuIo("disk", [`write -P 0x44 0 2M`, `write -P 0x55 ${2 * partitionBytes + mebibyte} 2M`]);
  const volumeNow: [number, number, number][] = [
    [0x44, 0, 2 * mebibyte],
    [0x11, 2 * mebibyte, 2 * mebibyte],
    [0x22, partitionBytes, 4 * mebibyte],
    [0x33, 2 * partitionBytes, mebibyte],
    [0x55, 2 * partitionBytes + mebibyte, 2 * mebibyte],
    [0x33, 2 * partitionBytes + 3 * mebibyte, mebibyte],
  ];
  const snapshotData: [number, number, number][] = [
    [0x11, 0, 4 * mebibyte],
    [0x22, partitionBytes, 4 * mebibyte],
    [0x33, 2 * partitionBytes, 4 * mebibyte],
    [0x00, 4 * mebibyte, mebibyte],
  ];
  await expectPatterns("disk", volumeNow);
  await expectPatterns("disk@first", snapshotData);

  // The overwritten 4 MiB are now held by the snapshot alone: deleting it would free
  // them. Every partition reports (partition 1, untouched, holds nothing of its own).
  const unique = await waitFor(
    "the snapshot's unique bytes to be reported",
    async () => {
      const listed = await cluster.bus.request(coordinator(), {
        type: "snapshot.list.v1",
        volume: "disk",
      });
      const first = listed.snapshots[0]!;
      return first.uniqueBytes === 4 * mebibyte && first.uniqueBytesPartitions === 3
        ? first
        : undefined;
    },
    30_000,
    250,
  );
  expect(unique.name).toBe("first");
  const described = await runCli(["volume", "describe", "disk", "--nats", cluster.cluster.natsUrl]);
  expect(described.code, described.stderr).toBe(0);
  expect(described.stdout).toContain("snapshot first: 4MiB only it holds (deleting it frees that)");

  // The snapshot export is read-only.
  const { stdout } = await run("nbdinfo", ["--json", `${nbd}/disk@first`]);
  const info = JSON.parse(stdout).exports[0];
  expect(info.is_read_only).toBe(true);
  expect(info["export-size"]).toBe(volumeBytes);
  await expect(qemuIo("disk@first", ["write -P 0x66 0 4k"])).rejects.toThrow();
  const listed = await run("nbdinfo", ["--list", "--json", nbd]);
  expect(
    JSON.parse(listed.stdout).exports.map(
      (entry: { "export-name": string }) => entry["export-name"],
    ),
  ).toContain("disk@first");

  // A whole copy through nbdcopy agrees with qemu-io's view.
  const copy = join(cluster.dataDir, "first.raw");
  await run("nbdcopy", [`${nbd}/disk@first`, copy], { timeout: clientTimeoutMs });
  const bytes = await readFile(copy);
  expect(bytes[0]).toBe(0x11);
  expect(bytes[partitionBytes + 4 * mebibyte - 1]).toBe(0x22);
  expect(bytes[2 * partitionBytes + 2 * mebibyte]).toBe(0x33);

  const state = await cluster.bus.request(coordinator(), {
    type: "volume.describe.v1",
    name: "disk",
  });
  const victim = state.partitions[0]!.primary;
  await cluster.cluster.kill(victim, "SIGKILL");
  await waitFor("partition 0 to fail over", async () => {
    const now = await cluster.bus.request(coordinator(), {
      type: "volume.describe.v1",
      name: "disk",
    });
    return now.partitions[0]!.primary !== victim ? true : undefined;
  });
  await expectPatterns("disk@first", snapshotData);
  await expectPatterns("disk", volumeNow);
});

test("a snapshot during a write workload holds a prefix of it: every write acknowledged before the create", async () => {
  // One writer, each write issued after the one before was acknowledged, alternating
  // partitions: a consistent snapshot holds writes 0..k exactly, for some k at or past
  // the last write acknowledged before the create began and before the first issued
  // after it returned.
  const client = new BallastClient(cluster.bus);
  const volume = await client.openVolume("busy");
  const slotsPerPartition = 1024;
  const slotOf = (index: number) => (index % 3) * partitionBytes + Math.floor(index / 3) * 4096;
  const history: { issuedMs: number; ackedMs: number }[] = [];
  let stop = false;
  const writer = (async () => {
    for (let index = 0; index < 3 * slotsPerPartition && !stop; index++) {
      const data = new Uint8Array(4096).fill((index % 250) + 1);
      new DataView(data.buffer).setUint32(0, index + 1, true);
      const issuedMs = performance.now();
      await volume.write(slotOf(index), data);
      history.push({ issuedMs, ackedMs: performance.now() });
    }
  })();
  await new Promise((resolve) => setTimeout(resolve, 1500));
  const beganMs = performance.now();
  const started = performance.now();
  await cluster.bus.request(
    coordinator(),
    { type: "snapshot.create.v1", volume: "busy", name: "during" },
    { deadlineMs: 30_000 },
  );
  const returnedMs = performance.now();
  process.stdout.write(
    `snapshot during writes: created in ${(returnedMs - started).toFixed(0)} ms, ${history.length} writes before it returned\n`,
  );
  await new Promise((resolve) => setTimeout(resolve, 500));
  stop = true;
  await writer;
  await volume.close();

  const copy = join(cluster.dataDir, "during.raw");
  await run("nbdcopy", [`${nbd}/busy@during`, copy], { timeout: clientTimeoutMs });
  const bytes = await readFile(copy);
  const present = history.map((_, index) => {
    const at = slotOf(index);
    return new DataView(bytes.buffer, bytes.byteOffset + at, 4).getUint32(0, true) === index + 1;
  });
  const count = present.filter(Boolean).length;
  // A prefix: writes 0..count-1 present, none after.
  expect(present.slice(0, count).every(Boolean)).toBe(true);
  expect(present.slice(count).some(Boolean)).toBe(false);
  const ackedBefore = history.filter((write) => write.ackedMs < beganMs).length;
  const issuedAfter = history.findIndex((write) => write.issuedMs > returnedMs);
  expect(count).toBeGreaterThanOrEqual(ackedBefore);
  if (issuedAfter >= 0) expect(count).toBeLessThanOrEqual(issuedAfter);
  expect(ackedBefore).toBeGreaterThan(0);
  process.stdout.write(
    `snapshot holds writes 0..${count - 1}; ${ackedBefore} were acknowledged before the create began\n`,
  );

  const { snapshots } = await cluster.bus.request(coordinator(), {
    type: "snapshot.list.v1",
    volume: "busy",
  });
  expect(snapshots.map((snapshot) => snapshot.name)).toEqual(["during"]);
  await cluster.bus.request(subjects.coordinatorAdmin.build(), {
    type: "snapshot.delete.v1",
    volume: "busy",
    name: "during",
  });
  const after = await cluster.bus.request(coordinator(), {
    type: "snapshot.list.v1",
    volume: "busy",
  });
  expect(after.snapshots).toEqual([]);
  const gone = await run("qemu-io", ["-r", "-f", "raw", `${nbd}/busy@during`, "-c", "read 0 4k"], {
    timeout: clientTimeoutMs,
  }).catch((error: Error) => error);
  expect(gone).toBeInstanceOf(Error);
});

test("ballast snapshot create, list and delete, with clear errors", async () => {
  const nats = ["--nats", cluster.cluster.natsUrl];
  const created = await runCli(["snapshot", "create", "disk", "by-cli", ...nats]);
  expect(created.code, created.stderr).toBe(0);
  expect(created.stdout).toMatch(/created snapshot disk@by-cli \(id s[0-9a-z-]+\) in \d+ ms/);
  const listed = await runCli(["snapshot", "list", "disk", ...nats]);
  expect(listed.code).toBe(0);
  expect(listed.stdout).toContain("disk@by-cli");
  const twice = await runCli(["snapshot", "create", "disk", "by-cli", ...nats]);
  expect(twice.code).toBe(1);
  expect(twice.stderr).toContain("AlreadyExists");
  const deleted = await runCli(["snapshot", "delete", "disk", "by-cli", ...nats]);
  expect(deleted.code, deleted.stderr).toBe(0);
  const missing = await runCli(["snapshot", "delete", "disk", "by-cli", ...nats]);
  expect(missing.code).toBe(1);
  expect(missing.stderr).toContain("NotFound");
  const usage = await runCli(["snapshot", "create", "disk", ...nats]);
  expect(usage.code).toBe(2);
});

test("a 1 GiB volume holding data snapshots in well under a second and costs no sled space until it diverges", async () => {
  const gibibyte = 1024 * mebibyte;
  await cluster.bus.request(coordinator(), {
    type: "volume.create.v1",
    name: "big",
    sizeBytes: gibibyte,
    partitionBytes: 64 * mebibyte,
  });
  // 1 MiB in each of its 16 partitions: 16 MiB of data.
  await qemuIo(
    "big",
    Array.from(
      { length: 16 },
      (_, index) => `write -P 0x${(0x20 + index).toString(16)} ${index * 64 * mebibyte} 1M`,
    ),
  );
  await flushedToSleds("big");
  const usedBefore = await sledUsedBytes();
  const startedMs = performance.now();
  await cluster.bus.request(
    coordinator(),
    { type: "snapshot.create.v1", volume: "big", name: "whole" },
    { deadlineMs: 30_000 },
  );
  const tookMs = performance.now() - startedMs;
  const usedAfter = await sledUsedBytes();
  process.stdout.write(
    `snapshot of a 1 GiB volume of 16 partitions holding 16 MiB: created in ${tookMs.toFixed(0)} ms; sleds used ${usedBefore} bytes before, ${usedAfter} after (${usedAfter - usedBefore} more)\n`,
  );
  // Metadata only: beyond checkpoint blobs that carry the snapshot trees, nothing.
  expect(usedAfter - usedBefore).toBeLessThan(mebibyte);
  await expectPatterns("big@whole", [[0x20, 0, mebibyte]]);
  await cluster.bus.request(subjects.coordinatorAdmin.build(), {
    type: "snapshot.delete.v1",
    volume: "big",
    name: "whole",
  });
  await cluster.bus.request(subjects.coordinatorAdmin.build(), {
    type: "volume.delete.v1",
    name: "big",
  });
});
