// The NBD gateway on the whole stack: real NBD clients this project did not write,
// against a gateway process serving a replicated volume on real head nodes and sleds.
// Includes a kill -9 of the partition's primary in the middle of an nbdcopy.

import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { freePort } from "@ballast/cli";
import { subjects } from "@ballast/protocol";
import { afterAll, beforeAll, expect, test } from "vitest";
import { runCli, startCli } from "../support/cli.ts";
import { startTestCluster, type TestCluster, waitFor } from "../support/cluster.ts";

const run = promisify(execFile);
const mebibyte = 1024 * 1024;
let cluster: TestCluster;
let url: string;

beforeAll(async () => {
  cluster = await startTestCluster({ headNodes: 3, sleds: 3, gateways: 1, nbdPortFirst: 0 });
  await cluster.bus.request(subjects.coordinator.build(), {
    type: "volume.create.v1",
    name: "disk",
    sizeBytes: 96 * mebibyte,
    partitionBytes: 32 * mebibyte,
  });
  const info = await waitFor("the gateway's NBD address", async () => {
    const result = await cluster.bus.request(subjects.node.build("gateway", "gateway-1"), {
      type: "node.info.v1",
    });
    return typeof result.details.nbd === "string" ? (result.details.nbd as string) : undefined;
  });
  url = `${info}/disk`;
});
afterAll(() => cluster?.stop());

const sha256 = (data: Uint8Array) => createHash("sha256").update(data).digest("hex");

test("nbdinfo shows the volume's size and block sizes", async () => {
  const { stdout } = await run("nbdinfo", ["--json", url]);
  const info = JSON.parse(stdout);
  expect(info.exports[0]["export-size"]).toBe(96 * mebibyte);
  expect(info.exports[0].block_size_minimum).toBe(512);
  expect(info.exports[0].block_size_preferred).toBe(4096);
  expect(info.exports[0].block_size_maximum).toBeGreaterThanOrEqual(32 * mebibyte);
});

test("nbdcopy of 64 MiB in and back out gives the same SHA-256", async () => {
  const source = join(cluster.dataDir, "in.raw");
  const target = join(cluster.dataDir, "out.raw");
  const data = randomBytes(64 * mebibyte);
  await writeFile(source, data);
  await run("nbdcopy", [source, url], { timeout: 120_000 });
  await run("nbdcopy", [url, target], { timeout: 120_000 });
  const back = await readFile(target);
  expect(sha256(back.subarray(0, data.byteLength))).toBe(sha256(data));
});

test("qemu-io writes a pattern and reads it back", async () => {
  const { stdout } = await run("qemu-io", [
    "-f",
    "raw",
    url,
    "-c",
    "write -P 0xab 1M 1M",
    "-c",
    "read -P 0xab 1M 1M",
  ]);
  expect(stdout).toContain("wrote 1048576/1048576 bytes");
  expect(stdout).toContain("read 1048576/1048576 bytes");
  expect(stdout).not.toContain("Pattern verification failed");
});

test("qemu-img converts a qcow2 image onto the volume, and compares identical", async () => {
  const qcow2 = join(cluster.dataDir, "image.qcow2");
  await run("qemu-img", ["create", "-q", "-f", "qcow2", qcow2, "96M"]);
  await run("qemu-io", [
    "-f",
    "qcow2",
    qcow2,
    "-c",
    "write -P 0x5a 0 5M",
    "-c",
    "write -z 8M 2M",
    "-c",
    "write -P 0xa5 40M 3M",
  ]);
  await run("qemu-img", ["convert", "-n", "-f", "qcow2", "-O", "raw", qcow2, url], {
    timeout: 120_000,
  });
  const { stdout } = await run("qemu-img", ["compare", "-f", "qcow2", "-F", "raw", qcow2, url], {
    timeout: 120_000,
  });
  expect(stdout).toContain("Images are identical");
});

test("fio with the nbd engine writes at random and verifies every block (crc32c)", async (context) => {
  try {
    await run("fio", ["--enghelp=nbd"]);
  } catch {
    context.skip(); // this fio was built without its nbd engine
  }
  const { stdout } = await run(
    "fio",
    [
      "--name=ballast",
      "--ioengine=nbd",
      `--uri=${url}`,
      "--rw=randwrite",
      "--bs=4k",
      "--size=16M",
      "--iodepth=8",
      "--verify=crc32c",
      "--do_verify=1",
      "--verify_fatal=1",
      "--verify_state_save=0",
      "--output-format=json",
    ],
    { timeout: 120_000 },
  );
  const [job] = JSON.parse(stdout.slice(stdout.indexOf("{"))).jobs;
  expect(job.error).toBe(0);
  expect(job.write.io_bytes).toBe(16 * mebibyte);
  expect(job.read.io_bytes).toBe(16 * mebibyte);
});

test("kill -9 of a primary during nbdcopy: the copy completes and its checksum matches", async () => {
  const source = join(cluster.dataDir, "failover.raw");
  const target = join(cluster.dataDir, "failover-out.raw");
  const data = randomBytes(80 * mebibyte);
  await writeFile(source, data);
  const state = await cluster.bus.request(subjects.coordinator.build(), {
    type: "volume.describe.v1",
    name: "disk",
  });
  const victim = state.partitions[1]!.primary;
  const copying = run("nbdcopy", [source, url], { timeout: 120_000 });
  await new Promise((resolve) => setTimeout(resolve, 700));
  await cluster.cluster.kill(victim, "SIGKILL");
  await copying;
  await run("nbdcopy", [url, target], { timeout: 120_000 });
  const back = await readFile(target);
  expect(sha256(back.subarray(0, data.byteLength))).toBe(sha256(data));
  const after = await cluster.bus.request(subjects.coordinator.build(), {
    type: "volume.describe.v1",
    name: "disk",
  });
  expect(after.partitions[1]!.primary).not.toBe(victim);
});

test("ballast nbd serves the cluster's volumes from the terminal until Ctrl-C", async () => {
  const port = await freePort();
  const served = startCli(["nbd", "--port", String(port), "--nats", cluster.cluster.natsUrl]);
  const { stdout } = await waitFor("ballast nbd to answer", async () => {
    try {
      return await run("nbdinfo", ["--json", `nbd://127.0.0.1:${port}/disk`]);
    } catch {
      return undefined;
    }
  });
  expect(JSON.parse(stdout).exports[0]["export-size"]).toBe(96 * mebibyte);
  served.child.kill("SIGINT");
  expect(await served.exited).toBe(0);
});

test("ballast nbd refuses a port it cannot serve on, naming --port, before it starts", async () => {
  // Port 0 would bind a free port that the command never shows (its log level hides it).
  for (const port of ["99999", "abc", "-1", "0"]) {
    const refused = await runCli(["nbd", `--port=${port}`, "--nats", cluster.cluster.natsUrl]);
    expect(refused.code, port).toBe(2);
    expect(refused.stderr).toBe(
      `ballast: --port must be a port from 1 to 65535, got ${JSON.stringify(port)}\n`,
    );
  }
});

test("ballast nbd on a port already in use fails with a line that names the address", async () => {
  // The cluster's own NATS port is certainly taken.
  const taken = new URL(cluster.cluster.natsUrl).port;
  const failed = await runCli(["nbd", "--port", taken, "--nats", cluster.cluster.natsUrl]);
  expect(failed.code).toBe(1);
  expect(failed.stderr).toContain(
    `ballast gateway: cannot serve NBD on 127.0.0.1:${taken}: listen EADDRINUSE: address already in use 127.0.0.1:${taken}\n`,
  );
});
