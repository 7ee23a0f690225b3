// The write-path benchmark (issue 14, "a faster write path, found by profiling"): starts a
// local cluster (1 coordinator, 3 head nodes, 3 sleds, 1 gateway), creates one volume of
// one partition with 2 replicas, and runs fio (ioengine=nbd) 4 KiB random writes through
// the gateway at QD1 and QD32 (`--jobs` picks others: reads, 1 MiB sequential I/O).
// Around each job it reads every process's CPU time (utime + stime from
// /proc/<pid>/stat, nats-server included), so it prints CPU per I/O per process: on a
// shared machine that is a much steadier figure than IOPS. Before the first read job
// the whole volume is written once (1 MiB sequential writes) and flushed to sleds, so
// that reads find data, as a used disk has, and not never-written zeros.
// With --profile DIR it also records a V8 CPU profile of each service over each job
// (DIR/<job>/<pid>.cpuprofile, via bench/cpu-profile.cjs; the profiler costs CPU, so
// take the figures from a run without it). --rounds N runs the list of jobs N times.
// With --gc DIR it counts each service's garbage collections by kind over each job and
// prints them (via bench/gc-count.cjs; DIR/<job>-<round>-<role>.gc.json).
// With --alloc DIR it samples each service's JS heap allocations over each job and
// prints the bytes allocated per I/O per process (via bench/alloc-profile.cjs;
// DIR/<job>-<round>-<role>.heapprofile): what the young generation collects per write,
// steadier under load than CPU time.
// With --latency DIR it records, around each job, the events of the hooks of
// bench/latency-hooks.patch (apply it first: `git apply bench/latency-hooks.patch`) in
// every service (DIR/<job>-<round>/<role>.json, via bench/latency-trace.cjs);
// bench/latency-breakdown.ts turns a QD1 job's files into time per stage of a write.
//
//   npm run bench:write                      8 s per job, one round
//   npm run bench:write -- --seconds 10 --rounds 3 --json-out write.json
//   npm run bench:write -- --jobs randwrite-qd32 --warmup 15   CPU per write with the JIT settled
//   npm run bench:write -- --profile /tmp/prof
//   npm run bench:write -- --gc /tmp/gc     garbage collections per process and kind
//   npm run bench:write -- --alloc /tmp/al  JS heap bytes allocated per I/O per process
//   npm run bench:write -- --jobs randread-qd32,read-1m-qd8
//   npm run bench:write -- --jobs randwrite-qd1 --latency /tmp/lat   (hooks applied)
//   npm run bench:write -- --jobs randread-qd32 --volume-mib 512 --cache-mib 256
//
// Read jobs also print the primary's chunk cache hits and misses over the job (from its
// `node.info.v1` details). `--volume-mib` sets the volume's size (256 by default;
// `npm run bench` uses 512), `--cache-mib` the head nodes'
// chunk cache (BALLAST_CHUNK_CACHE_BYTES).
//
// A job is `randwrite-qdN`, `randread-qdN` (4 KiB random), `write-1m-qdN` or
// `read-1m-qdN` (1 MiB sequential), N the queue depth.

import { spawn } from "node:child_process";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { loadavg } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { LocalCluster } from "@ballast/cli";
import { subjects } from "@ballast/protocol";
import {
  connectTestBus,
  temporaryDirectory,
  testPasswords,
  waitFor,
  waitUntilHealthy,
} from "../test/support/cluster.ts";
import { startWiretap } from "./wiretap.ts";

const mebibyte = 1024 * 1024;
/**
 * The volume's default size (`--volume-mib`): one partition (so one primary and one
 * secondary carry every write), large enough that random writes seldom overwrite within
 * a run (a small one makes the run mostly compaction). `npm run bench` uses 512 MiB.
 */
const volumeMibDefault = 256;
/** The volume's size (`--volume-mib`), set once at start. */
let volumeBytes = volumeMibDefault * mebibyte;
/** Clock ticks per second of /proc/<pid>/stat times (USER_HZ: 100 on Linux). */
const clockTicksPerSecond = 100;

/**
 * Seconds of QD32 random writes before the first job (`--warmup`). Three leave the JIT
 * busy: a perf profile 2 s into the next QD32 job found V8's compiler threads at 22 to
 * 26 % of the primary's, secondary's and gateway's CPU, and 5 to 9 % 20 s in; the
 * first of several 8 s rounds costs about 10 % more CPU per write than the next.
 * Comparisons of CPU per write want `--warmup 15` or the later rounds of `--rounds`.
 */
const warmupSecondsDefault = 3;

/** The jobs `--jobs` defaults to: the write path's two. */
const defaultJobs = "randwrite-qd1,randwrite-qd32";

interface Job {
  name: string;
  /** fio's `rw`. */
  rw: "randwrite" | "randread" | "write" | "read";
  blockBytes: number;
  iodepth: number;
}

/** Parses a job name (see the header); throws on one it does not know. */
function parseJob(name: string): Job {
  const match = /^(randwrite|randread|write-1m|read-1m)-qd([1-9][0-9]*)$/.exec(name);
  if (match === null) {
    throw new Error(
      `unknown job ${JSON.stringify(name)}: randwrite-qdN, randread-qdN, write-1m-qdN or read-1m-qdN`,
    );
  }
  const kind = match[1]!;
  const iodepth = Number(match[2]);
  if (kind === "write-1m") return { name, rw: "write", blockBytes: mebibyte, iodepth };
  if (kind === "read-1m") return { name, rw: "read", blockBytes: mebibyte, iodepth };
  return { name, rw: kind as Job["rw"], blockBytes: 4096, iodepth };
}

interface JobRun {
  job: string;
  iodepth: number;
  /** I/Os fio completed (reads or writes, as the job does). */
  writes: number;
  seconds: number;
  iops: number;
  p50Us: number;
  p99Us: number;
  /** CPU microseconds per write, by process (the primary and secondary by role). */
  cpuUsPerWrite: Record<string, number>;
  /** The part of it spent in the kernel (system time). */
  systemUsPerWrite: Record<string, number>;
  /**
   * Read and write system calls per I/O, by process (socket reads and writes, a sled's
   * file reads, the journal's writes): what each reply or request costs in the kernel.
   */
  syscallsPerIo: Record<string, { reads: number; writes: number }>;
  /** Minor page faults per I/O, by process (`cpuSeconds`). */
  faultsPerIo: Record<string, number>;
  /** CPU per write less what the process burns idle over the same time. */
  netUsPerWrite: Record<string, number>;
  totalNetUsPerWrite: number;
  totalCpuUsPerWrite: number;
  load: number;
  /**
   * The primary's chunk cache over the job (`node.info.v1` details): chunk ranges
   * answered from it and not, and 4 KiB blocks evicted.
   */
  cache?: CacheCounts;
}

interface CacheCounts {
  hits: number;
  misses: number;
  evictions: number;
}

/**
 * Messages a process received over links so far, by kind and scope (`node.info.v1`'s
 * `links.received`): with links on, the write path's requests, notes and acknowledgements
 * go there and not through nats-server, so a NATS wiretap does not see them.
 */
async function linkReceived(
  bus: Awaited<ReturnType<typeof connectTestBus>>,
  node: string,
): Promise<Map<string, number>> {
  const info = await bus.bus
    .request(
      subjects.node.build("headnode", node),
      { type: "node.info.v1" },
      { deadlineMs: 10_000 },
    )
    .catch(() => undefined);
  const received = (info?.details.links as { received?: Record<string, unknown> } | undefined)
    ?.received;
  const counts = new Map<string, number>();
  for (const kind of ["requests", "publishes"]) {
    const byScope = received?.[kind];
    if (typeof byScope !== "object" || byScope === null) continue;
    for (const [scope, count] of Object.entries(byScope)) {
      if (typeof count === "number") counts.set(`${scope} ${kind}`, count);
    }
  }
  return counts;
}

/** The bytes a sampling heap profile's tree (`HeapProfiler.stopSampling`) allocated. */
interface AllocationNode {
  selfSize: number;
  children: AllocationNode[];
}
function allocatedBytes(node: AllocationNode): number {
  let bytes = node.selfSize;
  for (const child of node.children) bytes += allocatedBytes(child);
  return bytes;
}

/** The chunk cache counters a head node describes in `node.info.v1`, if it does. */
async function cacheCounts(
  bus: Awaited<ReturnType<typeof connectTestBus>>,
  node: string,
): Promise<CacheCounts | undefined> {
  const info = await bus.bus
    .request(
      subjects.node.build("headnode", node),
      { type: "node.info.v1" },
      { deadlineMs: 10_000 },
    )
    .catch(() => undefined);
  const stats = info?.details.chunkCache as Partial<CacheCounts> | undefined;
  if (typeof stats?.hits !== "number" || typeof stats.misses !== "number") return undefined;
  return { hits: stats.hits, misses: stats.misses, evictions: stats.evictions ?? 0 };
}

/** Read and write system calls a process made (all its threads), from /proc/<pid>/io. */
async function syscalls(pid: number): Promise<{ reads: number; writes: number }> {
  const text = await readFile(`/proc/${pid}/io`, "utf8").catch(() => "");
  const field = (name: string) => Number(new RegExp(`^${name}: (\\d+)$`, "m").exec(text)?.[1] ?? 0);
  return { reads: field("syscr"), writes: field("syscw") };
}

/**
 * User and system CPU seconds of a process, and its minor page faults (memory it touched
 * for the first time, or again after giving it back: each costs a trip into the kernel
 * and, for fresh memory, zeroing a page).
 */
async function cpuSeconds(
  pid: number,
): Promise<{ user: number; system: number; minorFaults: number }> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return {
    user: Number(fields[11]) / clockTicksPerSecond,
    system: Number(fields[12]) / clockTicksPerSecond,
    minorFaults: Number(fields[7]),
  };
}

function fio(args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn("fio", args, { stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (chunk) => {
      output += chunk;
    });
    child.stderr.on("data", (chunk) => {
      output += chunk;
    });
    child.once("error", reject);
    child.once("exit", (code) =>
      code === 0 ? resolve(output) : reject(new Error(`fio exited ${code}: ${output}`)),
    );
  });
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      seconds: { type: "string", default: "8" },
      rounds: { type: "string", default: "1" },
      warmup: { type: "string", default: String(warmupSecondsDefault) },
      profile: { type: "string" },
      latency: { type: "string" },
      gc: { type: "string" },
      alloc: { type: "string" },
      "count-messages": { type: "boolean", default: false },
      "json-out": { type: "string" },
      jobs: { type: "string", default: defaultJobs },
      "volume-mib": { type: "string", default: String(volumeMibDefault) },
      "cache-mib": { type: "string" },
    },
  });
  const volumeMib = Number(values["volume-mib"]);
  if (!Number.isInteger(volumeMib) || volumeMib < 64 || volumeMib > 1024) {
    throw new Error(
      `--volume-mib must be a whole number from 64 to 1024, not ${values["volume-mib"]}`,
    );
  }
  volumeBytes = volumeMib * mebibyte;
  const cacheMib = values["cache-mib"] === undefined ? undefined : Number(values["cache-mib"]);
  if (cacheMib !== undefined && (!Number.isInteger(cacheMib) || cacheMib < 0)) {
    throw new Error(`--cache-mib must be a whole number of MiB, not ${values["cache-mib"]}`);
  }
  const jobs = values.jobs.split(",").map((name) => parseJob(name.trim()));
  const seconds = Number(values.seconds);
  const rounds = Number(values.rounds);
  const warmupSeconds = Number(values.warmup);
  if (!Number.isInteger(warmupSeconds) || warmupSeconds < 1) {
    throw new Error(`--warmup must be a whole number of seconds, at least 1, not ${values.warmup}`);
  }
  const profileDir = values.profile;
  const latencyDir = values.latency;
  const gcDir = values.gc;
  const allocDir = values.alloc;
  if ([latencyDir, profileDir, gcDir, allocDir].filter((dir) => dir !== undefined).length > 1) {
    throw new Error("--latency, --profile, --gc and --alloc all use SIGWINCH: give one of them");
  }
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const directory = await temporaryDirectory("ballast-wpath-");
  const nbdPort = 20000 + Math.floor(Math.random() * 20000);
  let cluster: LocalCluster | undefined;
  const runs: JobRun[] = [];
  try {
    cluster = await LocalCluster.start({
      dataDir: directory.path,
      coordinators: 1,
      headNodes: 3,
      sleds: 3,
      gateways: 1,
      nbdPortFirst: nbdPort,
      natsPasswords: testPasswords,
      // V8's profiles do not apply source maps: profiled services run through tsx, so
      // that frames name .ts files rather than one bundle.
      ...(profileDir === undefined ? {} : { runner: "tsx" as const }),
      env: {
        BALLAST_LOG_LEVEL: "warn",
        BALLAST_SLED_DEVICES: "1",
        // Room for the garbage of chained jobs: sleds get space back from overwritten
        // chunks only through the orphan sweep, a minute or more later (its grace), and
        // a 1 MiB write job writes about 170 MB of chunk copies a second. 512 MiB a sled
        // answered NoSpace in the random write job after an 8 s 1 MiB write job.
        BALLAST_SLED_DEVICE_BYTES: String(2048 * mebibyte),
        ...(cacheMib === undefined
          ? {}
          : { BALLAST_CHUNK_CACHE_BYTES: String(cacheMib * mebibyte) }),
        ...(latencyDir === undefined
          ? {}
          : {
              NODE_OPTIONS: `--require ${fileURLToPath(new URL("./latency-trace.cjs", import.meta.url))}`,
              BALLAST_BENCH_LATENCY_DIR: latencyDir,
            }),
        ...(profileDir === undefined
          ? {}
          : {
              NODE_OPTIONS: `--require ${fileURLToPath(new URL("./cpu-profile.cjs", import.meta.url))}`,
              BALLAST_BENCH_PROFILE_DIR: profileDir,
            }),
        ...(gcDir === undefined
          ? {}
          : {
              NODE_OPTIONS: `--require ${fileURLToPath(new URL("./gc-count.cjs", import.meta.url))}`,
              BALLAST_BENCH_GC_DIR: gcDir,
            }),
        ...(allocDir === undefined
          ? {}
          : {
              NODE_OPTIONS: `--require ${fileURLToPath(new URL("./alloc-profile.cjs", import.meta.url))}`,
              BALLAST_BENCH_ALLOC_DIR: allocDir,
            }),
      },
    });
    const bus = await connectTestBus(cluster.natsUrl);
    let primary = "";
    let secondary = "";
    try {
      await waitUntilHealthy(bus.bus, cluster.ids(), 60_000);
      await waitFor(
        "volume created",
        async () =>
          bus.bus
            .request(
              subjects.coordinator.build(),
              {
                type: "volume.create.v1",
                name: "bench",
                sizeBytes: volumeBytes,
                replicaCount: 2,
              },
              { deadlineMs: 15_000 },
            )
            .then(
              () => true,
              (error: { code?: string }) => (error.code === "AlreadyExists" ? true : undefined),
            ),
        60_000,
        500,
      );
      await waitFor(
        "full strength",
        async () => {
          const volume = await bus.bus.request(
            subjects.coordinator.build(),
            { type: "volume.describe.v1", name: "bench" },
            { deadlineMs: 10_000 },
          );
          const partition = volume.partitions[0];
          if (partition === undefined || partition.secondaries.length !== 1) return undefined;
          if (partition.learners.length > 0) return undefined;
          primary = partition.primary;
          secondary = partition.secondaries[0]!;
          return true;
        },
        60_000,
        500,
      );
    } finally {
      await bus.close();
    }
    const pids = new Map<string, number>();
    for (const record of cluster.records()) {
      const name =
        record.id === primary
          ? "primary"
          : record.id === secondary
            ? "secondary"
            : record.id.startsWith("head")
              ? "head (idle)"
              : record.id.startsWith("sled")
                ? `sled ${record.id}`
                : record.id;
      pids.set(name, record.pid);
    }
    const natsPid = cluster.natsServer?.child.pid;
    if (natsPid !== undefined) pids.set("nats-server", natsPid);
    const uri = `nbd://127.0.0.1:${nbdPort}/bench`;
    // --count-messages: a wiretap (wiretap.ts) counts messages per write by kind, as the
    // operator, on every subject it may read (it adds to nats-server's load, so take CPU
    // figures from a run without it).
    const tap = values["count-messages"] ? await connectTestBus(cluster.natsUrl) : undefined;
    const wiretap =
      tap === undefined
        ? undefined
        : startWiretap(tap.connection, (subject) => {
            const tokens = subject.split(".");
            return tokens[0] === "_INBOX" ? "reply" : tokens.slice(2, 4).join(".");
          });
    // The primary's chunk cache counters, read around each job (not counted in its CPU:
    // one request each side).
    const infoBus = await connectTestBus(cluster.natsUrl);
    // A warm-up: the first writes allocate chunks and JIT the path.
    await fio(jobArgs(uri, parseJob("randwrite-qd32"), warmupSeconds));
    if (jobs.some((job) => job.rw === "read" || job.rw === "randread")) {
      // Reads of a never-written volume are zeros the primary makes up: write it all,
      // then have its chunks flushed to sleds, so reads take the sled path.
      await fio([...jobArgs(uri, parseJob("write-1m-qd8"), 0), "--time_based=0"]);
      // The primary flushes to sleds every second or 8 MiB, each flush an op of its own
      // (so the flushed point stays below the commit point): wait until neither moves.
      const watcher = await connectTestBus(cluster.natsUrl);
      let last = "";
      try {
        await waitFor(
          "the volume flushed to sleds",
          async () => {
            const status = await watcher.bus.request(
              subjects.node.build("headnode", primary),
              { type: "headnode.replica.status.v1", volume: "bench", partition: 0 },
              { deadlineMs: 10_000 },
            );
            const now = `${status.flushedThroughOpNum}/${status.commitOpNum}`;
            const settled = now === last;
            last = now;
            return settled ? true : undefined;
          },
          120_000,
          2000,
        );
      } finally {
        await watcher.close();
      }
      log("prefilled the volume and flushed it to sleds");
    }
    // What each process burns with no I/O at all (ticks, heartbeats, reports), per
    // second: subtracted from each job, so that a slow QD1 run (few writes over the
    // same seconds) does not look as if each write cost more.
    const idleSeconds = 5;
    const idleBefore = new Map<string, { user: number; system: number }>();
    for (const [id, pid] of pids) idleBefore.set(id, await cpuSeconds(pid));
    const idleStarted = performance.now();
    await new Promise((resolve) => setTimeout(resolve, idleSeconds * 1000));
    const idleRate = new Map<string, number>();
    const idleElapsed = (performance.now() - idleStarted) / 1000;
    for (const [id, pid] of pids) {
      const to = await cpuSeconds(pid);
      const from = idleBefore.get(id)!;
      idleRate.set(id, (to.user + to.system - from.user - from.system) / idleElapsed);
    }
    for (let round = 0; round < rounds; round++) {
      for (const spec of jobs) {
        const job = spec.name;
        const iodepth = spec.iodepth;
        if (profileDir !== undefined) {
          await mkdir(profileDir, { recursive: true });
          for (const record of cluster.records()) process.kill(record.pid, "SIGWINCH");
        }
        if (latencyDir !== undefined) {
          await mkdir(latencyDir, { recursive: true });
          for (const record of cluster.records()) process.kill(record.pid, "SIGWINCH");
        }
        if (gcDir !== undefined) {
          await mkdir(gcDir, { recursive: true });
          for (const record of cluster.records()) process.kill(record.pid, "SIGWINCH");
        }
        if (allocDir !== undefined) {
          await mkdir(allocDir, { recursive: true });
          for (const record of cluster.records()) process.kill(record.pid, "SIGWINCH");
        }
        const before = new Map<string, { user: number; system: number; minorFaults: number }>();
        const callsBefore = new Map<string, { reads: number; writes: number }>();
        const cacheBefore = await cacheCounts(infoBus, primary);
        const linksBefore = [
          await linkReceived(infoBus, primary),
          await linkReceived(infoBus, secondary),
        ];
        for (const [id, pid] of pids) before.set(id, await cpuSeconds(pid));
        for (const [id, pid] of pids) callsBefore.set(id, await syscalls(pid));
        const started = performance.now();
        wiretap?.counts.clear();
        const output = await fio(jobArgs(uri, spec, seconds));
        const after = new Map<string, { user: number; system: number; minorFaults: number }>();
        const callsAfter = new Map<string, { reads: number; writes: number }>();
        for (const [id, pid] of pids) after.set(id, await cpuSeconds(pid));
        for (const [id, pid] of pids) callsAfter.set(id, await syscalls(pid));
        const cacheAfter = await cacheCounts(infoBus, primary);
        const linksAfter = [
          await linkReceived(infoBus, primary),
          await linkReceived(infoBus, secondary),
        ];
        const elapsed = (performance.now() - started) / 1000;
        if (profileDir !== undefined) {
          for (const record of cluster.records()) process.kill(record.pid, "SIGWINCH");
          await new Promise((resolve) => setTimeout(resolve, 2000));
          await mkdir(join(profileDir, job), { recursive: true });
          // cpu-profile.cjs writes DIR/<pid>.cpuprofile: name them by role.
          for (const [id, pid] of pids) {
            const from = join(profileDir, `${pid}.cpuprofile`);
            const text = await readFile(from, "utf8").catch(() => undefined);
            if (text !== undefined)
              await writeFile(join(profileDir, job, `${id.replace(/ .*/, "")}.cpuprofile`), text);
          }
        }
        if (gcDir !== undefined) {
          for (const record of cluster.records()) process.kill(record.pid, "SIGWINCH");
          await new Promise((resolve) => setTimeout(resolve, 1000));
          const lines: string[] = [];
          for (const [id, pid] of pids) {
            const text = await readFile(join(gcDir, `${pid}.gc.json`), "utf8").catch(
              () => undefined,
            );
            if (text === undefined) continue;
            await writeFile(join(gcDir, `${job}-${round}-${id.replace(/ .*/, "")}.gc.json`), text);
            const { counts } = JSON.parse(text) as {
              counts: Record<string, { count: number; pauseMs: number }>;
            };
            const shown = Object.entries(counts)
              .map(([kind, { count, pauseMs }]) => `${kind} ${count} (${pauseMs.toFixed(0)} ms)`)
              .join(", ");
            lines.push(`${id}: ${shown || "none"}`);
          }
          log(`  collections: ${lines.join("; ")}`);
        }
        const allocated = new Map<string, number>();
        if (allocDir !== undefined) {
          for (const record of cluster.records()) process.kill(record.pid, "SIGWINCH");
          await new Promise((resolve) => setTimeout(resolve, 2000));
          for (const [id, pid] of pids) {
            const text = await readFile(join(allocDir, `${pid}.heapprofile`), "utf8").catch(
              () => undefined,
            );
            if (text === undefined) continue;
            const role = id.replace(/ .*/, "");
            await writeFile(join(allocDir, `${job}-${round}-${role}.heapprofile`), text);
            allocated.set(role, allocatedBytes(JSON.parse(text).head));
          }
        }
        if (latencyDir !== undefined) {
          for (const record of cluster.records()) process.kill(record.pid, "SIGWINCH");
          await new Promise((resolve) => setTimeout(resolve, 2000));
          await mkdir(join(latencyDir, `${job}-${round}`), { recursive: true });
          // Which process is which, for lining the events up with a system-wide trace
          // (bench/latency-tail.ts --perf).
          await writeFile(
            join(latencyDir, `${job}-${round}`, "pids.json"),
            JSON.stringify(Object.fromEntries(pids)),
          );
          for (const [id, pid] of pids) {
            const text = await readFile(join(latencyDir, `${pid}.lat.json`), "utf8").catch(
              () => undefined,
            );
            // Sleds by their own names (sled-1.json …), the rest by role.
            if (text !== undefined)
              await writeFile(
                join(latencyDir, `${job}-${round}`, `${id.replace(/^sled | +.*/g, "")}.json`),
                text,
              );
          }
        }
        const parsed = JSON.parse(output.slice(output.indexOf("{")));
        const side = spec.rw === "read" || spec.rw === "randread" ? "read" : "write";
        const write = parsed.jobs[0][side];
        const writes = write.total_ios as number;
        if (allocated.size > 0) {
          log(
            `  JS heap bytes allocated per I/O: ${[...allocated]
              .map(([role, bytes]) => `${role} ${(bytes / writes).toFixed(0)}`)
              .join(", ")}`,
          );
        }
        const cpuUsPerWrite: Record<string, number> = {};
        const systemUsPerWrite: Record<string, number> = {};
        const netUsPerWrite: Record<string, number> = {};
        const syscallsPerIo: Record<string, { reads: number; writes: number }> = {};
        const faultsPerIo: Record<string, number> = {};
        let total = 0;
        let net = 0;
        for (const id of pids.keys()) {
          const from = before.get(id)!;
          const to = after.get(id)!;
          const system = ((to.system - from.system) * 1e6) / writes;
          const us = ((to.user - from.user) * 1e6) / writes + system;
          const idleUs = (idleRate.get(id)! * elapsed * 1e6) / writes;
          cpuUsPerWrite[id] = us;
          netUsPerWrite[id] = Math.max(0, us - idleUs);
          net += Math.max(0, us - idleUs);
          systemUsPerWrite[id] = system;
          const callsFrom = callsBefore.get(id)!;
          const callsTo = callsAfter.get(id)!;
          syscallsPerIo[id] = {
            reads: (callsTo.reads - callsFrom.reads) / writes,
            writes: (callsTo.writes - callsFrom.writes) / writes,
          };
          faultsPerIo[id] = (to.minorFaults - from.minorFaults) / writes;
          total += us;
        }
        const percentile = (key: string) =>
          Number(write.clat_ns?.percentile?.[key] ?? write.lat_ns?.percentile?.[key] ?? 0) / 1000;
        const result: JobRun = {
          job,
          iodepth,
          writes,
          seconds,
          iops: write.iops,
          p50Us: percentile("50.000000"),
          p99Us: percentile("99.000000"),
          cpuUsPerWrite,
          systemUsPerWrite,
          syscallsPerIo,
          faultsPerIo,
          netUsPerWrite,
          totalNetUsPerWrite: net,
          totalCpuUsPerWrite: total,
          load: loadavg()[0]!,
          ...(cacheBefore === undefined || cacheAfter === undefined
            ? {}
            : {
                cache: {
                  hits: cacheAfter.hits - cacheBefore.hits,
                  misses: cacheAfter.misses - cacheBefore.misses,
                  evictions: cacheAfter.evictions - cacheBefore.evictions,
                },
              }),
        };
        runs.push(result);
        // Link messages per I/O, received by the primary and by the secondary: requests
        // and notes per write are the batching the gateway and the primary achieve.
        const linkLines: string[] = [];
        for (const [index, role] of ["primary", "secondary"].entries()) {
          const shown: string[] = [];
          for (const [key, count] of linksAfter[index]!) {
            const delta = count - (linksBefore[index]!.get(key) ?? 0);
            if (delta > 0) shown.push(`${key} ${(delta / writes).toFixed(3)}`);
          }
          if (shown.length > 0) linkLines.push(`${role}: ${shown.join(", ")}`);
        }
        if (linkLines.length > 0) log(`  link messages received per I/O: ${linkLines.join("; ")}`);
        if (wiretap !== undefined) {
          const failure = wiretap.failure();
          if (failure !== undefined) throw failure;
          log(
            `  messages per I/O: ${[...wiretap.counts]
              .sort((a, b) => b[1] - a[1])
              .map(([kind, count]) => `${kind} ${(count / writes).toFixed(2)}`)
              .join(", ")}`,
          );
        }
        log(
          `${job}: ${result.iops.toFixed(0)} IOPS (${((result.iops * spec.blockBytes) / 1e6).toFixed(0)} MB/s), p50 ${result.p50Us.toFixed(0)} us, p99 ${result.p99Us.toFixed(0)} us, load ${result.load.toFixed(1)}\n  CPU/IO ${total.toFixed(0)} us, less idle ${net.toFixed(0)} us: ${Object.entries(
            cpuUsPerWrite,
          )
            .filter(([, us]) => us >= 1)
            .map(
              ([id, us]) =>
                `${id} ${us.toFixed(0)} (sys ${systemUsPerWrite[id]!.toFixed(0)}, net ${netUsPerWrite[id]!.toFixed(0)})`,
            )
            .join(", ")}\n  syscalls/IO (read+write): ${Object.entries(syscallsPerIo)
            .filter(([, calls]) => calls.reads + calls.writes >= 0.01)
            .map(
              ([id, calls]) =>
                `${id.replace(/^sled /, "")} ${calls.reads.toFixed(2)}+${calls.writes.toFixed(2)}`,
            )
            .join(", ")}
  page faults/IO: ${Object.entries(faultsPerIo)
    .filter(([, faults]) => faults >= 0.01)
    .map(([id, faults]) => `${id.replace(/^sled /, "")} ${faults.toFixed(2)}`)
    .join(", ")}${
    result.cache === undefined
      ? ""
      : `\n  chunk cache: ${percent(result.cache.hits, result.cache.hits + result.cache.misses)} of chunk ranges hit, ${(result.cache.misses / writes).toFixed(2)} misses and ${(result.cache.evictions / writes).toFixed(2)} blocks evicted per I/O`
  }`,
        );
      }
    }
    await tap?.close();
    await infoBus.close();
  } finally {
    await cluster?.stop();
    await directory.remove();
  }
  if (values["json-out"] !== undefined)
    await writeFile(values["json-out"], `${JSON.stringify(runs, null, 2)}\n`);
}

function percent(part: number, whole: number): string {
  return whole === 0 ? "none" : `${((100 * part) / whole).toFixed(1)} %`;
}

function jobArgs(uri: string, job: Job, seconds: number): string[] {
  return [
    "--name",
    job.name,
    "--ioengine=nbd",
    `--uri=${uri}`,
    `--rw=${job.rw}`,
    `--bs=${job.blockBytes}`,
    `--iodepth=${job.iodepth}`,
    `--size=${volumeBytes}`,
    "--output-format=json",
    "--randrepeat=0",
    "--norandommap",
    "--time_based",
    `--runtime=${seconds}`,
  ];
}

await main();
