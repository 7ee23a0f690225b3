// One sled alone, as a real process on real device files through a real nats-server:
// the CPU it spends per `sled.chunk.read-many.v1` of 4 KiB ranges, from the page cache.
// Writes `chunks` chunks of 4 MiB, then for each load `INFLIGHTxRANGES` keeps, for
// `seconds`, INFLIGHT read-many requests out, each of RANGES random block-aligned 4 KiB
// ranges of random chunks, and reads the
// sled's CPU time (utime + stime of /proc/<pid>/stat, every thread) around it. The sled
// is the only process measured, so the figure does not move with the client's load; the
// machine's load average is printed beside it. The data directory is deleted afterwards.
//
//   node --import tsx bench/sled-reads.ts [seconds=10] [loads=1x1,2x2,8x2] [chunks=32] [via=nats]
//
// `via` is `nats` (requests through nats-server) or `links` (over a link to the sled,
// as head nodes send them: the client enables links of scope `node`).
//
// Looking closer (each costs CPU, so take figures from runs without):
// - BALLAST_BENCH_PROFILE_DIR=DIR: a V8 CPU profile of the sled over each load
//   (DIR/<load>.cpuprofile, via bench/cpu-profile.cjs; the sled then runs through tsx so
//   that frames name .ts files). Its samples are wall time: a syscall that wakes another
//   thread (a socket write, Atomics.notify) collects the time the sled waits preempted.
// - BALLAST_BENCH_PERF=PREFIX: `perf record -g` of the sled over each load
//   (PREFIX-<load>.data; the sled runs with --perf-basic-prof), CPU time, kernel included.
// - BALLAST_BENCH_THREADS=1: each thread's user and system CPU per request (/proc).

import { type ChildProcess, spawn } from "node:child_process";
import { mkdir, readdir, readFile, rename } from "node:fs/promises";
import { loadavg } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { subjects } from "@ballast/protocol";
import { startTestCluster } from "../test/support/cluster.ts";
import { cpuSeconds } from "./cpu-time.ts";

const mebibyte = 1024 * 1024;
const chunkBytes = 4 * mebibyte;
const rangeBytes = 4096;
const clockTicksPerSecond = 100;
const seconds = Number(process.argv[2] ?? 10);
const loads = (process.argv[3] ?? "1x1,2x2,8x2").split(",").map((load) => {
  const [inflight, ranges] = load.split("x").map(Number);
  if (!Number.isInteger(inflight) || !Number.isInteger(ranges) || inflight! < 1 || ranges! < 1) {
    throw new Error(`a load is INFLIGHTxRANGES, two whole numbers, not ${JSON.stringify(load)}`);
  }
  return { inflight: inflight!, ranges: ranges! };
});
const chunks = Number(process.argv[4] ?? 32);
const via = process.argv[5] ?? "nats";
if (via !== "nats" && via !== "links") throw new Error(`via is nats or links, not ${via}`);
const owner = { volume: "bench", partition: 0 };

/** Each thread's name and its user and system ticks so far. */
async function threadTicks(pid: number): Promise<Map<string, [number, number]>> {
  const threads = new Map<string, [number, number]>();
  for (const tid of await readdir(`/proc/${pid}/task`)) {
    const stat = await readFile(`/proc/${pid}/task/${tid}/stat`, "utf8").catch(() => "");
    if (stat === "") continue;
    const name = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
    const fields = stat.split(") ")[1]!.split(" ");
    threads.set(`${name}#${tid}`, [Number(fields[11]), Number(fields[12])]);
  }
  return threads;
}

const profileDir = process.env.BALLAST_BENCH_PROFILE_DIR;
if (profileDir !== undefined) await mkdir(profileDir, { recursive: true });
const cluster = await startTestCluster({
  sleds: 1,
  ...(profileDir === undefined ? {} : { runner: "tsx" as const }),
  env: {
    // As the services run in a deployment (and in bench:write): not the tests' debug.
    BALLAST_LOG_LEVEL: "warn",
    BALLAST_SLED_DEVICES: "1",
    BALLAST_SLED_DEVICE_BYTES: String(256 * mebibyte),
    ...(profileDir === undefined
      ? {}
      : {
          NODE_OPTIONS: `--require ${fileURLToPath(new URL("./cpu-profile.cjs", import.meta.url))}`,
          BALLAST_BENCH_PROFILE_DIR: profileDir,
        }),
  },
});
try {
  if (via === "links") cluster.bus.enableLinks(["node"]);
  const inbox = subjects.node.build("sled", "sled-1");
  const pid = cluster.cluster.pid("sled-1");
  const data = new Uint8Array(chunkBytes).map((_, at) => (at * 31) & 0xff);
  for (let chunk = 0; chunk < chunks; chunk++) {
    await cluster.bus.request(
      inbox,
      { type: "sled.chunk.write.v1", owner, chunkId: `c${chunk}`, data },
      { deadlineMs: 30_000 },
    );
  }
  const readMany = (ranges: number) =>
    cluster.bus.request(
      inbox,
      {
        type: "sled.chunk.read-many.v1",
        owner,
        reads: Array.from({ length: ranges }, () => ({
          chunkId: `c${Math.floor(Math.random() * chunks)}`,
          offset: Math.floor(Math.random() * (chunkBytes / rangeBytes)) * rangeBytes,
          length: rangeBytes,
        })),
      },
      { deadlineMs: 30_000 },
    );
  // A warm-up: every chunk's CRC table in the sled's cache, the code paths compiled.
  for (let round = 0; round < 200; round++) await readMany(2);
  if (via === "links" && cluster.bus.linkStats().link.requests === 0) {
    throw new Error("no request went over a link: is the sled taking links?");
  }
  for (const { inflight, ranges } of loads) {
    if (profileDir !== undefined) process.kill(pid, "SIGWINCH");
    const perfOut = process.env.BALLAST_BENCH_PERF;
    const perf: ChildProcess | undefined =
      perfOut === undefined
        ? undefined
        : spawn(
            "perf",
            [
              "record",
              "-F",
              "2000",
              "-g",
              "-p",
              String(pid),
              "-o",
              `${perfOut}-${inflight}x${ranges}.data`,
            ],
            { stdio: "ignore" },
          );
    if (perf !== undefined) await new Promise((resolve) => setTimeout(resolve, 500));
    const threadsBefore = process.env.BALLAST_BENCH_THREADS ? await threadTicks(pid) : undefined;
    const cpuBefore = await cpuSeconds(pid);
    const started = performance.now();
    const endMs = started + seconds * 1000;
    let requests = 0;
    await Promise.all(
      Array.from({ length: inflight }, async () => {
        while (performance.now() < endMs) {
          await readMany(ranges);
          requests++;
        }
      }),
    );
    const elapsedS = (performance.now() - started) / 1000;
    if (perf !== undefined) {
      perf.kill("SIGINT");
      await new Promise((resolve) => perf.once("exit", resolve));
    }
    const cpuUs = ((await cpuSeconds(pid)) - cpuBefore) * 1e6;
    if (threadsBefore !== undefined) {
      for (const [name, [user, system]] of await threadTicks(pid)) {
        const [userBefore, systemBefore] = threadsBefore.get(name) ?? [0, 0];
        const perRequest = (ticks: number) =>
          ((ticks * 1e6) / clockTicksPerSecond / requests).toFixed(1);
        if (user + system > userBefore + systemBefore) {
          console.log(
            `  ${name}: user ${perRequest(user - userBefore)} system ${perRequest(system - systemBefore)} µs per request`,
          );
        }
      }
    }
    if (profileDir !== undefined) {
      process.kill(pid, "SIGWINCH");
      // cpu-profile.cjs writes DIR/<pid>.cpuprofile: named by load here.
      const written = join(profileDir, `${pid}.cpuprofile`);
      for (let tries = 0; tries < 50; tries++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        const moved = await rename(written, join(profileDir, `${inflight}x${ranges}.cpuprofile`))
          .then(() => true)
          .catch(() => false);
        if (moved) break;
      }
    }
    console.log(
      `${inflight} in flight, ${ranges} ranges: ${Math.round(requests / elapsedS)} requests/s,` +
        ` sled ${(cpuUs / requests).toFixed(1)} µs CPU per request,` +
        ` ${(cpuUs / requests / ranges).toFixed(1)} per range, via ${via}, load ${loadavg()[0]!.toFixed(1)}`,
    );
  }
} finally {
  await cluster.stop();
}
