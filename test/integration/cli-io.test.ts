// Block I/O through the `ballast` command on real processes: an image imported across
// partition boundaries exports back byte-identical; write and read through stdin and
// stdout; bad offsets and sizes are refused with clear errors.

import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { subjects } from "@ballast/protocol";
import { afterAll, beforeAll, expect, test } from "vitest";
import { ballastBin, runCli } from "../support/cli.ts";
import { startTestCluster, type TestCluster } from "../support/cluster.ts";

let cluster: TestCluster;
let nats: string[];

beforeAll(async () => {
  cluster = await startTestCluster({ headNodes: 3, sleds: 3 });
  nats = ["--nats", cluster.cluster.natsUrl];
  await cluster.bus.request(subjects.coordinator.build(), {
    type: "volume.create.v1",
    name: "disk",
    sizeBytes: 16 * 1024 * 1024,
    partitionBytes: 4 * 1024 * 1024,
  });
});
afterAll(() => cluster?.stop());

const sha256 = (data: Uint8Array) => createHash("sha256").update(data).digest("hex");

test("an image imported across partitions exports back byte-identical", async () => {
  const image = randomBytes(11 * 1024 * 1024 + 512);
  const source = join(cluster.dataDir, "image.raw");
  const target = join(cluster.dataDir, "export.raw");
  await writeFile(source, image);
  const imported = await runCli(["import", "disk", source, ...nats]);
  expect(imported.stderr).toContain("flushed");
  expect(imported.code).toBe(0);
  const exported = await runCli(["export", "disk", target, ...nats]);
  expect(exported.code).toBe(0);
  const whole = await readFile(target);
  expect(whole.byteLength).toBe(16 * 1024 * 1024);
  expect(sha256(whole.subarray(0, image.byteLength))).toBe(sha256(image));
  expect(whole.subarray(image.byteLength).every((byte) => byte === 0)).toBe(true);
});

test("write from stdin and read to stdout", async () => {
  const data = randomBytes(8192);
  const written = await new Promise<number | null>((resolve) => {
    const child = spawn(
      process.execPath,
      [ballastBin, "write", "disk", "--offset", "4MiB", ...nats],
      {
        stdio: ["pipe", "ignore", "ignore"],
      },
    );
    child.stdin.end(data);
    child.once("close", resolve);
  });
  expect(written).toBe(0);
  const read = await new Promise<Buffer>((resolve) => {
    const child = spawn(process.execPath, [
      ballastBin,
      "read",
      "disk",
      "--offset",
      "4MiB",
      "--length",
      "8KiB",
      ...nats,
    ]);
    const parts: Buffer[] = [];
    child.stdout.on("data", (part: Buffer) => parts.push(part));
    child.once("close", () => resolve(Buffer.concat(parts)));
  });
  expect(sha256(read)).toBe(sha256(data));
});

test("bad offsets, lengths and inputs are refused with clear errors", async () => {
  const unaligned = await runCli(["read", "disk", "--offset", "100", "--length", "512", ...nats]);
  expect(unaligned.code).toBe(1);
  expect(unaligned.stderr).toContain("Unaligned");
  const past = await runCli(["read", "disk", "--offset", "16MiB", "--length", "512", ...nats]);
  expect(past.stderr).toContain("OutOfRange");
  const noLength = await runCli(["read", "disk", ...nats]);
  expect(noLength.code).toBe(2);
  const odd = join(cluster.dataDir, "odd.raw");
  await writeFile(odd, randomBytes(1000));
  const notSectors = await runCli(["import", "disk", odd, ...nats]);
  expect(notSectors.code).toBe(2);
  expect(notSectors.stderr).toContain("multiples of 512 (or pass --pad)");
  const padded = await runCli(["import", "disk", odd, "--pad", ...nats]);
  expect(padded.code).toBe(0);
  const big = join(cluster.dataDir, "big.raw");
  await writeFile(big, Buffer.alloc(17 * 1024 * 1024));
  const tooBig = await runCli(["import", "disk", big, ...nats]);
  expect(tooBig.stderr).toContain("does not fit in disk");
  const missing = await runCli(["export", "nope", join(cluster.dataDir, "x"), ...nats]);
  expect(missing.stderr).toContain("NotFound");
});
