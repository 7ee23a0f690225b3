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
// Failure model: fio or nbdkit missing is a clear error (exit 4, missing tool); a job
// that fails is reported as failed and the rest go on; the cluster, the nbdkit servers
// and the temporary directory are always removed, even on Ctrl-C.

import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
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

/** The table: one row per job and target, with Ballast's ratio to each baseline. */
export function formatBenchTable(results: readonly JobResult[]): string {
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
      const ratio = (baseline: JobResult | undefined) =>
        target !== "ballast" ||
        ballast === undefined ||
        baseline === undefined ||
        !baseline.ok ||
        baseline.iops === 0
          ? ""
          : `${(ballast.iops / baseline.iops).toFixed(2)}×`;
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
  return lines.join("\n");
}

/** One target's warm-up (unmeasured: printed, not kept), then its jobs. */
async function runTarget(
  target: BenchTarget,
  uri: string,
  options: BenchOptions,
  print: (line: string) => void,
): Promise<JobResult[]> {
  const line = (job: BenchJob, result: Omit<JobResult, "target">, note = "") =>
    `  ${target.padEnd(11)} ${job.name.padEnd(18)} ${result.ok ? `${result.iops.toFixed(0)} IOPS${note}` : `failed: ${result.error}`}`;
  if (options.warmupSeconds > 0)
    print(line(warmupJob, await runJob(uri, warmupJob, options), " (warm-up, not counted)"));
  const results: JobResult[] = [];
  for (const job of benchJobs) {
    const result = { target, ...(await runJob(uri, job, options)) };
    results.push(result);
    print(line(job, result));
  }
  return results;
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
  const cleanup = async () => {
    for (const child of nbdkits) await stopChild(child).catch(() => undefined);
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
      `bench: ${options.seconds} s per job after a ${options.warmupSeconds} s warm-up, ${options.sizeBytes / 1024 ** 2} MiB per job, ${options.replicas} replicas, in ${dir}`,
    );
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
      results.push(...(await runTarget("ballast", uri, options, print)));
      await cluster.stop();
      cluster = undefined;
    }
    for (const target of ["nbdkit", "nbdkit-fua"] as const) {
      if (!options.targets.includes(target)) continue;
      const file = join(dir, `${target}.img`);
      await writeFile(file, "");
      await run("truncate", ["-s", String(options.sizeBytes), file]);
      const server = await startNbdkit(file, target === "nbdkit-fua");
      nbdkits.push(server.child);
      results.push(...(await runTarget(target, server.uri, options, print)));
      await stopChild(server.child);
      nbdkits.pop();
      await rm(file, { force: true });
    }
    print("");
    print(formatBenchTable(results));
    if (options.json !== undefined) {
      await writeFile(
        options.json,
        `${JSON.stringify({ seconds: options.seconds, warmupSeconds: options.warmupSeconds, sizeBytes: options.sizeBytes, replicas: options.replicas, results }, null, 2)}\n`,
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
