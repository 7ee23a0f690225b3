// The idle-cost benchmark (issue 14, "an idle cost that does not grow with partitions"):
// for each partition count N it starts a local cluster (1 coordinator, 3 head nodes,
// 3 sleds with small devices), creates one volume of N partitions of 1 MiB, waits until
// every partition is at full strength (each head node hosts its replicas in the roles the
// coordinator assigned), lets it settle, then measures each process's CPU (utime + stime
// from /proc/<pid>/stat, nats-server included) over a window with no I/O at all, and
// prints the per-process and total CPU in % of one core. Clusters run one after another
// (back to back), each in its own temporary directory that is deleted at the end.
//
//   npm run bench:idle                                   N = 8 and 1000, 60 s windows
//   npm run bench:idle -- --partitions 8,1000 --seconds 60
//   npm run bench:idle -- --profile /tmp/prof            CPU profiles of the window
//   npm run bench:idle -- --count-messages               messages a second, by subject
//                                                        family (the tap loads nats-server)
//
// The goal: the cluster with 1,000 partitions uses at most 2x the CPU of the one with 8,
// and creating the 1,000 takes under 30 s. The machine may be shared: the 1-minute load
// average is printed with each figure, since a loaded machine inflates CPU time too.
// Results go to stdout as a table and, with --json-out, as JSON.

import { mkdir, writeFile } from "node:fs/promises";
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
import { cpuSeconds } from "./cpu-time.ts";
import { startWiretap, type Wiretap } from "./wiretap.ts";

const mebibyte = 1024 * 1024;
/** Each partition's size: the smallest the coordinator allows. */
const partitionBytes = mebibyte;
/** How long to wait for every partition to reach full strength after the create. */
const fullStrengthTimeoutMs = 180_000;
/** Quiet time between full strength and the window (first checkpoints, settling). */
const settleMsDefault = 10_000;
/** Replica status requests in flight at once while checking full strength. */
const statusBatch = 100;

export interface IdleRun {
  partitions: number;
  createMs: number;
  fullStrengthMs: number;
  windowMs: number;
  /** CPU over the window in % of one core, by process (coordinator-1, head-1, …, nats). */
  cpuPercent: Record<string, number>;
  totalPercent: number;
  /** The 1-minute load average at the window's start and end. */
  loadBefore: number;
  loadAfter: number;
  /** With --count-messages: messages a second over the window, by subject family. */
  messagesPerSecond?: Record<string, number>;
}

export async function measureIdle(options: {
  partitions: number;
  seconds: number;
  settleMs: number;
  profileDir?: string;
  /** A wiretap counts every message of the window (it adds to nats-server's load). */
  countMessages?: boolean;
  log: (line: string) => void;
}): Promise<IdleRun> {
  const { partitions, log } = options;
  const directory = await temporaryDirectory("ballast-idle-");
  let cluster: LocalCluster | undefined;
  let bus: Awaited<ReturnType<typeof connectTestBus>> | undefined;
  let tap: Awaited<ReturnType<typeof connectTestBus>> | undefined;
  try {
    cluster = await LocalCluster.start({
      dataDir: directory.path,
      coordinators: 1,
      headNodes: 3,
      sleds: 3,
      // The passwords connectTestBus uses (this process is the cluster's operator).
      natsPasswords: testPasswords,
      // V8's profiles do not apply source maps: profiled services run through tsx, so
      // that frames name .ts files rather than one bundle.
      ...(options.profileDir === undefined ? {} : { runner: "tsx" as const }),
      env: {
        BALLAST_LOG_LEVEL: "warn",
        BALLAST_SLED_DEVICES: "1",
        BALLAST_SLED_DEVICE_BYTES: String(64 * mebibyte),
        ...(options.profileDir === undefined
          ? {}
          : {
              NODE_OPTIONS: `--require ${fileURLToPath(new URL("./cpu-profile.cjs", import.meta.url))}`,
              BALLAST_BENCH_PROFILE_DIR: join(options.profileDir, String(partitions)),
            }),
      },
    });
    bus = await connectTestBus(cluster.natsUrl);
    await waitUntilHealthy(bus.bus, cluster.ids(), 60_000);
    const client = bus.bus;
    const createdAt = performance.now();
    await client.request(
      subjects.coordinator.build(),
      {
        type: "volume.create.v1",
        name: "idle",
        sizeBytes: partitions * partitionBytes,
        partitionBytes,
        replicaCount: 2,
      },
      { deadlineMs: 120_000 },
    );
    const createMs = performance.now() - createdAt;
    log(`  N=${partitions}: created in ${(createMs / 1000).toFixed(1)} s`);
    await waitFor(
      `${partitions} partitions at full strength`,
      async () => {
        const volume = await client.request(
          subjects.coordinator.build(),
          { type: "volume.describe.v1", name: "idle" },
          { deadlineMs: 10_000 },
        );
        const wanted: { node: string; partition: number; role: string }[] = [];
        for (const partition of volume.partitions) {
          if (partition.learners.length > 0 || partition.secondaries.length !== 1) return;
          const { primary } = partition;
          wanted.push({ node: primary, partition: partition.partition, role: "primary" });
          for (const node of partition.secondaries) {
            wanted.push({ node, partition: partition.partition, role: "secondary" });
          }
        }
        // Each replica's own status (node.info would list every replica too, but a head
        // node's info with more than 64 subjects is refused by its schema).
        let matched = 0;
        for (let at = 0; at < wanted.length; at += statusBatch) {
          const answers = await Promise.all(
            wanted.slice(at, at + statusBatch).map(async ({ node, partition, role }) => {
              const status = await client
                .request(
                  subjects.node.build("headnode", node),
                  { type: "headnode.replica.status.v1", volume: "idle", partition },
                  { deadlineMs: 10_000 },
                )
                .catch(() => undefined);
              return status?.role === role;
            }),
          );
          matched += answers.filter(Boolean).length;
          if (matched < at + answers.length) return;
        }
        return matched === wanted.length ? true : undefined;
      },
      fullStrengthTimeoutMs,
      1000,
    );
    const fullStrengthMs = performance.now() - createdAt;
    log(`  N=${partitions}: full strength after ${(fullStrengthMs / 1000).toFixed(1)} s`);
    // Nothing more talks to the cluster from here: the window has no client traffic.
    await bus.close();
    bus = undefined;
    // --count-messages: as bench:write's wiretap (wiretap.ts), by subject family
    // (replies as one), within the window only.
    let counting = false;
    let wiretap: Wiretap | undefined;
    if (options.countMessages === true) {
      tap = await connectTestBus(cluster.natsUrl);
      wiretap = startWiretap(tap.connection, (subject) => {
        if (!counting) return undefined;
        const tokens = subject.split(".");
        return tokens[0] === "_INBOX" ? "reply" : tokens.slice(2, 3).join(".");
      });
    }
    await new Promise((resolve) => setTimeout(resolve, options.settleMs));

    const pids = new Map<string, number>();
    for (const record of cluster.records()) pids.set(record.id, record.pid);
    const natsPid = cluster.natsServer?.child.pid;
    if (natsPid !== undefined) pids.set("nats-server", natsPid);
    // With --profile: SIGWINCH starts each service's profiler, and stops it after.
    const profiled = options.profileDir === undefined ? [] : cluster.records();
    if (options.profileDir !== undefined) {
      await mkdir(join(options.profileDir, String(partitions)), { recursive: true });
    }
    for (const record of profiled) process.kill(record.pid, "SIGWINCH");
    const loadBefore = loadavg()[0]!;
    const before = new Map<string, number>();
    for (const [id, pid] of pids) before.set(id, await cpuSeconds(pid));
    const startMs = performance.now();
    counting = true;
    await new Promise((resolve) => setTimeout(resolve, options.seconds * 1000));
    counting = false;
    const after = new Map<string, number>();
    for (const [id, pid] of pids) after.set(id, await cpuSeconds(pid));
    const windowMs = performance.now() - startMs;
    for (const record of profiled) process.kill(record.pid, "SIGWINCH");
    if (profiled.length > 0) await new Promise((resolve) => setTimeout(resolve, 2000));
    const loadAfter = loadavg()[0]!;
    const cpuPercent: Record<string, number> = {};
    let totalPercent = 0;
    for (const id of pids.keys()) {
      const percent = ((after.get(id)! - before.get(id)!) / (windowMs / 1000)) * 100;
      cpuPercent[id] = percent;
      totalPercent += percent;
    }
    const failure = wiretap?.failure();
    if (failure !== undefined) throw failure;
    const messagesPerSecond: Record<string, number> = {};
    for (const [kind, count] of [...(wiretap?.counts ?? [])].sort()) {
      messagesPerSecond[kind] = count / (windowMs / 1000);
    }
    return {
      partitions,
      createMs,
      fullStrengthMs,
      windowMs,
      cpuPercent,
      totalPercent,
      loadBefore,
      loadAfter,
      ...(options.countMessages === true ? { messagesPerSecond } : {}),
    };
  } finally {
    await tap?.close();
    await bus?.close();
    await cluster?.stop();
    await directory.remove();
  }
}

function table(runs: readonly IdleRun[]): string {
  const ids = [...new Set(runs.flatMap((run) => Object.keys(run.cpuPercent)))];
  const header = ["process", ...runs.map((run) => `N=${run.partitions}`)];
  const kinds = [...new Set(runs.flatMap((run) => Object.keys(run.messagesPerSecond ?? {})))];
  const rows = [
    ...ids.map((id) => [id, ...runs.map((run) => `${(run.cpuPercent[id] ?? 0).toFixed(1)} %`)]),
    ...kinds.map((kind) => [
      `${kind} /s`,
      ...runs.map((run) => (run.messagesPerSecond?.[kind] ?? 0).toFixed(1)),
    ]),
    ["total", ...runs.map((run) => `${run.totalPercent.toFixed(1)} %`)],
    ["create", ...runs.map((run) => `${(run.createMs / 1000).toFixed(1)} s`)],
    ["full strength", ...runs.map((run) => `${(run.fullStrengthMs / 1000).toFixed(1)} s`)],
    [
      "load avg (1 min)",
      ...runs.map((run) => `${run.loadBefore.toFixed(2)}→${run.loadAfter.toFixed(2)}`),
    ],
  ];
  const all = [header, ...rows];
  const widths = header.map((_, column) => Math.max(...all.map((row) => row[column]!.length)));
  return all
    .map((row) => row.map((cell, column) => cell.padEnd(widths[column]!)).join("  "))
    .join("\n");
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      partitions: { type: "string", default: "8,1000" },
      seconds: { type: "string", default: "60" },
      "settle-seconds": { type: "string", default: String(settleMsDefault / 1000) },
      profile: { type: "string" },
      "count-messages": { type: "boolean", default: false },
      "json-out": { type: "string" },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    process.stdout.write(
      "npm run bench:idle -- [--partitions 8,1000] [--seconds 60] [--settle-seconds 10] [--profile DIR] [--count-messages] [--json-out FILE]\n",
    );
    return;
  }
  const counts = values.partitions.split(",").map((part) => Number(part.trim()));
  const runs: IdleRun[] = [];
  for (const partitions of counts) {
    const log = (line: string) => process.stderr.write(`${line}\n`);
    log(`idle: N=${partitions}, ${values.seconds} s window`);
    runs.push(
      await measureIdle({
        partitions,
        seconds: Number(values.seconds),
        settleMs: Number(values["settle-seconds"]) * 1000,
        ...(values.profile === undefined ? {} : { profileDir: values.profile }),
        countMessages: values["count-messages"],
        log,
      }),
    );
  }
  process.stdout.write(`${table(runs)}\n`);
  const first = runs[0];
  const last = runs[runs.length - 1];
  if (first !== undefined && last !== undefined && runs.length > 1) {
    process.stdout.write(
      `ratio N=${last.partitions} / N=${first.partitions}: ${(last.totalPercent / first.totalPercent).toFixed(2)}x (goal: at most 2x)\n`,
    );
  }
  if (values["json-out"] !== undefined) {
    await writeFile(values["json-out"], `${JSON.stringify(runs, null, 2)}\n`);
  }
}

await main();
