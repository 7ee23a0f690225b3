// The big-volume benchmark (a volume of 16,384 partitions knocked its leader out): starts
// a local cluster (2 coordinators, 2 head nodes, 1 sled, services run through tsx),
// creates one volume of N partitions of 1 MiB with 2 replicas, then watches for a while.
// It prints how long the create took and what it answered, the leadership changes in the
// coordinators' logs and what they logged most (failovers show there), and each service's longest event-loop delay (bench/loop-delay.cjs)
// during the create and during the watch, and their CPU over the watch (utime + stime). The cluster runs in a temporary directory that
// is deleted at the end.
//
//   npm run bench:big -- --partitions 16384 --seconds 60
//   npm run bench:big -- --partitions 16384 --profile /tmp/prof   CPU profiles (coordinators, head nodes)
//
// The machine may be shared: the load average is printed with the figures.

import { mkdir, readdir, readFile } from "node:fs/promises";
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
  waitUntilHealthy,
} from "../test/support/cluster.ts";
import { cpuSeconds } from "./cpu-time.ts";

const mebibyte = 1024 * 1024;
const createDeadlineMs = 300_000;

const { values } = parseArgs({
  options: {
    partitions: { type: "string", default: "16384" },
    seconds: { type: "string", default: "60" },
    profile: { type: "string" },
  },
});
const partitions = Number(values.partitions);
const watchMs = Number(values.seconds) * 1000;

const directory = await temporaryDirectory("ballast-big-");
const loopDir = join(directory.path, "loop");
let cluster: LocalCluster | undefined;
let bus: Awaited<ReturnType<typeof connectTestBus>> | undefined;
try {
  await mkdir(loopDir);
  cluster = await LocalCluster.start({
    dataDir: directory.path,
    coordinators: 2,
    headNodes: 2,
    sleds: 1,
    natsPasswords: testPasswords,
    runner: "tsx",
    env: {
      BALLAST_LOG_LEVEL: "info",
      BALLAST_SLED_DEVICES: "1",
      BALLAST_SLED_DEVICE_BYTES: String(64 * mebibyte),
      NODE_OPTIONS: [
        `--require ${fileURLToPath(new URL("./loop-delay.cjs", import.meta.url))}`,
        `--require ${fileURLToPath(new URL("./cpu-profile.cjs", import.meta.url))}`,
      ].join(" "),
      BALLAST_BENCH_LOOP_DIR: loopDir,
      ...(values.profile === undefined ? {} : { BALLAST_BENCH_PROFILE_DIR: values.profile }),
    },
  });
  bus = await connectTestBus(cluster.natsUrl);
  await waitUntilHealthy(bus.bus, cluster.ids(), 60_000);
  // --profile: SIGWINCH starts the coordinators' and head nodes' profilers
  // (cpu-profile.cjs), and stops them.
  const profiledPids: number[] = [];
  /** The coordinators' and head nodes' pids, by what their command line names. */
  const kinds = new Map<number, string>();
  for (const file of await readdir(loopDir)) {
    const first = (await readFile(join(loopDir, file), "utf8")).split("\n")[0]!;
    const kind = /coordinator|headnode/.exec(first)?.[0];
    if (kind === undefined) continue;
    profiledPids.push(Number(file.split(".")[0]));
    kinds.set(Number(file.split(".")[0]), kind);
  }
  const cpuNow = async () =>
    new Map(
      await Promise.all(profiledPids.map(async (pid) => [pid, await cpuSeconds(pid)] as const)),
    );
  const signalProfilers = () => {
    if (values.profile === undefined) return;
    for (const pid of profiledPids) process.kill(pid, "SIGWINCH");
  };
  signalProfilers();
  const loadBefore = loadavg()[0]!;
  const createdAt = Date.now();
  let answer = "ok";
  try {
    await bus.bus.request(
      subjects.coordinator.build(),
      {
        type: "volume.create.v1",
        name: "big",
        sizeBytes: partitions * mebibyte,
        partitionBytes: mebibyte,
        replicaCount: 2,
      },
      { deadlineMs: createDeadlineMs },
    );
  } catch (error) {
    answer = (error as Error).message;
  }
  const createdBy = Date.now();
  const cpuAtCreated = await cpuNow();
  console.log(
    `N=${partitions}: create answered in ${((createdBy - createdAt) / 1000).toFixed(1)} s: ${answer} (load ${loadBefore.toFixed(1)})`,
  );
  await new Promise((resolve) => setTimeout(resolve, watchMs));
  const watchedBy = Date.now();
  const cpuAtWatched = await cpuNow();
  signalProfilers();
  if (values.profile !== undefined) await new Promise((resolve) => setTimeout(resolve, 3000));
  console.log(`watched ${watchMs / 1000} s more (load ${loadavg()[0]!.toFixed(1)})`);
  // CPU over the watch, in % of one core: how busy the configuring keeps each service.
  for (const pid of profiledPids) {
    const busy =
      (cpuAtWatched.get(pid)! - cpuAtCreated.get(pid)!) / ((watchedBy - createdBy) / 1000);
    console.log(
      `  ${kinds.get(pid)} (pid ${pid}): ${(busy * 100).toFixed(1)} % of a core over the watch`,
    );
  }
  for (const id of cluster.ids().filter((one) => one.startsWith("coordinator"))) {
    const log = await readFile(join(directory.path, "logs", `${id}.log`), "utf8");
    const lost = log.match(/lost the leadership/g)?.length ?? 0;
    const led = log.match(/"leading the cluster/g)?.length ?? 0;
    console.log(`  ${id}: began leading ${led} times, lost the leadership ${lost} times`);
    // What it logged most, by message with its numbers masked.
    const counts = new Map<string, number>();
    for (const line of log.split("\n")) {
      const message = /"msg":"([^"]*)"/.exec(line)?.[1]?.replace(/\d+/g, "#");
      if (message !== undefined) counts.set(message, (counts.get(message) ?? 0) + 1);
    }
    for (const [message, count] of [...counts].sort((a, b) => b[1] - a[1]).slice(0, 8)) {
      console.log(`    ${count} × ${message.slice(0, 140)}`);
    }
    // Its first warnings and errors, whole (a lapse of the lease, a failed request).
    const warnings = log.split("\n").filter((line) => /"level":(40|50|60)\b/.test(line));
    for (const line of warnings.slice(0, 6)) console.log(`    ! ${line.slice(0, 300)}`);
  }
  for (const file of await readdir(loopDir)) {
    const lines = (await readFile(join(loopDir, file), "utf8")).trim().split("\n");
    const argv = (JSON.parse(lines[0]!) as { argv: string }).argv;
    const kind = /coordinator|headnode|sled|gateway/.exec(argv)?.[0] ?? argv.slice(0, 40);
    const samples = lines
      .slice(1)
      .map((line) => JSON.parse(line) as { atMs: number; maxMs: number });
    const max = (from: number, to: number) =>
      Math.max(
        0,
        ...samples.filter((s) => s.atMs > from && s.atMs <= to + 1000).map((s) => s.maxMs),
      );
    const long = samples.filter((s) => s.atMs > createdAt && s.maxMs >= 1000).length;
    console.log(
      `  ${kind} (pid ${file.split(".")[0]}): longest loop delay ${max(createdAt, createdBy).toFixed(0)} ms during the create, ${max(createdBy, watchedBy).toFixed(0)} ms after; ${long} seconds with a delay of 1 s or more`,
    );
  }
} finally {
  await bus?.close();
  await cluster?.stop();
  await directory.remove();
}
