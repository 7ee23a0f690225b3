// The fio benchmark's pure parts: options, fio's command lines, the parse of fio's JSON,
// and the table with Ballast's ratio to each baseline.

import { describe, expect, test } from "vitest";
import {
  benchJobs,
  benchRatios,
  benchSchedule,
  fioArgs,
  fioFailure,
  formatBenchTable,
  type JobResult,
  median,
  parseBenchArgs,
  parseFioResult,
  summarizeRounds,
  warmupJob,
} from "../src/bench.ts";

const fioJson = JSON.stringify({
  jobs: [
    {
      error: 0,
      read: { iops: 0, bw_bytes: 0, clat_ns: {} },
      write: {
        iops: 2000.4,
        bw_bytes: 8_193_638,
        clat_ns: { percentile: { "50.000000": 450_000, "99.000000": 2_100_000 } },
      },
    },
  ],
});

describe("ballast bench", () => {
  test("reads IOPS, bandwidth and latency percentiles of the side the job used", () => {
    // fio may print warnings before its JSON.
    const parsed = parseFioResult(`note: something\n${fioJson}`, "randwrite");
    expect(parsed).toEqual({ iops: 2000.4, mbPerSecond: 8.193638, p50Us: 450, p99Us: 2100 });
    expect(parseFioResult(fioJson, "randread").iops).toBe(0);
    expect(() => parseFioResult("fio: error", "read")).toThrow(/no JSON/);
  });

  test("options: --quick, sizes, replicas, and clear errors", () => {
    expect(parseBenchArgs(["--quick"])).toMatchObject({ seconds: 3, sizeBytes: 64 * 1024 ** 2 });
    expect(parseBenchArgs(["--quick", "--seconds", "5", "--size", "1G"])).toMatchObject({
      seconds: 5,
      sizeBytes: 1024 ** 3,
    });
    expect(parseBenchArgs([])).toMatchObject({ seconds: 20, warmupSeconds: 10 });
    expect(parseBenchArgs(["--quick"]).warmupSeconds).toBe(3);
    expect(parseBenchArgs(["--warmup", "0", "--quick"]).warmupSeconds).toBe(0);
    expect(() => parseBenchArgs(["--warmup", "-1"])).toThrow(/--warmup must be 0 to 3600/);
    expect(() => parseBenchArgs(["--warmup", "1.5"])).toThrow(/--warmup must be 0 to 3600/);
    expect(() => parseBenchArgs(["--replicas", "4"])).toThrow(/2 or 3/);
    expect(() => parseBenchArgs(["--size", "3K"])).toThrow(/MiB/);
    expect(() => parseBenchArgs(["--only", "ceph"])).toThrow(/unknown bench target/);
    expect(() => parseBenchArgs(["--frobnicate"])).toThrow(/unknown option/);
  });

  test("fio's command lines: the warm-up runs its own seconds, the jobs theirs", () => {
    const options = parseBenchArgs(["--seconds", "7", "--warmup", "4", "--size", "64M"]);
    const uri = "nbd://127.0.0.1:10809/bench";
    const warmup = fioArgs(uri, warmupJob, options);
    expect(warmup).toEqual(
      expect.arrayContaining(["--rw=randwrite", "--bs=4k", "--iodepth=32", "--runtime=4"]),
    );
    for (const job of benchJobs) {
      const args = fioArgs(uri, job, options);
      expect(args).toContain(`--uri=${uri}`);
      expect(args).toContain(`--size=${64 * 1024 ** 2}`);
      // The sequential write covers the size once, all of it measured; the others are timed.
      if (job.rw === "write") expect(args.some((arg) => arg.startsWith("--runtime"))).toBe(false);
      else expect(args).toEqual(expect.arrayContaining(["--time_based", "--runtime=7"]));
    }
  });

  test("the table gives Ballast's ratio to each baseline, and failed jobs as failed", () => {
    const row = (target: JobResult["target"], iops: number, ok = true): JobResult => ({
      target,
      job: "4k-randwrite-qd32",
      ok,
      iops,
      mbPerSecond: iops / 250,
      p50Us: 100,
      p99Us: 900,
    });
    const table = formatBenchTable([
      row("ballast", 500),
      row("nbdkit", 1000),
      row("nbdkit-fua", 250),
    ]);
    const ballastLine = table.split("\n").find((line) => line.includes("ballast"))!;
    expect(ballastLine).toContain("0.50×");
    expect(ballastLine).toContain("2.00×");
    expect(formatBenchTable([row("ballast", 0, false)])).toContain("failed");
  });
});

describe("rounds, interleaved", () => {
  const run = (
    target: JobResult["target"],
    job: string,
    round: number,
    iops: number,
    ok = true,
  ): JobResult => ({
    target,
    job,
    round,
    ok,
    ...(ok ? {} : { error: "fio job error 5" }),
    iops,
    mbPerSecond: iops / 250,
    p50Us: 1e6 / iops,
    p99Us: 4e6 / iops,
  });

  test("--rounds: 1 by default, a whole number up to the limit", () => {
    expect(parseBenchArgs([]).rounds).toBe(1);
    expect(parseBenchArgs(["--rounds", "3"]).rounds).toBe(3);
    for (const bad of ["0", "21", "1.5", "x"]) {
      expect(() => parseBenchArgs(["--rounds", bad])).toThrow(/--rounds must be 1 to 20/);
    }
    expect(() => parseBenchArgs(["--rounds"])).toThrow(/needs a value/);
  });

  test("each job runs on every target back to back, the targets' order reversed every other round", () => {
    const targets = ["ballast", "nbdkit", "nbdkit-fua"] as const;
    const schedule = benchSchedule(targets, 2);
    expect(schedule).toHaveLength(2 * benchJobs.length * targets.length);
    const names = schedule.map((run) => `${run.round} ${run.job.name} ${run.target}`);
    expect(names.slice(0, 4)).toEqual([
      "0 4k-randwrite-qd1 ballast",
      "0 4k-randwrite-qd1 nbdkit",
      "0 4k-randwrite-qd1 nbdkit-fua",
      "0 4k-randwrite-qd32 ballast",
    ]);
    const secondRound = schedule.filter((run) => run.round === 1);
    expect(secondRound.slice(0, 3).map((run) => run.target)).toEqual([
      "nbdkit-fua",
      "nbdkit",
      "ballast",
    ]);
    // Every target still sees the jobs in their order (the reads find written data).
    for (const target of targets) {
      for (const round of [0, 1]) {
        const jobs = schedule.filter((run) => run.target === target && run.round === round);
        expect(jobs.map((run) => run.job)).toEqual([...benchJobs]);
      }
    }
    expect(benchSchedule(["ballast"], 1).map((run) => run.job)).toEqual([...benchJobs]);
  });

  test("medians: the middle value, or the mean of the middle two", () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([7])).toBe(7);
    expect(median([])).toBeNaN();
  });

  test("the summary takes each figure's median over the rounds, and a failed round fails the row", () => {
    const runs = [
      run("ballast", "4k-randwrite-qd1", 0, 900),
      run("ballast", "4k-randwrite-qd1", 1, 1200),
      run("ballast", "4k-randwrite-qd1", 2, 1000),
      run("nbdkit-fua", "4k-randwrite-qd1", 0, 3000),
      run("nbdkit-fua", "4k-randwrite-qd1", 1, 3600),
      run("nbdkit-fua", "4k-randwrite-qd1", 2, 4000, false),
    ];
    const summary = summarizeRounds(runs);
    const ballast = summary.find((row) => row.target === "ballast")!;
    expect(ballast).toMatchObject({ ok: true, iops: 1000, mbPerSecond: 4, p50Us: 1000 });
    expect(ballast.round).toBeUndefined();
    const fua = summary.find((row) => row.target === "nbdkit-fua")!;
    expect(fua).toMatchObject({ ok: false, error: "fio job error 5", iops: 0 });
    expect(fua.round).toBeUndefined();
  });

  test("ratios are taken within each round, then their median: a drifting machine moves both sides", () => {
    // The machine twice as fast in round 1: the ratio of each side's median (1500 over
    // 2000, 0.75) mixes phases; the median of the rounds' own ratios (0.5, 0.5, 0.75) is 0.5.
    const runs = [
      run("ballast", "4k-randwrite-qd32", 0, 1000),
      run("nbdkit-fua", "4k-randwrite-qd32", 0, 2000),
      run("ballast", "4k-randwrite-qd32", 1, 2000),
      run("nbdkit-fua", "4k-randwrite-qd32", 1, 4000),
      run("ballast", "4k-randwrite-qd32", 2, 1500),
      run("nbdkit-fua", "4k-randwrite-qd32", 2, 2000),
      // A round where the baseline failed has no ratio.
      run("ballast", "4k-randwrite-qd1", 0, 500),
      run("nbdkit", "4k-randwrite-qd1", 0, 0, false),
    ];
    const ratios = benchRatios(runs);
    expect(ratios).toEqual([
      { job: "4k-randwrite-qd32", baseline: "nbdkit-fua", perRound: [0.5, 0.5, 0.75], median: 0.5 },
    ]);
    const table = formatBenchTable(summarizeRounds(runs), ratios);
    const ballastLine = table
      .split("\n")
      .find((line) => line.startsWith("4k-randwrite-qd32") && line.includes("ballast"))!;
    expect(ballastLine).toContain("0.50×");
    expect(table).toContain("Ballast's ratio in each round");
    expect(table).toMatch(/4k-randwrite-qd32\s+÷ nbdkit-fua\s+0\.50×, 0\.50×, 0\.75×/);
    // One round: the table as before, no per-round lines.
    const one = runs.filter((each) => each.round === 0);
    expect(formatBenchTable(summarizeRounds(one), benchRatios(one))).not.toContain("each round");
  });
});

describe("a failed fio run", () => {
  test("is reported by fio's own error lines, not the end of its JSON", () => {
    const output = [
      "fio: connected to NBD server",
      "fio: io_u error on file job.0.0: Input/output error: write offset=4096, buflen=4096",
      "{",
      '  "jobs" : [',
      '    { "error" : 5 }',
      "  ]",
      "}",
    ].join("\n");
    const reason = fioFailure(output, 1);
    expect(reason).toContain("Input/output error: write offset=4096");
    expect(reason).not.toContain("}");
    expect(reason).not.toContain('"error"');
  });

  test("falls back to its last lines, then to its exit code", () => {
    expect(fioFailure("one\ntwo\nthree\nfour\n", 2)).toBe("two three four");
    expect(fioFailure("", 3)).toBe("fio exited with 3");
  });
});
