// Rollback on the whole stack: real coordinator, head nodes, sleds and an NBD gateway,
// written and read with an NBD client this project did not write (qemu-io). Write
// pattern A, snapshot, write pattern B, detach, `ballast volume rollback`, attach: the
// volume reads A again (and zeros where only B was). A rollback is refused while an NBD
// client is connected to the volume (the gateway reports it attached), and goes through
// with --force.

import { type ChildProcess, execFile, spawn } from "node:child_process";
import { promisify } from "node:util";
import { subjects } from "@ballast/protocol";
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
let nats: string[];

beforeAll(async () => {
  cluster = await startTestCluster({ headNodes: 3, sleds: 3, gateways: 1, nbdPortFirst: 0 });
  await cluster.bus.request(subjects.coordinator.build(), {
    type: "volume.create.v1",
    name: "disk",
    sizeBytes: volumeBytes,
    partitionBytes,
  });
  nbd = await waitFor("the gateway's NBD address", async () => {
    const result = await cluster.bus.request(subjects.node.build("gateway", "gateway-1"), {
      type: "node.info.v1",
    });
    return typeof result.details.nbd === "string" ? (result.details.nbd as string) : undefined;
  });
  nats = ["--nats", cluster.cluster.natsUrl];
});
afterAll(() => cluster?.stop());

async function qemuIo(commands: string[]): Promise<string> {
  const args = ["-f", "raw", `${nbd}/disk`];
  for (const command of commands) args.push("-c", command);
  const { stdout } = await run("qemu-io", args, { timeout: clientTimeoutMs });
  expect(stdout).not.toContain("Pattern verification failed");
  expect(stdout).not.toMatch(/failed|error/i);
  return stdout;
}

/** Open NBD connections to `disk` the gateway reports. */
async function attached(): Promise<number> {
  const info = await cluster.bus.request(subjects.node.build("gateway", "gateway-1"), {
    type: "node.info.v1",
  });
  const counts = info.details.attached as Record<string, number> | undefined;
  return counts?.disk ?? 0;
}

/** One megabyte at the start of each partition, and one the snapshot never had. */
const ranges = [0, 1, 2].map((index) => index * partitionBytes);
const onlyB = partitionBytes + 8 * mebibyte;

test("write A, snapshot, write B, detach, rollback, attach: the volume reads A", async () => {
  await qemuIo(ranges.map((offset) => `write -P 0xa ${offset} 1M`));
  const created = await runCli(["snapshot", "create", "disk", "a", ...nats]);
  expect(created.code, created.stderr).toBe(0);
  await qemuIo([
    ...ranges.map((offset) => `write -P 0xb ${offset} 1M`),
    `write -P 0xb ${onlyB} 1M`,
  ]);
  await qemuIo([...ranges.map((offset) => `read -P 0xb ${offset} 1M`), `read -P 0xb ${onlyB} 1M`]);
  await waitFor("the gateway to see the client gone", async () =>
    (await attached()) === 0 ? true : undefined,
  );

  const rolled = await runCli(["volume", "rollback", "disk", "a", ...nats]);
  expect(rolled.code, rolled.stderr).toBe(0);
  expect(rolled.stdout).toContain("rolled volume disk back to snapshot a (3 partitions)");
  const stdout = await qemuIo([
    ...ranges.map((offset) => `read -P 0xa ${offset} 1M`),
    `read -P 0 ${onlyB} 1M`,
  ]);
  expect(stdout.match(/^read /gm)?.length).toBe(4);
  // Again: the same state; the snapshot is still there and still reads A.
  const again = await runCli(["volume", "rollback", "disk", "a", ...nats]);
  expect(again.code, again.stderr).toBe(0);
  await qemuIo(ranges.map((offset) => `read -P 0xa ${offset} 1M`));
  const { stdout: snapshotRead } = await run(
    "qemu-io",
    ["-r", "-f", "raw", `${nbd}/disk@a`, "-c", `read -P 0xa ${ranges[2]} 1M`],
    { timeout: clientTimeoutMs },
  );
  expect(snapshotRead).not.toContain("Pattern verification failed");
  const missing = await runCli(["volume", "rollback", "disk", "nope", ...nats]);
  expect(missing.code).toBe(1);
  expect(missing.stderr).toContain("NotFound");
  const usage = await runCli(["volume", "rollback", "disk", ...nats]);
  expect(usage.code).toBe(2);
});

test("a rollback is refused while an NBD client is connected, and goes through with --force", async () => {
  await qemuIo([`write -P 0xc ${ranges[0]} 1M`]);
  // A real client that stays connected: qemu-io sleeping between two commands.
  const client: ChildProcess = spawn(
    "qemu-io",
    ["-f", "raw", `${nbd}/disk`, "-c", `write -P 0xd ${ranges[1]} 1M`, "-c", "sleep 60000"],
    { stdio: "ignore" },
  );
  try {
    await waitFor("the gateway to report the client attached", async () =>
      (await attached()) > 0 ? true : undefined,
    );
    const refused = await runCli(["volume", "rollback", "disk", "a", ...nats]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(
      /InvalidArgument: cannot roll volume disk back to a: volume disk is attached/,
    );
    expect(refused.stderr).toContain("NBD connection(s) through gateway gateway-1");
    expect(refused.stderr).toContain("--force");
  } finally {
    client.kill("SIGKILL");
  }
  await waitFor("the gateway to see the client gone", async () =>
    (await attached()) === 0 ? true : undefined,
  );
  // Refused means untouched: the writes since the last rollback are still there.
  await qemuIo([`read -P 0xc ${ranges[0]} 1M`, `read -P 0xd ${ranges[1]} 1M`]);
  const forced = await runCli(["volume", "rollback", "disk", "a", "--force", ...nats]);
  expect(forced.code, forced.stderr).toBe(0);
  await qemuIo(ranges.map((offset) => `read -P 0xa ${offset} 1M`));
});
