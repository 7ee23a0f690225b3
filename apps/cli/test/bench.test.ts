// The fio benchmark's pure parts: options, fio's command lines, the parse of fio's JSON,
// and the table with Ballast's ratio to each baseline.

import { describe, expect, test } from "vitest";
import {
  benchJobs,
  fioArgs,
  fioFailure,
  formatBenchTable,
  type JobResult,
  parseBenchArgs,
  parseFioResult,
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
