// The gateway's NBD server against real NBD clients: libnbd's nbdinfo and nbdcopy,
// qemu-io and qemu-img, and fio's nbd engine. The server runs in this process on
// 127.0.0.1 (a free port) and on a Unix socket, over in-memory devices; every client is
// a separate process, started with a time limit. Data is checked end to end: hashes of
// what went in and came out, and the device's bytes themselves.

import { execFile, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { NbdServer } from "@ballast/nbd";
import { createLogger } from "@ballast/runtime";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { MemoryBlockDevice } from "../../packages/nbd/test/memory-block-device.ts";

const mebibyte = 1024 * 1024;
const toolTimeoutMs = 60_000;

interface ToolResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a client to completion (never with the event loop blocked: the server is here). */
function run(command: string, args: string[], timeoutMs = toolTimeoutMs): Promise<ToolResult> {
  return new Promise((resolve) => {
    execFile(
      command,
      args,
      { timeout: timeoutMs, killSignal: "SIGKILL", maxBuffer: 16 * mebibyte },
      (error, stdout, stderr) => {
        if (error === null) {
          resolve({ code: 0, stdout, stderr });
          return;
        }
        // A number is the exit status; otherwise the process did not start or was killed.
        const code = typeof error.code === "number" ? error.code : null;
        const why = error.killed ? "killed: timed out" : code === null ? error.message : "";
        resolve({ code, stdout, stderr: `${stderr}${why}` });
      },
    );
  });
}

/** Whether `command` can be run at all (undefined) or why not. */
async function missing(command: string, args: string[]): Promise<string | undefined> {
  const result = await run(command, args, 10_000);
  if (result.code === 0) return undefined;
  return `\`${command} ${args.join(" ")}\` failed (${result.code ?? "did not run"}): ${result.stderr.trim()}`;
}

function sha256(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

function expectSuccess(result: ToolResult): void {
  expect(result, `stderr: ${result.stderr}`).toMatchObject({ code: 0 });
}

/** The system Python, which Debian's python3-libnbd installs the `nbd` module for. */
const pythonPath = "/usr/bin/python3";
const stallScript = join(import.meta.dirname, "../support/nbd-stall.py");

const tools = {
  nbdinfo: await missing("nbdinfo", ["--version"]),
  nbdcopy: await missing("nbdcopy", ["--version"]),
  qemu: await missing("qemu-img", ["--version"]),
  // fio is built with its nbd engine only when libnbd was there; `--enghelp=nbd` says.
  fioNbd: await missing("fio", ["--enghelp=nbd"]),
  // libnbd's Python binding, for a client that stops taking its replies.
  pythonNbd: await missing(pythonPath, ["-c", "import nbd"]),
};

for (const [tool, reason] of Object.entries(tools)) {
  if (reason !== undefined) console.warn(`skipping the ${tool} interop tests: ${reason}`);
}

const devices = {
  copy: new MemoryBlockDevice("copy", 64 * mebibyte),
  vol: new MemoryBlockDevice("vol", 16 * mebibyte),
  image: new MemoryBlockDevice("image", 16 * mebibyte),
  fio: new MemoryBlockDevice("fio", 32 * mebibyte),
};
const byName = new Map(Object.values(devices).map((device) => [device.name, device]));
/** How many times each export was opened: one per connection that chose it. */
const opens = new Map<string, number>();

async function openExport(name: string): Promise<MemoryBlockDevice | undefined> {
  opens.set(name, (opens.get(name) ?? 0) + 1);
  return byName.get(name);
}

let server: NbdServer;
let port: number;
let directory: string;
let socketPath: string;

beforeAll(async () => {
  directory = await mkdtemp(join(tmpdir(), "ballast-nbd-interop-"));
  socketPath = join(directory, "nbd.sock");
  server = new NbdServer({
    openExport,
    listExports: async () => [...byName.keys()],
    logger: createLogger({ service: "gateway", nodeId: "nbd-test", level: "warn", destination: 2 }),
  });
  const bound = await server.listen({ host: "127.0.0.1", port: 0 });
  if (bound.port === undefined) throw new Error("the server did not report its port");
  port = bound.port;
});

afterAll(async () => {
  await server?.close();
  if (directory !== undefined) await rm(directory, { recursive: true, force: true });
});

function uri(name: string): string {
  return `nbd://127.0.0.1:${port}/${name}`;
}

describe("NBD server with real clients", () => {
  test.skipIf(tools.nbdinfo !== undefined)(
    "nbdinfo --json shows the size, the block sizes and the flags",
    async () => {
      const result = await run("nbdinfo", ["--json", uri("vol")]);
      expectSuccess(result);
      const [description] = JSON.parse(result.stdout).exports;
      expect(description).toMatchObject({
        "export-name": "vol",
        "export-size": 16 * mebibyte,
        block_size_minimum: 512,
        block_size_preferred: 4096,
        block_size_maximum: 32 * mebibyte,
        is_read_only: false,
        can_flush: true,
        can_fua: true,
        can_trim: true,
        can_zero: true,
        can_multi_conn: true,
      });
    },
  );

  test.skipIf(tools.nbdinfo !== undefined)("nbdinfo --list names every export", async () => {
    const result = await run("nbdinfo", ["--list", "--json", `nbd://127.0.0.1:${port}`]);
    expectSuccess(result);
    const names = JSON.parse(result.stdout).exports.map(
      (entry: { "export-name": string }) => entry["export-name"],
    );
    expect(names.sort()).toEqual(["copy", "fio", "image", "vol"]);
  });

  test.skipIf(tools.nbdinfo !== undefined)(
    "nbdinfo reaches the server on a Unix socket",
    async () => {
      const unixServer = new NbdServer({
        openExport: async (name) => byName.get(name),
        listExports: async () => [...byName.keys()],
      });
      try {
        await unixServer.listen({ path: socketPath });
        const result = await run("nbdinfo", ["--json", `nbd+unix:///vol?socket=${socketPath}`]);
        expectSuccess(result);
        expect(JSON.parse(result.stdout).exports[0]["export-size"]).toBe(16 * mebibyte);
      } finally {
        await unixServer.close();
      }
    },
  );

  test.skipIf(tools.nbdcopy !== undefined)(
    "nbdcopy of 64 MiB of random data in and back out keeps every byte",
    async () => {
      const source = join(directory, "random.bin");
      const target = join(directory, "copied.bin");
      const data = randomBytes(64 * mebibyte);
      await writeFile(source, data);
      expectSuccess(await run("nbdcopy", ["--flush", source, uri("copy")]));
      expect(sha256(devices.copy.bytes)).toBe(sha256(data));
      // nbdcopy opens several connections when the server allows multi-conn, and
      // --flush ends the copy with NBD_CMD_FLUSH.
      expect(opens.get("copy")).toBeGreaterThan(1);
      expect(devices.copy.count("flush")).toBeGreaterThan(0);
      expectSuccess(await run("nbdcopy", [uri("copy"), target]));
      expect(sha256(await readFile(target))).toBe(sha256(data));
    },
  );

  test.skipIf(tools.qemu !== undefined)("qemu-io writes a pattern and reads it back", async () => {
    const result = await run("qemu-io", [
      "-f",
      "raw",
      uri("vol"),
      "-c",
      "write -P 0xab 0 1M",
      "-c",
      "read -P 0xab 0 1M",
    ]);
    expectSuccess(result);
    expect(result.stdout).toContain("read 1048576/1048576 bytes at offset 0");
    expect(devices.vol.bytes.subarray(0, mebibyte).every((byte) => byte === 0xab)).toBe(true);
    expect(devices.vol.bytes[mebibyte]).toBe(0);
  });

  test.skipIf(tools.qemu !== undefined)(
    "qemu-img convert of a qcow2 image onto the export compares equal",
    async () => {
      const image = join(directory, "source.qcow2");
      expectSuccess(await run("qemu-img", ["create", "-q", "-f", "qcow2", image, "16M"]));
      expectSuccess(
        await run("qemu-io", [
          "-f",
          "qcow2",
          image,
          "-c",
          "write -P 0x5a 0 3M",
          "-c",
          "write -P 0xc3 9M 512k",
          "-c",
          "write -z 10M 1M",
        ]),
      );
      // Garbage on the export first, so that the image's holes must be written as zeroes.
      devices.image.bytes.set(randomBytes(16 * mebibyte));
      expectSuccess(
        await run("qemu-img", ["convert", "-n", "-f", "qcow2", "-O", "raw", image, uri("image")]),
      );
      const compare = await run("qemu-img", [
        "compare",
        "-f",
        "qcow2",
        "-F",
        "raw",
        image,
        uri("image"),
      ]);
      expectSuccess(compare);
      expect(compare.stdout).toContain("Images are identical");
      expect(devices.image.bytes[3 * mebibyte]).toBe(0);
      expect(devices.image.bytes[9 * mebibyte]).toBe(0xc3);
    },
  );

  test.skipIf(tools.fioNbd !== undefined)(
    "fio with the nbd engine writes randomly at depth 16 and verifies every block (crc32c)",
    async () => {
      const result = await run("fio", [
        "--name=ballast-nbd",
        "--ioengine=nbd",
        `--uri=${uri("fio")}`,
        "--rw=randwrite",
        "--bs=4k",
        "--size=32M",
        "--iodepth=16",
        "--verify=crc32c",
        "--do_verify=1",
        "--verify_fatal=1",
        // fio saves verify state in the working directory unless told not to.
        "--verify_state_save=0",
        "--output-format=json",
      ]);
      expectSuccess(result);
      const [job] = JSON.parse(result.stdout.slice(result.stdout.indexOf("{"))).jobs;
      expect(job.error).toBe(0);
      expect(job.write.io_bytes).toBe(32 * mebibyte);
      expect(job.read.io_bytes).toBe(32 * mebibyte);
    },
  );

  test.skipIf(tools.pythonNbd !== undefined || tools.nbdcopy !== undefined)(
    "a libnbd client that stops taking its replies is cut off; nbdcopy, starved meanwhile, completes",
    async () => {
      // A server of its own, whose whole payload budget four 8 MiB reads fill.
      const readBytes = 8 * mebibyte;
      const reads = 4;
      const device = new MemoryBlockDevice("stall", reads * readBytes);
      device.bytes.set(randomBytes(device.sizeBytes));
      const stallServer = new NbdServer({
        openExport: async (name) => (name === "stall" ? device : undefined),
        listExports: async () => ["stall"],
        limits: {
          clientStallMs: 1000,
          payloadBytesMax: readBytes,
          payloadBytesInflightMax: reads * readBytes,
        },
      });
      const bound = await stallServer.listen({ host: "127.0.0.1", port: 0 });
      const url = `nbd://127.0.0.1:${bound.port}/stall`;
      const stalled = spawn(pythonPath, [stallScript, url, String(reads), String(readBytes)], {
        stdio: ["pipe", "pipe", "inherit"],
      });
      try {
        const lines = createInterface({ input: stalled.stdout })[Symbol.asyncIterator]();
        expect(JSON.parse((await lines.next()).value)).toEqual({ sent: reads });
        await waitUntil(() => device.completed.length === reads);

        const target = join(directory, "stall.raw");
        expectSuccess(await run("nbdcopy", [url, target]));
        expect(sha256(await readFile(target))).toBe(sha256(device.bytes));

        stalled.stdin.end();
        const outcome = JSON.parse((await lines.next()).value);
        expect(outcome.disconnected).toBe(true);
        expect(outcome.answered).toBeLessThan(reads);
      } finally {
        stalled.kill("SIGKILL");
        await stallServer.close();
      }
    },
  );
});

async function waitUntil(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setTimeout(resolve, 10));
}
