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
  // A usage error (exit 2), checked before anything is sent.
  expect(unaligned.code).toBe(2);
  expect(unaligned.stderr).toContain("--offset must be a multiple of 512 bytes, got 100");
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

/** `ballast write disk ...args` fed `data` on stdin. */
function writeFromStdin(args: string[], data: Uint8Array) {
  return new Promise<{ code: number | null; stderr: string }>((resolve) => {
    const child = spawn(process.execPath, [ballastBin, "write", "disk", ...args, ...nats], {
      stdio: ["pipe", "ignore", "pipe"],
    });
    let stderr = "";
    child.stderr.on("data", (chunk) => {
      stderr += chunk;
    });
    // The command may fail before it has read everything: that is not this test's error.
    child.stdin.on("error", () => undefined);
    child.stdin.end(data);
    child.once("close", (code) => resolve({ code, stderr }));
  });
}

test("failures part way, ranges past the end and unusable files are clear errors, not crashes", async () => {
  // Several pieces, the later ones past the end: refused before any byte is output.
  const pastEnd = await runCli(["read", "disk", "--offset", "8MiB", "--length", "16MiB", ...nats]);
  expect(pastEnd.code).toBe(1);
  expect(pastEnd.stderr).toMatch(
    /^ballast: OutOfRange: cannot read 16MiB at offset 8388608 of disk/,
  );
  expect(pastEnd.stdout).toBe("");
  const exportPastEnd = await runCli([
    "export",
    "disk",
    join(cluster.dataDir, "past.raw"),
    "--offset",
    "32MiB",
    ...nats,
  ]);
  expect(exportPastEnd.code).toBe(1);
  expect(exportPastEnd.stderr).toMatch(/^ballast: OutOfRange: /);
  // Stdin has no size to check first: its second piece fails while the third is read.
  const overflow = await writeFromStdin(["--offset", "12MiB"], randomBytes(12 * 1024 * 1024));
  expect(overflow.code).toBe(1);
  expect(overflow.stderr).toMatch(/^ballast: OutOfRange: /);
  expect(overflow.stderr).not.toContain("unexpected failure");
  const missing = join(cluster.dataDir, "no-such-file");
  const noFile = await runCli(["write", "disk", "--file", missing, ...nats]);
  expect(noFile.code).toBe(1);
  expect(noFile.stderr).toBe(
    `ballast: cannot open ${missing}: ENOENT: no such file or directory, open '${missing}'\n`,
  );
  const directory = await runCli(["import", "disk", cluster.dataDir, ...nats]);
  expect(directory.code).toBe(1);
  expect(directory.stderr).toMatch(new RegExp(`^ballast: cannot read ${cluster.dataDir}: EISDIR`));
  const noDirectory = await runCli(["export", "disk", join(missing, "x.raw"), ...nats]);
  expect(noDirectory.code).toBe(1);
  expect(noDirectory.stderr).toMatch(/^ballast: cannot create .*: ENOENT/);
});

test("a reader that goes away part way through `ballast read` is a clear error, not a crash", async () => {
  // `ballast read ... | head -c 1`: the pipe's reader closes after the first bytes. The
  // command's next write fails with EPIPE; stdout's error had no listener, so it died
  // with a stack trace.
  const result = await new Promise<{ code: number | null; stderr: string; got: number }>(
    (resolve) => {
      const child = spawn(
        process.execPath,
        [ballastBin, "read", "disk", "--length", "16MiB", ...nats],
        { stdio: ["ignore", "pipe", "pipe"] },
      );
      let stderr = "";
      let got = 0;
      child.stderr.on("data", (chunk) => {
        stderr += chunk;
      });
      child.stdout.once("data", (chunk: Buffer) => {
        got = chunk.byteLength;
        child.stdout.destroy();
      });
      child.once("close", (code) => resolve({ code, stderr, got }));
    },
  );
  expect(result.got).toBeGreaterThan(0);
  expect(result.code).toBe(1);
  expect(result.stderr).toMatch(/^ballast: cannot write to standard output: .*EPIPE/);
  expect(result.stderr).not.toContain("    at ");
});

test("--replicas that is not 2 or 3 is a usage error naming the flag", async () => {
  for (const replicas of ["abc", "2.5", "0x3", "", "1", "4"]) {
    const created = await runCli([
      "volume",
      "create",
      "never",
      "--size",
      "1MiB",
      `--replicas=${replicas}`,
      ...nats,
    ]);
    expect(created.code, replicas).toBe(2);
    expect(created.stderr).toBe(
      `ballast: --replicas must be a whole number from 2 to 3, got ${JSON.stringify(replicas)}\n`,
    );
  }
  const cloned = await runCli(["volume", "clone", "disk@none", "never", "--replicas=x", ...nats]);
  expect(cloned.code).toBe(2);
  expect(cloned.stderr).toContain("--replicas must be");
});
