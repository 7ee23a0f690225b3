// Resizing a volume on real processes, through a real NBD client (nbdsh, libnbd's
// Python shell) and the real `ballast` command (issue 16). A grow is online: a writer
// keeps writing through the gateway while the volume grows, and nothing it wrote is lost;
// a new NBD connection sees the new size and can write and read past the old end. A
// shrink is refused without --allow-shrink; with it the size is smaller, and after
// growing back the re-grown tail reads zeros, not the data that was there.

import { spawn } from "node:child_process";
import { ErrorCode, subjects } from "@ballast/protocol";
import { afterAll, beforeAll, expect, test } from "vitest";
import { runCli } from "../support/cli.ts";
import { startTestCluster, type TestCluster } from "../support/cluster.ts";
import { describeVolume, gatewayUrl, hasLibnbd, libnbdPython } from "../support/faults.ts";

const mebibyte = 1024 * 1024;
const name = "grows";
let cluster: TestCluster;
let url: string;

beforeAll(async () => {
  cluster = await startTestCluster({ headNodes: 2, sleds: 2, gateways: 1, nbdPortFirst: 0 });
  await cluster.bus.request(subjects.coordinator.build(), {
    type: "volume.create.v1",
    name,
    sizeBytes: 2 * mebibyte,
    partitionBytes: mebibyte,
  });
  url = await gatewayUrl(cluster.bus, "gateway-1", name);
}, 60_000);
afterAll(() => cluster?.stop());

/** Each step's deadline: a failure or a hang fails the test, never hangs it. */
const clientTimeoutMs = 30_000;

/**
 * Python run by nbdsh on one new connection: `pattern(offset, length, seed)` is the
 * bytes the test writes, block by block, so that a block read back names its writer.
 */
const prelude = `
import json, time, nbd
block = 64 * 1024
def pattern(offset, length, seed):
    out = bytearray(length)
    for start in range(0, length, block):
        out[start:start + block] = bytes([((offset + start) // block * 7 + seed) % 251 + 1]) * block
    return bytes(out)
def say(**fields):
    print(json.dumps(fields), flush=True)
`;

/** Runs `script` in nbdsh on a new connection; returns the JSON lines it printed. */
async function nbdsh(script: string): Promise<Record<string, unknown>[]> {
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
  const timer = setTimeout(() => child.kill("SIGKILL"), clientTimeoutMs);
  const code = await new Promise<number | null>((resolve) => child.once("close", resolve));
  clearTimeout(timer);
  if (code !== 0) throw new Error(`nbdsh exited with ${code}: ${output}`);
  return output
    .split("\n")
    .filter((line) => line.startsWith("{"))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

function resize(sizeBytes: number, allowShrink?: boolean) {
  return cluster.bus.request(
    subjects.coordinatorAdmin.build(),
    { type: "volume.resize.v1", name, sizeBytes, ...(allowShrink ? { allowShrink } : {}) },
    { deadlineMs: 30_000 },
  );
}

/** Checks on a new connection: its size, and each range's bytes (a seed, or zeros). */
function verify(sizeBytes: number, ranges: [number, number, number | "zeros"][]) {
  return nbdsh(`
say(size=h.get_size())
for offset, length, seed in ${JSON.stringify(ranges)}:
    data = h.pread(length, offset)
    expected = bytes(length) if seed == "zeros" else pattern(offset, length, seed)
    bad = next((i for i in range(0, length, 512) if data[i:i + 512] != expected[i:i + 512]), None)
    say(offset=offset, length=length, bad=bad)
`).then((lines) => {
    expect(lines[0]).toEqual({ size: sizeBytes });
    // The first mismatching sector of each range, if any: none.
    expect(lines.slice(1)).toEqual(
      ranges.map(([offset, length]) => ({ offset, length, bad: null })),
    );
  });
}

test.skipIf(!hasLibnbd())(
  "grow under writes loses nothing; a new connection sees the new size and uses it",
  async () => {
    // The writer rewrites the whole volume, round after round, on one connection, until
    // it has done a round that began after the resize answered (the test creates the
    // marker file then); it says which round it finished last.
    const marker = `${cluster.dataDir}/resized`;
    const writing = nbdsh(`
import os
size = h.get_size()
rounds = 0
grown_seen = False
while True:
    grown_seen = os.path.exists(${JSON.stringify(marker)})
    for offset in range(0, size, block):
        h.pwrite(pattern(offset, block, rounds), offset)
    h.flush()
    say(round=rounds, size=size)
    rounds += 1
    if grown_seen or rounds > 2000:
        break
`);
    // Let a few rounds run, then grow while the writer writes.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const grown = await resize(6 * mebibyte);
    await import("node:fs/promises").then((fs) => fs.writeFile(marker, ""));
    expect(grown.sizeBytes).toBe(6 * mebibyte);
    expect(grown.partitions.map((p) => [p.partitionStart, p.partitionBytes])).toEqual([
      [0, mebibyte],
      [mebibyte, mebibyte],
      [2 * mebibyte, mebibyte],
      [3 * mebibyte, mebibyte],
      [4 * mebibyte, mebibyte],
      [5 * mebibyte, mebibyte],
    ]);
    const rounds = await writing;
    const last = rounds.at(-1)!;
    // The writer's connection kept the size it opened with; it wrote more than one
    // round, some of them while the resize ran.
    expect(last.size).toBe(2 * mebibyte);
    expect(rounds.length).toBeGreaterThan(1);
    const seed = last.round as number;

    // Everything the writer wrote last is there; the new bytes read as zeros.
    await verify(6 * mebibyte, [
      [0, 2 * mebibyte, seed],
      [2 * mebibyte, 4 * mebibyte, "zeros"],
    ]);
    // A new connection writes past the old end and reads it back.
    await nbdsh(`
h.pwrite(pattern(2 * 1048576, 4 * 1048576, 99), 2 * 1048576)
h.flush()
`);
    await verify(6 * mebibyte, [
      [0, 2 * mebibyte, seed],
      [2 * mebibyte, 4 * mebibyte, 99],
    ]);
    const described = await describeVolume(cluster.bus, name);
    expect(described.sizeBytes).toBe(6 * mebibyte);

    // A shrink without --allow-shrink is refused, and changes nothing.
    const dataDir = ["--nats", cluster.cluster.natsUrl];
    const refused = await runCli(["volume", "resize", name, "--size", "3MiB", ...dataDir]);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain("--allow-shrink");
    await expect(resize(3 * mebibyte)).rejects.toMatchObject({ code: ErrorCode.InvalidArgument });
    expect((await describeVolume(cluster.bus, name)).sizeBytes).toBe(6 * mebibyte);

    // With it, the volume is 3 MiB, and its first 3 MiB are as they were.
    const shrunk = await runCli([
      "volume",
      "resize",
      name,
      "--size",
      "3MiB",
      "--allow-shrink",
      ...dataDir,
    ]);
    expect(shrunk.stderr).toBe("");
    expect(shrunk.stdout).toContain(`resized volume ${name}`);
    expect(shrunk.code).toBe(0);
    await verify(3 * mebibyte, [
      [0, 2 * mebibyte, seed],
      [2 * mebibyte, mebibyte, 99],
    ]);

    // Grown back, the tail that was cut reads zeros, not what was written there.
    await resize(6 * mebibyte);
    await verify(6 * mebibyte, [
      [0, 2 * mebibyte, seed],
      [2 * mebibyte, mebibyte, 99],
      [3 * mebibyte, 3 * mebibyte, "zeros"],
    ]);
  },
  180_000,
);
