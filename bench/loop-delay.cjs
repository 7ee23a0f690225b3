// Preloaded into each service by bench/big-volume.ts (NODE_OPTIONS --require): every
// second, appends the longest event-loop delay of that second (perf_hooks, 10 ms
// resolution) to DIR/<pid>.jsonl, after a first line naming the process's command.
const { monitorEventLoopDelay } = require("node:perf_hooks");
const { appendFileSync } = require("node:fs");
const { join } = require("node:path");

const directory = process.env.BALLAST_BENCH_LOOP_DIR;
if (directory !== undefined) {
  const file = join(directory, `${process.pid}.jsonl`);
  appendFileSync(file, `${JSON.stringify({ argv: process.argv.slice(1).join(" ") })}\n`);
  const histogram = monitorEventLoopDelay({ resolution: 10 });
  histogram.enable();
  const timer = setInterval(() => {
    appendFileSync(file, `${JSON.stringify({ atMs: Date.now(), maxMs: histogram.max / 1e6 })}\n`);
    histogram.reset();
  }, 1000);
  timer.unref();
}
