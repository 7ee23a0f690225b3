// The journal alone: N appenders, each appending its next 4 KiB record as soon as its
// last one is durable, for a few seconds, on a fresh journal in a temporary directory
// (deleted afterwards). Prints appends a second, latency and syncs: what group commit
// gives on this disk without the rest of the write path (docs/performance.md, "What was
// tried and left").
//
//   node --import tsx bench/journal-appends.ts [seconds=5] [appenders=32] [records-per-append=1]

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Journal } from "../services/headnode/src/journal/journal.ts";

const seconds = Number(process.argv[2] ?? 5);
const appenders = Number(process.argv[3] ?? 32);
const recordsPerAppend = Number(process.argv[4] ?? 1);
const directory = await mkdtemp(join(tmpdir(), "ballast-journal-bench-"));
try {
  const { journal } = await Journal.open({ directory: join(directory, "journal") });
  const payload = new Uint8Array(4096).fill(7);
  const latenciesMs: number[] = [];
  let nextOpNum = 1;
  let appended = 0;
  const endMs = performance.now() + seconds * 1000;
  // Op numbers are taken when an append is called, so appends stay contiguous and in order.
  const appender = async () => {
    while (performance.now() < endMs) {
      const records = Array.from({ length: recordsPerAppend }, () => ({
        opNum: nextOpNum++,
        payload,
      }));
      const startedMs = performance.now();
      await journal.append(records);
      latenciesMs.push(performance.now() - startedMs);
      appended += recordsPerAppend;
    }
  };
  await Promise.all(Array.from({ length: appenders }, appender));
  await journal.close();
  latenciesMs.sort((a, b) => a - b);
  const at = (share: number) => latenciesMs[Math.floor(latenciesMs.length * share)]!.toFixed(2);
  process.stdout.write(
    `${appenders} appenders: ${(appended / seconds).toFixed(0)} records a second, p50 ${at(0.5)} ms, p99 ${at(0.99)} ms, ${journal.syncCount} syncs\n`,
  );
} finally {
  await rm(directory, { recursive: true, force: true });
}
