// `ballast bench`: what a user would measure first. It starts a local cluster in a
// temporary directory (two replicas by default), creates a volume, and runs fio with
// `ioengine=nbd` against the NBD gateway; in the same run, on the same disk, it runs the
// same jobs against `nbdkit file` twice: plain (the page cache answers, nothing is
// durable) and with every write forced to FUA (`--filter=fua fuamode=force`, so each
// write is durable when acknowledged, as every Ballast write is on every replica). One
// table, and JSON with every figure.
//
// Jobs (in this order, so that the reads find written data): 4 KiB random write at QD1
// and QD32, 1 MiB sequential write at QD8 over the whole test size, then 4 KiB random
// read at QD32 and 1 MiB sequential read at QD8. Before them, on every target alike, an
// unmeasured warm-up of 4 KiB random writes at QD32 (`--warmup`): a cluster just started
// runs its services' code unoptimised, and at QD1's few hundred writes a second V8 takes
// many seconds to optimise it (10 s of QD1 after 1 s of warm-up cost 1.5 to 3.1 ms of CPU
// a write over all processes, after 10 s 1.2 to 1.5 ms: docs/performance.md, session 26).
//
// Interleaved. Every target is up for the whole run, and each job runs on every target
// back to back before the next job starts (benchSchedule), so that a baseline and
// Ballast meet the same phase of a shared machine: run one target after another, a
// machine whose speed drifted over the minutes between them moved the ratios as much as
// Ballast did (docs/performance.md, every session's figures). Before each job the run
// settles: dirty pages written back (`sync`: plain nbdkit's writes are in the page
// cache) and the cluster's processes quiet (its flushes to sleds after a write job),
// up to `settleMsMax`. With `--rounds N` the schedule repeats, the order of the targets
// reversed every other round; the table gives each figure's median over the rounds and
// each ratio as the median of the rounds' own ratios (each taken within one round).
//
// Failure model: fio or nbdkit missing is a clear error (exit 4, missing tool); a job
// that fails is reported as failed and the rest go on; the cluster, the nbdkit servers
// and the temporary directory are always removed, even on Ctrl-C.

import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BallastError, ErrorCode, subjects } from "@ballast/protocol";
import { connectCli } from "./connect.ts";
import { CliError, exitCodes } from "./errors.ts";
import { LocalCluster } from "./local-cluster.ts";
import { stopChild } from "./processes.ts";

export const benchHelp = `Usage: ballast bench [options]

Starts a cluster in a temporary directory and runs fio (ioengine=nbd) against the NBD
gateway, then the same jobs against nbdkit file on the same disk, plain and with every
write forced to FUA. Prints one table; --json writes every figure.

Options:
  --quick            3 s per job and a 64 MiB test size (default 20 s and 512 MiB)
  --replicas N       replica count of the volume (2 or 3; default 2)
  --seconds N        seconds per job
  --warmup N         seconds of unmeasured 4 KiB random writes at QD32 before the jobs,
                     on every target alike (default 10, 3 with --quick; 0 for none)
  --size BYTES       bytes each job covers (suffixes K, M, G)
  --json FILE        write the results as JSON
  --dir DIR          where the cluster and the nbdkit files live (default: a new
                     temporary directory, removed afterwards)
  --only TARGETS     comma-separated subset of ballast,nbdkit,nbdkit-fua
  --rounds N         run every job N times on every target, interleaved (default 1);
                     the table gives medians and the median of each round's ratios
`;

export interface BenchJob {
  name: string;
  rw: "randwrite" | "randread" | "write" | "read";
  blockSize: string;
  iodepth: number;
}

export const benchJobs: readonly BenchJob[] = [
  { name: "4k-randwrite-qd1", rw: "randwrite", blockSize: "4k", iodepth: 1 },
  { name: "4k-randwrite-qd32", rw: "randwrite", blockSize: "4k", iodepth: 32 },
  { name: "1m-write-qd8", rw: "write", blockSize: "1m", iodepth: 8 },
  { name: "4k-randread-qd32", rw: "randread", blockSize: "4k", iodepth: 32 },
  { name: "1m-read-qd8", rw: "read", blockSize: "1m", iodepth: 8 },
];

export type BenchTarget = "ballast" | "nbdkit" | "nbdkit-fua";

export interface JobResult {
  target: BenchTarget;
  job: string;
  /** The round it ran in, from 0 (`--rounds`); absent from a summary's rows. */
  round?: number;
  ok: boolean;
  error?: string;
  iops: number;
  mbPerSecond: number;
  p50Us: number;
  p99Us: number;
}

/** The figures of one fio JSON report's first job. */
export function parseFioResult(
  output: string,
  rw: BenchJob["rw"],
): Omit<JobResult, "target" | "job" | "ok"> {
  const start = output.indexOf("{");
  if (start < 0) throw new Error("fio printed no JSON");
  const report = JSON.parse(output.slice(start)) as {
    jobs: {
      error: number;
      read: FioSide;
      write: FioSide;
    }[];
  };
  const job = report.jobs[0];
  if (job === undefined) throw new Error("fio reported no job");
  if (job.error !== 0) throw new Error(`fio job error ${job.error}`);
  const side = rw === "randread" || rw === "read" ? job.read : job.write;
  const percentiles = side.clat_ns.percentile ?? {};
  return {
    iops: side.iops,
    mbPerSecond: side.bw_bytes / 1e6,
    p50Us: (percentiles["50.000000"] ?? 0) / 1000,
    p99Us: (percentiles["99.000000"] ?? 0) / 1000,
  };
}

interface FioSide {
  iops: number;
  bw_bytes: number;
  clat_ns: { percentile?: Record<string, number> };
}

export interface BenchOptions {
  seconds: number;
  /** Seconds of the warm-up job before each target's jobs; 0 for none. */
  warmupSeconds: number;
  sizeBytes: number;
  replicas: number;
  json?: string;
  dir?: string;
  targets: BenchTarget[];
  /** Times each job runs on every target, interleaved (see the module header). */
  rounds: number;
}

/** The most `--rounds`: each round runs every job on every target. */
export const benchRoundsMax = 20;

/** The longest wait for the machine to settle before a job (see the module header). */
export const settleMsMax = 10_000;

/**
 * The cluster counts as quiet once its processes took at most this share of one core
 * over a settle sample (`settleSampleMs`): an idle cluster takes a few percent.
 */
export const settleCpuShareMax = 0.15;

/** The window over which the cluster's CPU is sampled while settling. */
export const settleSampleMs = 500;

/** One measured run: a job on a target in a round. */
export interface ScheduledRun {
  round: number;
  job: BenchJob;
  target: BenchTarget;
}

/**
 * The order of the measured runs: round by round, job by job, every target back to back
 * (in `targets`' order in even rounds, reversed in odd ones, so that no target always
 * follows another's writes). Each target still sees the jobs in their order.
 */
export function benchSchedule(targets: readonly BenchTarget[], rounds: number): ScheduledRun[] {
  const runs: ScheduledRun[] = [];
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? [...targets] : [...targets].reverse();
    for (const job of benchJobs) {
      for (const target of order) runs.push({ round, job, target });
    }
  }
  return runs;
}

/** The median of `values` (the mean of the middle two for an even count); NaN for none. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** Ballast's ratio to one baseline for one job: each round's, and their median. */
export interface BenchRatio {
  job: string;
  baseline: Exclude<BenchTarget, "ballast">;
  perRound: number[];
  median: number;
}

/**
 * One row per job and target: the median of each figure over the rounds, ok only if
 * every round was (else the first failure's error).
 */
export function summarizeRounds(results: readonly JobResult[]): JobResult[] {
  const rows: JobResult[] = [];
  for (const job of benchJobs) {
    for (const target of ["ballast", "nbdkit", "nbdkit-fua"] as const) {
      const runs = results.filter((result) => result.job === job.name && result.target === target);
      if (runs.length === 0) continue;
      const failed = runs.find((result) => !result.ok);
      if (failed !== undefined) {
        const { round: _round, ...row } = failed;
        rows.push({ ...row, iops: 0, mbPerSecond: 0, p50Us: 0, p99Us: 0 });
        continue;
      }
      const of = (key: "iops" | "mbPerSecond" | "p50Us" | "p99Us") =>
        median(runs.map((result) => result[key]));
      rows.push({
        target,
        job: job.name,
        ok: true,
        iops: of("iops"),
        mbPerSecond: of("mbPerSecond"),
        p50Us: of("p50Us"),
        p99Us: of("p99Us"),
      });
    }
  }
  return rows;
}

/**
 * Ballast's IOPS over each baseline's, per job: the ratio within each round where both
 * ran and succeeded, and the median of those (none where no round has both).
 */
export function benchRatios(results: readonly JobResult[]): BenchRatio[] {
  const ratios: BenchRatio[] = [];
  for (const job of benchJobs) {
    for (const baseline of ["nbdkit", "nbdkit-fua"] as const) {
      const perRound: number[] = [];
      const rounds = new Set(results.map((result) => result.round ?? 0));
      for (const round of [...rounds].sort((a, b) => a - b)) {
        const of = (target: BenchTarget) =>
          results.find(
            (result) =>
              result.job === job.name && result.target === target && (result.round ?? 0) === round,
          );
        const ours = of("ballast");
        const theirs = of(baseline);
        if (ours?.ok !== true || theirs?.ok !== true || theirs.iops === 0) continue;
        perRound.push(ours.iops / theirs.iops);
      }
      if (perRound.length > 0)
        ratios.push({ job: job.name, baseline, perRound, median: median(perRound) });
    }
  }
  return ratios;
}

function parseSize(text: string): number {
  const match = /^(\d+)([KMG]?)$/i.exec(text);
  if (match === null) throw new CliError(exitCodes.usage, `bad size ${JSON.stringify(text)}`);
  const unit = { "": 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[match[2]!.toUpperCase()]!;
  return Number(match[1]) * unit;
}

export function parseBenchArgs(args: readonly string[]): BenchOptions {
  const options: BenchOptions = {
    seconds: 20,
    warmupSeconds: 10,
    sizeBytes: 512 * 1024 ** 2,
    replicas: 2,
    targets: ["ballast", "nbdkit", "nbdkit-fua"],
    rounds: 1,
  };
  let seconds: number | undefined;
  let warmup: number | undefined;
  let size: number | undefined;
  for (let index = 0; index < args.length; index++) {
    const argument = args[index]!;
    const value = () => {
      const next = args[++index];
      if (next === undefined) throw new CliError(exitCodes.usage, `${argument} needs a value`);
      return next;
    };
    switch (argument) {
      case "--quick":
        options.seconds = 3;
        options.warmupSeconds = 3;
        options.sizeBytes = 64 * 1024 ** 2;
        break;
      case "--replicas": {
        const count = Number(value());
        if (count !== 2 && count !== 3)
          throw new CliError(exitCodes.usage, "--replicas must be 2 or 3");
        options.replicas = count;
        break;
      }
      case "--seconds":
        seconds = Number(value());
        if (!Number.isInteger(seconds) || seconds < 1 || seconds > 3600)
          throw new CliError(exitCodes.usage, "--seconds must be 1 to 3600");
        break;
      case "--warmup":
        warmup = Number(value());
        if (!Number.isInteger(warmup) || warmup < 0 || warmup > 3600)
          throw new CliError(exitCodes.usage, "--warmup must be 0 to 3600");
        break;
      case "--size":
        size = parseSize(value());
        if (size < 1024 ** 2 || size % 1024 ** 2 !== 0)
          throw new CliError(exitCodes.usage, "--size must be a whole number of MiB, at least 1M");
        break;
      case "--json":
        options.json = value();
        break;
      case "--rounds": {
        const rounds = Number(value());
        if (!Number.isInteger(rounds) || rounds < 1 || rounds > benchRoundsMax)
          throw new CliError(exitCodes.usage, `--rounds must be 1 to ${benchRoundsMax}`);
        options.rounds = rounds;
        break;
      }
      case "--dir":
        options.dir = value();
        break;
      case "--only": {
        const targets = value().split(",");
        for (const target of targets) {
          if (target !== "ballast" && target !== "nbdkit" && target !== "nbdkit-fua")
            throw new CliError(exitCodes.usage, `unknown bench target ${JSON.stringify(target)}`);
        }
        options.targets = targets as BenchTarget[];
        break;
      }
      default:
        throw new CliError(exitCodes.usage, `unknown option ${argument}\n\n${benchHelp}`);
    }
  }
  if (seconds !== undefined) options.seconds = seconds;
  if (warmup !== undefined) options.warmupSeconds = warmup;
  if (size !== undefined) options.sizeBytes = size;
  return options;
}

function run(command: string, args: readonly string[]): Promise<{ code: number; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => {
      output += chunk.toString();
    });
    child.stderr.on("data", (chunk: Buffer) => {
      output += chunk.toString();
    });
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? 1, output }));
  });
}

/**
 * What a failed fio run said: its own error lines (fio prints them among the JSON it
 * writes with --output-format=json), else its last lines, else its exit code.
 */
export function fioFailure(output: string, code: number): string {
  const lines = output.split("\n").map((line) => line.trim());
  const errors = lines.filter((line) => /error/i.test(line) && !/^[{}[\]"]/.test(line));
  const shown = errors.length > 0 ? errors.slice(0, 3) : lines.filter(Boolean).slice(-3);
  return shown.length > 0 ? shown.join(" ") : `fio exited with ${code}`;
}

async function requireTool(command: string, args: string[], install: string): Promise<void> {
  try {
    await run(command, args);
  } catch {
    throw new CliError(exitCodes.missingTool, `${command} is needed: ${install}`);
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => resolve(typeof address === "object" && address ? address.port : 0));
    });
  });
}

/** The unmeasured job each target runs first, for `--warmup` seconds. */
export const warmupJob: BenchJob = {
  name: "warmup",
  rw: "randwrite",
  blockSize: "4k",
  iodepth: 32,
};

/** The fio command line of one job against one target. */
export function fioArgs(uri: string, job: BenchJob, options: BenchOptions): string[] {
  const args = [
    "--name",
    job.name,
    "--ioengine=nbd",
    `--uri=${uri}`,
    `--rw=${job.rw}`,
    `--bs=${job.blockSize}`,
    `--iodepth=${job.iodepth}`,
    `--size=${options.sizeBytes}`,
    "--output-format=json",
    "--randrepeat=0",
    "--norandommap",
  ];
  // The sequential write covers the whole size once (the reads then find data); the
  // others run for the time given.
  if (job.rw !== "write") {
    const seconds = job === warmupJob ? options.warmupSeconds : options.seconds;
    args.push("--time_based", `--runtime=${seconds}`);
  }
  return args;
}

async function runJob(
  uri: string,
  job: BenchJob,
  options: BenchOptions,
): Promise<Omit<JobResult, "target">> {
  const args = fioArgs(uri, job, options);
  const { code, output } = await run("fio", args);
  if (code !== 0) {
    return {
      job: job.name,
      ok: false,
      error: fioFailure(output, code),
      iops: 0,
      mbPerSecond: 0,
      p50Us: 0,
      p99Us: 0,
    };
  }
  try {
    return { job: job.name, ok: true, ...parseFioResult(output, job.rw) };
  } catch (error) {
    return {
      job: job.name,
      ok: false,
      error: (error as Error).message,
      iops: 0,
      mbPerSecond: 0,
      p50Us: 0,
      p99Us: 0,
    };
  }
}

async function startNbdkit(
  file: string,
  fua: boolean,
): Promise<{ child: ChildProcess; uri: string }> {
  const port = await freePort();
  const args = ["-f", "--exit-with-parent", "-i", "127.0.0.1", "-p", String(port)];
  if (fua) args.push("--filter=fua");
  args.push("file", file);
  if (fua) args.push("fuamode=force");
  const child = spawn("nbdkit", args, { stdio: ["ignore", "ignore", "pipe"] });
  const uri = `nbd://127.0.0.1:${port}`;
  for (let attempt = 0; attempt < 100; attempt++) {
    const probe = await run("nbdinfo", ["--size", uri]).catch(() => ({ code: 1, output: "" }));
    if (probe.code === 0) return { child, uri };
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  child.kill("SIGKILL");
  throw new Error(`nbdkit did not start on ${uri}`);
}

function formatRow(cells: string[], widths: number[]): string {
  return cells
    .map((cell, index) =>
      index === 0 ? cell.padEnd(widths[index]!) : cell.padStart(widths[index]!),
    )
    .join("  ");
}

/**
 * The table: one row per job and target, with Ballast's ratio to each baseline: from
 * `ratios` where given (the median of the rounds' own ratios), else from the rows.
 * With more than one round, a line per job after it gives each round's ratios.
 */
export function formatBenchTable(
  results: readonly JobResult[],
  ratios?: readonly BenchRatio[],
): string {
  const widths = [20, 11, 10, 10, 10, 10, 12, 14];
  const lines = [
    formatRow(
      ["job", "target", "IOPS", "MB/s", "p50 µs", "p99 µs", "÷ nbdkit", "÷ nbdkit-fua"],
      widths,
    ),
  ];
  for (const job of benchJobs) {
    const of = (target: BenchTarget) =>
      results.find((result) => result.job === job.name && result.target === target);
    const ballast = of("ballast");
    for (const target of ["ballast", "nbdkit", "nbdkit-fua"] as const) {
      const result = of(target);
      if (result === undefined) continue;
      const ratio = (baseline: JobResult | undefined) => {
        if (target !== "ballast" || ballast === undefined || baseline === undefined) return "";
        if (ratios !== undefined) {
          const found = ratios.find(
            (each) => each.job === job.name && each.baseline === baseline.target,
          );
          return found === undefined ? "" : `${found.median.toFixed(2)}×`;
        }
        return !baseline.ok || baseline.iops === 0
          ? ""
          : `${(ballast.iops / baseline.iops).toFixed(2)}×`;
      };
      lines.push(
        formatRow(
          result.ok
            ? [
                job.name,
                target,
                result.iops.toFixed(0),
                result.mbPerSecond.toFixed(1),
                result.p50Us.toFixed(0),
                result.p99Us.toFixed(0),
                ratio(of("nbdkit")),
                ratio(of("nbdkit-fua")),
              ]
            : [job.name, target, "failed", "", "", "", "", ""],
          widths,
        ),
      );
    }
  }
  const perRound = (ratios ?? []).filter((ratio) => ratio.perRound.length > 1);
  if (perRound.length > 0) {
    lines.push("", "Ballast's ratio in each round (the table gives their median):");
    for (const ratio of perRound) {
      const each = ratio.perRound.map((value) => `${value.toFixed(2)}×`).join(", ");
      lines.push(`  ${ratio.job.padEnd(18)} ÷ ${ratio.baseline.padEnd(10)}  ${each}`);
    }
  }
  return lines.join("\n");
}

/** The progress line of one run. */
function progressLine(
  target: BenchTarget,
  job: BenchJob,
  result: Omit<JobResult, "target">,
  note = "",
): string {
  return `  ${target.padEnd(11)} ${job.name.padEnd(18)} ${result.ok ? `${result.iops.toFixed(0)} IOPS${note}` : `failed: ${result.error}`}`;
}

/** CPU seconds (user and system) `pid` has used, from /proc; 0 once it is gone. */
async function cpuSecondsOf(pid: number): Promise<number> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8");
    // Fields after the command (which may hold spaces), from its closing parenthesis.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / clockTicksPerSecond;
  } catch {
    return 0;
  }
}

/** Linux's USER_HZ, the unit of /proc/<pid>/stat's CPU times, on every architecture. */
const clockTicksPerSecond = 100;

/**
 * Waits for the machine to settle before a job (see the module header): dirty pages
 * written back, then the cluster's processes (`pids`) quiet, at most `settleMsMax`.
 * Returns the milliseconds waited.
 */
async function settle(pids: () => readonly number[]): Promise<number> {
  const start = Date.now();
  await run("sync", []).catch(() => undefined);
  while (Date.now() - start < settleMsMax) {
    const list = pids();
    if (list.length === 0) break;
    const before = await Promise.all(list.map(cpuSecondsOf));
    await new Promise((resolve) => setTimeout(resolve, settleSampleMs));
    const after = await Promise.all(list.map(cpuSecondsOf));
    const used = after.reduce((sum, value, index) => sum + Math.max(0, value - before[index]!), 0);
    if (used / (settleSampleMs / 1000) <= settleCpuShareMax) break;
  }
  return Date.now() - start;
}

export async function benchCommand(
  args: readonly string[],
  print: (line: string) => void = console.log,
): Promise<number> {
  const options = parseBenchArgs(args);
  await requireTool("fio", ["--version"], "apt-get install fio");
  if (options.targets.some((target) => target !== "ballast"))
    await requireTool("nbdkit", ["--version"], "apt-get install nbdkit");
  await requireTool("nbdinfo", ["--version"], "apt-get install libnbd-bin");

  const dir = options.dir ?? (await mkdtemp(join(tmpdir(), "ballast-bench-")));
  const removeDir = options.dir === undefined;
  const results: JobResult[] = [];
  let cluster: LocalCluster | undefined;
  const nbdkits: ChildProcess[] = [];
  /** nbdkit's files: removed even where the directory is the caller's (`--dir`). */
  const files: string[] = [];
  const cleanup = async () => {
    for (const child of nbdkits) await stopChild(child).catch(() => undefined);
    nbdkits.length = 0;
    for (const file of files) await rm(file, { force: true }).catch(() => undefined);
    if (cluster !== undefined) await cluster.stop().catch(() => undefined);
    if (removeDir) await rm(dir, { recursive: true, force: true });
  };
  const interrupted = () => {
    // Ctrl-C: exit 130 whatever the cleanup meets (a data directory it cannot remove is
    // named, not a stack trace).
    void cleanup()
      .catch((error: unknown) => {
        process.stderr.write(`ballast bench: cleanup after Ctrl-C: ${(error as Error).message}\n`);
      })
      .finally(() => process.exit(130));
  };
  process.once("SIGINT", interrupted);
  try {
    print(
      `bench: ${options.seconds} s per job after a ${options.warmupSeconds} s warm-up, ${options.sizeBytes / 1024 ** 2} MiB per job, ${options.replicas} replicas, ${options.rounds} round${options.rounds === 1 ? "" : "s"} interleaved, in ${dir}`,
    );
    // Every target up first, for the whole run (see the module header).
    const uris = new Map<BenchTarget, string>();
    if (options.targets.includes("ballast")) {
      const nbdPort = await freePort();
      cluster = await LocalCluster.start({
        dataDir: join(dir, "cluster"),
        coordinators: 1,
        headNodes: options.replicas,
        sleds: 3,
        gateways: 1,
        nbdPortFirst: nbdPort,
        env: { BALLAST_LOG_LEVEL: "warn" },
        tieToParent: true,
      });
      const client = await connectCli({
        natsUrl: cluster.natsUrl,
        source: "ballast bench",
        access: cluster.natsAccess("client"),
      });
      try {
        // Retried until the head nodes and sleds have joined; an attempt whose answer was
        // lost may have created it already.
        await waitFor(async () => {
          try {
            await client.bus.request(
              subjects.coordinator.build(),
              {
                type: "volume.create.v1",
                name: "bench",
                sizeBytes: options.sizeBytes,
                replicaCount: options.replicas,
              },
              { deadlineMs: 15_000 },
            );
          } catch (error) {
            if (!(error instanceof BallastError && error.code === ErrorCode.AlreadyExists))
              throw error;
          }
        });
      } finally {
        await client.close();
      }
      const uri = `nbd://127.0.0.1:${nbdPort}/bench`;
      await waitFor(async () => {
        const probe = await run("nbdinfo", ["--size", uri]);
        if (probe.code !== 0) throw new Error(probe.output);
      });
      uris.set("ballast", uri);
    }
    for (const target of ["nbdkit", "nbdkit-fua"] as const) {
      if (!options.targets.includes(target)) continue;
      const file = join(dir, `${target}.img`);
      files.push(file);
      await writeFile(file, "");
      await run("truncate", ["-s", String(options.sizeBytes), file]);
      const server = await startNbdkit(file, target === "nbdkit-fua");
      nbdkits.push(server.child);
      uris.set(target, server.uri);
    }
    const targets = options.targets.filter((target) => uris.has(target));
    const clusterPids = () =>
      cluster === undefined
        ? []
        : cluster
            .records()
            .map((record) => record.pid)
            .filter((pid) => pid > 0);
    if (options.warmupSeconds > 0) {
      for (const target of targets) {
        const result = await runJob(uris.get(target)!, warmupJob, options);
        print(progressLine(target, warmupJob, result, " (warm-up, not counted)"));
      }
    }
    for (const { round, job, target } of benchSchedule(targets, options.rounds)) {
      await settle(clusterPids);
      const result: JobResult = {
        target,
        round,
        ...(await runJob(uris.get(target)!, job, options)),
      };
      results.push(result);
      const note = options.rounds > 1 ? ` (round ${round + 1})` : "";
      print(progressLine(target, job, result, note));
    }
    const summary = summarizeRounds(results);
    const ratios = benchRatios(results);
    print("");
    print(formatBenchTable(summary, ratios));
    if (options.json !== undefined) {
      await writeFile(
        options.json,
        `${JSON.stringify({ seconds: options.seconds, warmupSeconds: options.warmupSeconds, sizeBytes: options.sizeBytes, replicas: options.replicas, rounds: options.rounds, results: summary, ratios, runs: results }, null, 2)}\n`,
      );
      print(`results in ${options.json}`);
    }
    return results.every((result) => result.ok) ? exitCodes.ok : exitCodes.failed;
  } finally {
    process.off("SIGINT", interrupted);
    await cleanup();
  }
}

async function waitFor(attempt: () => Promise<void>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await attempt();
      return;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }
}
