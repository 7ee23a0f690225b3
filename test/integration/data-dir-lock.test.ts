// One process per data directory, on real processes: a second sled or head node started
// on the directory of a running one (the same node id, so the identity file lets it in)
// is refused at start with the holder named, exit code 2, before it touches a file; the
// running one never notices. Without the lock both ran: two sleds allocating in one set
// of device files, two head nodes taking sessions from one session file.

import { spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { serviceEntry } from "@ballast/cli";
import { type ServiceKind, subjects } from "@ballast/protocol";
import { afterAll, beforeAll, expect, test } from "vitest";
import { startTestCluster, type TestCluster, testEnv } from "../support/cluster.ts";

/** Longer than any start that is refused at its data directory; a start that runs on is killed. */
const refusalWaitMs = 30_000;
const tsx = import.meta.resolve("tsx");
let cluster: TestCluster;

beforeAll(async () => {
  cluster = await startTestCluster({ sleds: 1, headNodes: 1 });
});
afterAll(() => cluster?.stop());

/** Starts a second `kind` `id` on the running one's data directory; its exit and stderr. */
async function startSecond(kind: ServiceKind, id: string) {
  const child = spawn(
    process.execPath,
    [
      "--import",
      tsx,
      serviceEntry(kind),
      "--id",
      id,
      "--data-dir",
      join(cluster.dataDir, id),
      "--nats",
      cluster.cluster.natsUrl,
    ],
    {
      env: {
        ...process.env,
        ...testEnv,
        BALLAST_NATS_CREDS: cluster.cluster.credentialsFile(kind)!,
      },
      stdio: ["ignore", "ignore", "pipe"],
    },
  );
  let stderr = "";
  child.stderr?.on("data", (chunk) => {
    stderr += chunk;
  });
  const timer = setTimeout(() => child.kill("SIGKILL"), refusalWaitMs);
  const code = await new Promise<number | string>((resolve) =>
    child.once("exit", (exitCode, signal) => resolve(exitCode ?? signal ?? "unknown")),
  );
  clearTimeout(timer);
  return { code, stderr };
}

function chunk(seed: number): Uint8Array<ArrayBuffer> {
  return Uint8Array.from({ length: 64 * 1024 }, (_, index) => (index * 31 + seed) & 0xff);
}

test("a second sled on a running sled's directory exits with the holder named; the first serves on", async () => {
  const inbox = subjects.node.build("sled", "sled-1");
  const owner = { volume: "vol-lock", partition: 0 };
  const before = chunk(1);
  await cluster.bus.request(inbox, {
    type: "sled.chunk.write.v1",
    owner,
    chunkId: "before",
    data: before,
  });
  const pid = cluster.cluster.pid("sled-1");
  const second = await startSecond("sled", "sled-1");
  expect(second.code).toBe(2);
  expect(second.stderr).toContain(
    `ballast sled: data directory ${join(cluster.dataDir, "sled-1")} is in use by sled sled-1 (pid ${pid}); one process per data directory`,
  );
  // The first never noticed: same process, its chunk intact, and it takes new writes.
  expect(cluster.cluster.isRunning("sled-1")).toBe(true);
  const info = await cluster.bus.request(inbox, { type: "node.info.v1" });
  expect(info.pid).toBe(pid);
  const after = chunk(2);
  await cluster.bus.request(inbox, {
    type: "sled.chunk.write.v1",
    owner,
    chunkId: "after",
    data: after,
  });
  for (const [chunkId, data] of [
    ["before", before],
    ["after", after],
  ] as const) {
    const read = await cluster.bus.request(inbox, {
      type: "sled.chunk.read.v1",
      owner,
      chunkId,
      offset: 0,
      length: data.byteLength,
    });
    expect(Buffer.from(read.data).equals(Buffer.from(data))).toBe(true);
  }
});

test("a second head node on a running head node's directory exits before taking a session", async () => {
  const sessionFile = join(cluster.dataDir, "head-1", "session");
  const session = await readFile(sessionFile);
  const pid = cluster.cluster.pid("head-1");
  const second = await startSecond("headnode", "head-1");
  expect(second.code).toBe(2);
  expect(second.stderr).toContain(`is in use by headnode head-1 (pid ${pid})`);
  expect((await readFile(sessionFile)).equals(session)).toBe(true);
  expect(cluster.cluster.isRunning("head-1")).toBe(true);
  const info = await cluster.bus.request(subjects.node.build("headnode", "head-1"), {
    type: "node.info.v1",
  });
  expect(info.pid).toBe(pid);
});
