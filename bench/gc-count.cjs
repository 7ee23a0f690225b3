// Preloaded into each service by `npm run bench:write -- --gc DIR` (NODE_OPTIONS
// --require): counts the garbage collections of the measuring window by kind (a
// PerformanceObserver of `gc` entries) and writes DIR/<pid>.gc.json with the counts,
// their pause time and the process's memory at the end. The first SIGWINCH starts the
// count, the second writes it. A count says what a CPU profile cannot: how often the
// collector ran a full mark-compact, which sampled as "(garbage collector)" looks like
// any other collection (docs/performance.md, "External memory and full collections").
const { PerformanceObserver, constants } = require("node:perf_hooks");
const { writeFileSync } = require("node:fs");
const { join } = require("node:path");

const directory = process.env.BALLAST_BENCH_GC_DIR;
if (directory !== undefined) {
  const kinds = {
    [constants.NODE_PERFORMANCE_GC_MAJOR]: "full",
    [constants.NODE_PERFORMANCE_GC_MINOR]: "scavenge",
    [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: "incremental",
    [constants.NODE_PERFORMANCE_GC_WEAKCB]: "weak callbacks",
  };
  let counts;
  const observer = new PerformanceObserver((list) => {
    if (counts === undefined) return;
    for (const entry of list.getEntries()) {
      const kind = kinds[entry.detail?.kind] ?? String(entry.detail?.kind);
      counts[kind] ??= { count: 0, pauseMs: 0 };
      counts[kind].count += 1;
      counts[kind].pauseMs += entry.duration;
    }
  });
  observer.observe({ entryTypes: ["gc"] });
  process.on("SIGWINCH", () => {
    if (counts === undefined) {
      counts = {};
      return;
    }
    const finished = counts;
    counts = undefined;
    // Entries of the last moments arrive on the observer's next turn.
    setTimeout(() => {
      const memory = process.memoryUsage();
      writeFileSync(
        join(directory, `${process.pid}.gc.json`),
        JSON.stringify({ counts: finished, rssBytes: memory.rss, heapUsedBytes: memory.heapUsed }),
      );
    }, 100);
  });
}
