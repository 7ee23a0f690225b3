// A volume deleted and created again under its name while the gateway serves it, on
// real processes, through a real NBD client (libnbd, from Python). The gateway once kept
// a Volume per export after its connections closed, with nothing on it to find the
// deletion while idle; it now closes the Volume with the last connection, but a held
// connection still keeps the old one. The first connection after the re-creation must get
// the new volume, with its size and its zeroes, not "unknown export"; a connection
// held open across the re-creation must fail its I/O, saying the volume was deleted,
// and never touch the new volume.

import { type ChildProcess, spawn } from "node:child_process";
import { subjects } from "@ballast/protocol";
import { afterAll, beforeAll, expect, test } from "vitest";
import { startTestCluster, type TestCluster } from "../support/cluster.ts";
import { gatewayUrl, hasLibnbd, libnbdPython } from "../support/faults.ts";
import { logLinesContaining } from "../support/logs.ts";

const mebibyte = 1024 * 1024;
/** Sizes that tell the incarnations apart from the NBD side. */
const oldBytes = 8 * mebibyte;
const newBytes = 16 * mebibyte;
const partitionBytes = 8 * mebibyte;
/** Each NBD client's deadline: a failure or a hang fails the test, never stalls it. */
const clientTimeoutMs = 30_000;
let cluster: TestCluster;

beforeAll(async () => {
  cluster = await startTestCluster({ headNodes: 2, sleds: 2, gateways: 1, nbdPortFirst: 0 });
}, 60_000);
afterAll(() => cluster?.stop());

function create(name: string, sizeBytes: number) {
  return cluster.bus.request(subjects.coordinator.build(), {
    type: "volume.create.v1",
    name,
    sizeBytes,
    partitionBytes,
    replicaCount: 2,
  });
}

/** Deletes `name`; `force`: while a client is attached, on purpose. */
async function remove(name: string, force = false) {
  const deleted = await cluster.bus.request(subjects.coordinatorAdmin.build(), {
    type: "volume.delete.v1",
    name,
    ...(force ? { force: true } : {}),
  });
  expect(deleted).toEqual({ name, deleted: true });
}

/** Python for every client: `say` prints one JSON line, `zeroes` checks a read. */
const prelude = `
import json, sys, nbd
def say(**fields):
    print(json.dumps(fields), flush=True)
def zeroes(data):
    return data == bytes(len(data))
`;

/** Runs `script` in nbdsh on one new connection to `url`; returns the lines it said. */
async function nbdsh(url: string, script: string): Promise<Record<string, unknown>[]> {
  const child = spawn(libnbdPython, ["-m", "nbd", "-u", url, "-c", prelude + script], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  const output = collect(child);
  const timer = setTimeout(() => child.kill("SIGKILL"), clientTimeoutMs);
  const code = await new Promise<number | null>((resolve) => child.once("close", resolve));
  clearTimeout(timer);
  // The first connection is the one under test: its failure to open is the defect.
  if (code !== 0) throw new Error(`nbdsh on ${url} exited with ${code}: ${output.text}`);
  return saidLines(output.text);
}

/** Everything `child` writes to stdout and stderr, as it arrives. */
function collect(child: ChildProcess): { text: string } {
  const output = { text: "" };
  child.stdout?.on("data", (chunk) => {
    output.text += chunk;
  });
  child.stderr?.on("data", (chunk) => {
    output.text += chunk;
  });
  return output;
}

function saidLines(text: string): Record<string, unknown>[] {
  return text
    .split("\n")
    .filter((line) => line.startsWith("{"))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

/** A new connection's size, and whether [0, `length`) reads as zeroes. */
function sizeAndZeroes(url: string, length: number) {
  return nbdsh(
    url,
    `say(size=h.get_size(), zeroes=zeroes(h.pread(${length}, 0)))
`,
  );
}

test.skipIf(!hasLibnbd())(
  "the first connection after a delete and create while idle opens the new volume",
  async () => {
    const name = "idle";
    const url = await gatewayUrl(cluster.bus, "gateway-1", name);
    await create(name, oldBytes);
    // One connection writes and goes (the gateway closes the export's Volume with it).
    expect(
      await nbdsh(
        url,
        `h.pwrite(b"\\xa5" * 65536, 0)
h.flush()
say(size=h.get_size())
`,
      ),
    ).toEqual([{ size: oldBytes }]);

    await remove(name);
    await create(name, newBytes);

    // The very first connection since: the old code answered NBD_OPT_GO with "unknown
    // export" here (only a second connection got through).
    expect(await sizeAndZeroes(url, 65536)).toEqual([{ size: newBytes, zeroes: true }]);
  },
);

test.skipIf(!hasLibnbd())(
  "a connection held across the delete and create fails clearly; the first new one opens the new volume",
  async () => {
    const name = "held";
    const url = await gatewayUrl(cluster.bus, "gateway-1", name);
    await create(name, oldBytes);
    // A client that stays connected: it writes, says so, and waits for a line on stdin
    // before it reads and writes again, each outcome said.
    const held = spawn(
      libnbdPython,
      [
        "-c",
        `${prelude}
h = nbd.NBD()
h.connect_uri(${JSON.stringify(url)})
h.pwrite(b"\\x5a" * 65536, 0)
h.flush()
say(step="ready", size=h.get_size())
sys.stdin.readline()
def attempt(step, f):
    try:
        f()
        say(step=step, ok=True)
    except nbd.Error as error:
        say(step=step, ok=False, errno=error.errno)
attempt("read", lambda: h.pread(4096, 0))
attempt("write", lambda: h.pwrite(b"\\x5b" * 65536, 65536))
`,
      ],
      { stdio: ["pipe", "pipe", "pipe"] },
    );
    const output = collect(held);
    const exited = new Promise<number | null>((resolve) => held.once("close", resolve));
    const timer = setTimeout(() => held.kill("SIGKILL"), clientTimeoutMs);
    try {
      await waitForLine(output, "ready", exited);

      await remove(name, true);
      await create(name, newBytes);
      expect(await sizeAndZeroes(url, 65536)).toEqual([{ size: newBytes, zeroes: true }]);

      held.stdin.end("go\n");
      expect(await exited, output.text).toBe(0);
      expect(saidLines(output.text)).toEqual([
        { step: "ready", size: oldBytes },
        // EIO: its disk is gone, and the new volume's bytes are not its own.
        { step: "read", ok: false, errno: "EIO" },
        { step: "write", ok: false, errno: "EIO" },
      ]);
    } finally {
      clearTimeout(timer);
      held.kill("SIGKILL");
    }
    // The held connection's write never reached the new volume.
    expect(await sizeAndZeroes(url, 2 * 65536)).toEqual([{ size: newBytes, zeroes: true }]);
    // And the gateway logged why each of its requests failed: the volume was deleted.
    const failed = (await logLinesContaining(cluster.dataDir, ['"request failed"'])).filter(
      (hit) => hit.file === "gateway-1.log" && hit.line.includes(name),
    );
    expect(failed.map((hit) => hit.line)).toHaveLength(2);
    for (const hit of failed) expect(hit.line).toContain("was deleted while open");
  },
);

/** Waits until the held client has said `step` (or fails if it exits first). */
async function waitForLine(output: { text: string }, step: string, exited: Promise<unknown>) {
  let done = false;
  void exited.then(() => {
    done = true;
  });
  while (!saidLines(output.text).some((line) => line.step === step)) {
    if (done) throw new Error(`the held client exited before it said ${step}: ${output.text}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
