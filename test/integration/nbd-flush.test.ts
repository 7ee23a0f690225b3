// NBD FLUSH and FUA with fewer than two live sleds, on real processes (issue 11, defect
// 8). An acknowledged write is already durable in every replica's journal, so a FLUSH
// (or a FUA write) has nothing more to wait for: it must answer at once even when chunks
// cannot be stored on sleds (a chunk needs two copies; here only one sled is left).
// Today it waits for a flush to sleds that cannot happen: about 30 s, then an error.
// The NBD clients (qemu-io, nbdsh) run under a timeout so that the test fails, never
// hangs.

import { execFile, spawn } from "node:child_process";
import { promisify } from "node:util";
import { subjects } from "@ballast/protocol";
import { afterAll, beforeAll, expect, test } from "vitest";
import { startTestCluster, type TestCluster, waitFor } from "../support/cluster.ts";
import { gatewayUrl, hasLibnbd, libnbdPython } from "../support/faults.ts";

const run = promisify(execFile);
let cluster: TestCluster;
let url: string;

beforeAll(async () => {
  cluster = await startTestCluster({ headNodes: 2, sleds: 2, gateways: 1, nbdPortFirst: 0 });
  await cluster.bus.request(subjects.coordinator.build(), {
    type: "volume.create.v1",
    name: "flushes",
    sizeBytes: 8 * 1024 * 1024,
    partitionBytes: 8 * 1024 * 1024,
  });
  url = await gatewayUrl(cluster.bus, "gateway-1", "flushes");
});
afterAll(() => cluster?.stop());

/** Well past a flush that answers from journals, well short of today's 30 s wait. */
const clientTimeoutMs = 10_000;

/** Runs qemu-io commands on the volume; a failure or the timeout is a failed test. */
async function qemuIo(commands: string[]) {
  const startedAtMs = Date.now();
  const args = ["-f", "raw", url, ...commands.flatMap((command) => ["-c", command])];
  try {
    const { stdout, stderr } = await run("qemu-io", args, {
      timeout: clientTimeoutMs,
      killSignal: "SIGKILL",
    });
    return { output: stdout + stderr, elapsedMs: Date.now() - startedAtMs };
  } catch (error) {
    const failed = error as { killed?: boolean; stdout?: string; stderr?: string };
    throw new Error(
      failed.killed
        ? `qemu-io ${commands.join("; ")} did not finish within ${clientTimeoutMs} ms`
        : `qemu-io ${commands.join("; ")} failed: ${failed.stdout}${failed.stderr}`,
    );
  }
}

/**
 * Runs `script` in nbdsh connected to the volume; each `step(name, f)` prints its time.
 * The steps that finished are returned; a step that fails or outlasts the timeout fails
 * the test with its name.
 */
async function nbdsh(script: string): Promise<{ step: string; ms: number }[]> {
  const prelude = `
import json, time, nbd
def step(name, f):
    started = time.monotonic()
    try:
        f()
    except Exception as error:
        print(json.dumps({"step": name, "error": str(error)}), flush=True)
        raise SystemExit(1)
    print(json.dumps({"step": name, "ms": (time.monotonic() - started) * 1000}), flush=True)
def check(ok):
    if not ok:
        raise Exception("read other bytes than written")
`;
  // nbdsh is `python3 -m nbd`, with the Python that has libnbd's bindings.
  const child = spawn(libnbdPython, ["-m", "nbd", "-u", url, "-c", prelude + script], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout.on("data", (chunk) => {
    output += chunk;
  });
  child.stderr.on("data", (chunk) => {
    output += chunk;
  });
  let killed = false;
  const timer = setTimeout(() => {
    killed = true;
    child.kill("SIGKILL");
  }, clientTimeoutMs);
  const code = await new Promise<number | null>((resolve) => child.once("close", resolve));
  clearTimeout(timer);
  const lines = output
    .split("\n")
    .filter((line) => line.startsWith("{"))
    .map((line) => JSON.parse(line) as { step: string; ms: number; error?: string });
  const done = lines.filter((line) => line.error === undefined);
  const failed = lines.find((line) => line.error !== undefined);
  if (failed !== undefined) throw new Error(`nbdsh: ${failed.step} failed: ${failed.error}`);
  if (killed) {
    throw new Error(
      `nbdsh did not finish within ${clientTimeoutMs} ms; the steps done: ${JSON.stringify(done)}`,
    );
  }
  if (code !== 0) throw new Error(`nbdsh exited with ${code}: ${output}`);
  return done;
}

test.skipIf(!hasLibnbd())(
  "with one of two sleds dead, a write then FLUSH, and a FUA write, answer at once",
  async () => {
    const healthy = await qemuIo(["write -P 0x11 0 64k", "flush"]);
    expect(healthy.output).toContain("wrote 65536/65536 bytes");

    await cluster.cluster.kill("sled-2", "SIGKILL");
    await waitFor("sled-2 declared dead", async () => {
      const status = await cluster.bus.request(subjects.coordinator.build(), {
        type: "cluster.status.v1",
      });
      const sled = status.services.find((service) => service.id === "sled-2");
      return sled?.healthy === false ? true : undefined;
    });

    // nbdsh (libnbd), step by step, so that a failure names the step (qemu-io flushes
    // when it closes the image, which would hide which request waited).
    const steps = await nbdsh(`
step("write", lambda: h.pwrite(b"\\x61" * 65536, 0))
step("FLUSH", lambda: h.flush())
step("FUA write", lambda: h.pwrite(b"\\x62" * 65536, 65536, nbd.CMD_FLAG_FUA))
step("write", lambda: h.pwrite(b"\\x63" * 65536, 131072))
step("FLUSH", lambda: h.flush())
step("read", lambda: check(h.pread(3 * 65536, 0) == b"\\x61" * 65536 + b"\\x62" * 65536 + b"\\x63" * 65536))
`);
    process.stdout.write(
      `nbd flush with one of two sleds dead: ${steps.map((step) => `${step.step} ${step.ms.toFixed(0)} ms`).join(", ")} (qemu-io write + FLUSH with both sleds: ${healthy.elapsedMs} ms)\n`,
    );
    expect(steps.map((step) => step.step)).toEqual([
      "write",
      "FLUSH",
      "FUA write",
      "write",
      "FLUSH",
      "read",
    ]);
  },
);
