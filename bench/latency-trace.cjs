// Preloaded into each service by `npm run bench:write -- --latency DIR` (NODE_OPTIONS
// --require): defines `globalThis.__lat(name)`, which records the name and the monotonic
// clock (shared by every process of the machine, so events of several processes can be
// merged in time order). Nothing calls it unless the hooks of bench/latency-hooks.patch
// are applied (`git apply bench/latency-hooks.patch`; they stay out of the committed
// code). The first SIGWINCH starts recording, the second writes DIR/<pid>.lat.json.
// bench/latency-breakdown.ts turns a QD1 run's files into durations per stage, and
// bench/latency-tail.ts lines the slow writes up with what else was going on.
const { writeFileSync } = require("node:fs");
const { join } = require("node:path");

const directory = process.env.BALLAST_BENCH_LATENCY_DIR;
if (directory !== undefined) {
  let recording = false;
  const names = [];
  const times = [];
  globalThis.__lat = (name) => {
    if (!recording) return;
    names.push(name);
    times.push(Number(process.hrtime.bigint() / 100n)); // units of 0.1 µs
  };
  // Garbage collections while recording, as [start, duration, kind] in the same units:
  // a PerformanceObserver's times are performance.now()'s, so they are moved onto the
  // monotonic clock by the offset between the two, taken once.
  const { PerformanceObserver, performance } = require("node:perf_hooks");
  const offset = Number(process.hrtime.bigint() / 100n) - Math.round(performance.now() * 1e4);
  const collections = [];
  new PerformanceObserver((list) => {
    if (!recording) return;
    for (const entry of list.getEntries()) {
      collections.push([
        offset + Math.round(entry.startTime * 1e4),
        Math.round(entry.duration * 1e4),
        entry.detail?.kind ?? 0,
      ]);
    }
  }).observe({ entryTypes: ["gc"] });
  process.on("SIGWINCH", () => {
    if (!recording) {
      names.length = 0;
      times.length = 0;
      collections.length = 0;
      recording = true;
      return;
    }
    // Entries of the last moments reach the observer on its next turn.
    setTimeout(() => {
      recording = false;
      writeFileSync(
        join(directory, `${process.pid}.lat.json`),
        JSON.stringify({ names, times, collections }),
      );
    }, 100);
  });
}
