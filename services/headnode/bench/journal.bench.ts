// Benchmark of the note journal's group commit: appends of 4 KiB records by 1, 16 and
// 128 concurrent appenders, each appender awaiting its append before the next (as a
// replica awaits durability before acknowledging), for about three seconds each.
//
//   node --import tsx services/headnode/bench/journal.bench.ts [secondsPerRun] [directory]
//
// Reports records/s, MB/s of payload, fsyncs/s (every fsync and fdatasync, directory
// syncs at segment rolls included), mean records per fsync and append latency. Each run
// uses a fresh journal in a temporary directory (under [directory], default the system
// temporary directory, which should be on the disk being measured), stops early once it
// has written bytesPerRunMax, and removes its directory.

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Journal } from "../src/journal/index.ts";

const secondsPerRun = Number(process.argv[2] ?? 3);
const parentDirectory = process.argv[3] ?? tmpdir();
const payloadBytes = 4096;
const appenderCounts = [1, 16, 128];
const bytesPerRunMax = 2 * 1024 ** 3;
const megabyte = 1_000_000;

interface RunResult {
  appenders: number;
  records: number;
  seconds: number;
  syncs: number;
  latenciesMs: Float64Array;
}

async function run(appenders: number): Promise<RunResult> {
  const directory = await mkdtemp(join(parentDirectory, "ballast-journal-bench-"));
  try {
    const { journal } = await Journal.open({ directory });
    const payload = new Uint8Array(payloadBytes);
    for (let index = 0; index < payload.length; index++) payload[index] = (index * 131) & 0xff;
    const latenciesMs: number[] = [];
    const recordsMax = Math.floor(bytesPerRunMax / payloadBytes);
    let opNumNext = 1;
    const startedMs = performance.now();
    const deadlineMs = startedMs + secondsPerRun * 1000;
    const appender = async () => {
      while (performance.now() < deadlineMs && opNumNext <= recordsMax) {
        const opNum = opNumNext++;
        const calledMs = performance.now();
        await journal.append([{ opNum, payload }]);
        latenciesMs.push(performance.now() - calledMs);
      }
    };
    await Promise.all(Array.from({ length: appenders }, appender));
    const seconds = (performance.now() - startedMs) / 1000;
    const syncs = journal.syncCount;
    await journal.close();
    return {
      appenders,
      records: latenciesMs.length,
      seconds,
      syncs,
      latenciesMs: Float64Array.from(latenciesMs).sort(),
    };
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
}

function percentile(sorted: Float64Array, fraction: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * fraction))] ?? Number.NaN;
}

const header = ["appenders", "records/s", "MB/s", "fsyncs/s", "records/fsync", "p50 ms", "p99 ms"];
process.stdout.write(
  `journal group commit: ${payloadBytes}-byte records, ~${secondsPerRun} s per run, in ${parentDirectory}, node ${process.version}\n`,
);
process.stdout.write(`${header.map((cell) => cell.padStart(15)).join("")}\n`);
for (const appenders of appenderCounts) {
  const result = await run(appenders);
  const row = [
    String(result.appenders),
    (result.records / result.seconds).toFixed(0),
    ((result.records * payloadBytes) / megabyte / result.seconds).toFixed(1),
    (result.syncs / result.seconds).toFixed(0),
    (result.records / result.syncs).toFixed(1),
    percentile(result.latenciesMs, 0.5).toFixed(2),
    percentile(result.latenciesMs, 0.99).toFixed(2),
  ];
  process.stdout.write(`${row.map((cell) => cell.padStart(15)).join("")}\n`);
}
