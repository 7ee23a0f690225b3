// Clones on the whole stack: real coordinator, head nodes, sleds and an NBD gateway, read
// and written with NBD clients this project did not write (qemu-io, nbdcopy). A clone
// reads as its parent snapshot until written; the clone and its parent each show their
// own writes afterwards; a trim or write-zeroes in the clone reads zeros, not the
// parent's data, also after a kill -9 of the clone's primary; a clone of a clone and a
// rollback of a clone to its own snapshot fall through correctly; a shrink lowers the
// overlap, so a re-grown tail reads zeros; the parent snapshot (and volume) cannot be
// deleted while a clone exists, and can once it is gone. The `ballast volume clone`
// command and the clones column of `ballast snapshot list` too.

import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { type BallastError, coordinatorSubjectOf, subjects } from "@ballast/protocol";
import { afterAll, beforeAll, expect, test } from "vitest";
import { runCli } from "../support/cli.ts";
import { startTestCluster, type TestCluster, waitFor } from "../support/cluster.ts";

const run = promisify(execFile);
const kibibyte = 1024;
const mebibyte = 1024 * kibibyte;
const partitionBytes = 16 * mebibyte;
const volumeBytes = 3 * partitionBytes;
const p = partitionBytes;
/** NBD clients run under a timeout, so that a hang fails the test rather than stalls it. */
const clientTimeoutMs = 120_000;
let cluster: TestCluster;
let nbd: string;
let nats: string[];

beforeAll(async () => {
  cluster = await startTestCluster({ headNodes: 3, sleds: 3, gateways: 1, nbdPortFirst: 0 });
  nats = ["--nats", cluster.cluster.natsUrl];
  await cluster.bus.request(subjects.coordinator.build(), {
    type: "volume.create.v1",
    name: "base",
    sizeBytes: volumeBytes,
    partitionBytes,
  });
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
  // `-d unmap`: qemu-io ignores discards unless told to pass them on.
  const args = ["-f", "raw", ...(readOnly ? ["-r"] : ["-d", "unmap"]), `${nbd}/${exportName}`];
  for (const command of commands) args.push("-c", command);
  const { stdout } = await run("qemu-io", args, { timeout: clientTimeoutMs });
  expect(stdout).not.toMatch(/failed|error/i);
  return stdout;
}

/** A model of a volume's bytes, changed as the test writes. */
class Model {
  readonly bytes: Buffer;
  constructor(size: number, from?: Model) {
    this.bytes = Buffer.alloc(size);
    if (from !== undefined) from.bytes.copy(this.bytes, 0, 0, Math.min(size, from.bytes.length));
  }
  fill(pattern: number, offset: number, length: number): string {
    this.bytes.fill(pattern, offset, offset + length);
    return `write -P 0x${pattern.toString(16)} ${offset} ${length}`;
  }
}

/** The whole export, read by nbdcopy, equals the model byte for byte. */
async function expectExport(exportName: string, model: Model) {
  const copy = join(cluster.dataDir, `${exportName.replace("@", "-at-")}.raw`);
  await run("nbdcopy", [`${nbd}/${exportName}`, copy], { timeout: clientTimeoutMs });
  const bytes = await readFile(copy);
  expect(bytes.length).toBe(model.bytes.length);
  if (!bytes.equals(model.bytes)) {
    let at = 0;
    while (bytes[at] === model.bytes[at]) at++;
    expect.fail(
      `${exportName} differs from its model first at byte ${at}: ${bytes[at]} instead of ${model.bytes[at]}`,
    );
  }
}

async function describe(name: string) {
  return cluster.bus.request(coordinator(), { type: "volume.describe.v1", name });
}

test("a clone reads as its snapshot, then each side shows its own writes; trims read zeros; the parent snapshot stays while clones exist", async () => {
  const base = new Model(volumeBytes);
  await qemuIo("base", [
    base.fill(0x11, 0, 4 * mebibyte),
    base.fill(0x22, p, 4 * mebibyte),
    base.fill(0x33, 2 * p, 4 * mebibyte),
  ]);
  await cluster.bus.request(
    coordinator(),
    { type: "snapshot.create.v1", volume: "base", name: "s1" },
    { deadlineMs: 30_000 },
  );
  const s1 = new Model(volumeBytes, base);

  const cloned = await runCli(["volume", "clone", "base@s1", "copy", ...nats]);
  expect(cloned.code, cloned.stderr).toBe(0);
  expect(cloned.stdout).toContain("cloned volume copy");
  expect(cloned.stdout).toContain("clone of base@s1");
  const state = await describe("copy");
  expect(state.sizeBytes).toBe(volumeBytes);
  expect(state.partitionBytes).toBe(partitionBytes);
  expect(state.parent).toMatchObject({ volume: "base", snapshot: "s1", overlap: volumeBytes });
  const copy = new Model(volumeBytes, s1);
  await expectExport("copy", copy);

  // Each side's writes are its own. The clone's second write straddles data the
  // snapshot had and bytes it never had.
  await qemuIo("copy", [
    copy.fill(0xaa, mebibyte, mebibyte),
    copy.fill(0xbb, p + 3 * mebibyte, 2 * mebibyte),
  ]);
  await qemuIo("base", [base.fill(0x44, 0, 512 * kibibyte), base.fill(0x44, 2 * p, mebibyte)]);
  await expectExport("copy", copy);
  await expectExport("base", base);
  await expectExport("base@s1", s1);

  // A trim and a write-zeroes in the clone read zeros, not the parent's data.
  await qemuIo("copy", [`discard ${2 * mebibyte} ${mebibyte}`, `write -z ${p} ${mebibyte}`]);
  copy.bytes.fill(0, 2 * mebibyte, 3 * mebibyte);
  copy.bytes.fill(0, p, p + mebibyte);
  await expectExport("copy", copy);

  // ... also on the clone's new primary after a kill -9 of the old one.
  const victim = (await describe("copy")).partitions[0]!.primary;
  await cluster.cluster.kill(victim, "SIGKILL");
  await waitFor("the clone's partition 0 to fail over", async () =>
    (await describe("copy")).partitions[0]!.primary !== victim ? true : undefined,
  );
  await expectExport("copy", copy);

  // The parent snapshot, and its volume, stay while the clone exists.
  const refused = await cluster.bus
    .request(subjects.coordinatorAdmin.build(), {
      type: "snapshot.delete.v1",
      volume: "base",
      name: "s1",
    })
    .catch((error: BallastError) => error);
  expect((refused as BallastError).code).toBe("InvalidArgument");
  expect((refused as BallastError).message).toBe(
    "snapshot s1 of base has clones: copy; delete them first",
  );
  const volumeRefused = await cluster.bus
    .request(subjects.coordinatorAdmin.build(), { type: "volume.delete.v1", name: "base" })
    .catch((error: BallastError) => error);
  expect((volumeRefused as BallastError).code).toBe("InvalidArgument");
  const listed = await runCli(["snapshot", "list", "base", ...nats]);
  expect(listed.code, listed.stderr).toBe(0);
  expect(listed.stdout).toMatch(/base@s1 .* copy/);
  const described = await runCli(["volume", "describe", "copy", ...nats]);
  expect(described.stdout).toContain("clone of base@s1");

  // A clone of the clone reads through both; a rollback of the clone to its own
  // snapshot falls through to base@s1 again where the clone had not written.
  await cluster.bus.request(
    coordinator(),
    { type: "snapshot.create.v1", volume: "copy", name: "c1" },
    { deadlineMs: 30_000 },
  );
  const c1 = new Model(volumeBytes, copy);
  await cluster.bus.request(coordinator(), {
    type: "volume.clone.v1",
    volume: "copy",
    snapshot: "c1",
    name: "grandchild",
  });
  await expectExport("grandchild", c1);
  await qemuIo("copy", [copy.fill(0xcc, 0, 8 * mebibyte), copy.fill(0xdd, 2 * p, 8 * mebibyte)]);
  await expectExport("copy", copy);
  await cluster.bus.request(subjects.coordinatorAdmin.build(), {
    type: "volume.rollback.v1",
    volume: "copy",
    snapshot: "c1",
    force: true,
  });
  await expectExport("copy", c1);
  await expectExport("grandchild", c1);

  // A shrink lowers the overlap: the tail it cut reads zeros when the clone grows again.
  const shrunk = await cluster.bus.request(subjects.coordinatorAdmin.build(), {
    type: "volume.resize.v1",
    name: "grandchild",
    sizeBytes: 2 * p + 2 * mebibyte,
    allowShrink: true,
  });
  expect(shrunk.parent?.overlap).toBe(2 * p + 2 * mebibyte);
  const grown = await cluster.bus.request(subjects.coordinatorAdmin.build(), {
    type: "volume.resize.v1",
    name: "grandchild",
    sizeBytes: volumeBytes,
  });
  expect(grown.parent?.overlap).toBe(2 * p + 2 * mebibyte);
  const grandchild = new Model(volumeBytes, c1);
  grandchild.bytes.fill(0, 2 * p + 2 * mebibyte);
  await expectExport("grandchild", grandchild);

  // Deleting the clones, innermost first, lets the parent snapshots go.
  const early = await runCli(["snapshot", "delete", "copy", "c1", ...nats]);
  expect(early.code).toBe(1);
  expect(early.stderr).toContain("snapshot c1 of copy has clones: grandchild; delete them first");
  for (const [kind, request] of [
    ["volume", { type: "volume.delete.v1", name: "grandchild" }],
    ["snapshot", { type: "snapshot.delete.v1", volume: "copy", name: "c1" }],
    ["volume", { type: "volume.delete.v1", name: "copy" }],
    ["snapshot", { type: "snapshot.delete.v1", volume: "base", name: "s1" }],
  ] as const) {
    const answer = await cluster.bus.request(coordinatorSubjectOf(request.type), request, {
      deadlineMs: 30_000,
    });
    expect(answer.deleted, kind).toBe(true);
  }
  await expectExport("base", base);
});

test("ballast volume clone refuses what it cannot do, clearly", async () => {
  const usage = await runCli(["volume", "clone", "base", "other", ...nats]);
  expect(usage.code).toBe(2);
  expect(usage.stderr).toContain("VOLUME@SNAPSHOT");
  const missing = await runCli(["volume", "clone", "base@nope", "other", ...nats]);
  expect(missing.code).toBe(1);
  expect(missing.stderr).toContain("NotFound");
  expect(missing.stderr).toContain("volume base has no snapshot named nope");
});
