// Preloaded into each service by `npm run bench:write -- --alloc DIR` (NODE_OPTIONS
// --require): the first SIGWINCH starts V8's sampling heap profiler (every object
// allocated on the JS heap, whether the next collection frees it or not, sampled about
// every `samplingIntervalBytes`), the second stops it and writes DIR/<pid>.heapprofile
// (open it in Chrome DevTools' memory tab). The benchmark sends both around its
// measuring window and divides the bytes by the I/Os made: what each write makes the
// young generation collect, a figure that does not move with the machine's load as CPU
// time does.
const inspector = require("node:inspector");
const { writeFileSync } = require("node:fs");
const { join } = require("node:path");

const samplingIntervalBytes = 4096;
const directory = process.env.BALLAST_BENCH_ALLOC_DIR;
if (directory !== undefined) {
  const session = new inspector.Session();
  session.connect();
  let running = false;
  process.on("SIGWINCH", () => {
    if (!running) {
      running = true;
      session.post("HeapProfiler.enable", () =>
        session.post("HeapProfiler.startSampling", {
          samplingInterval: samplingIntervalBytes,
          includeObjectsCollectedByMajorGC: true,
          includeObjectsCollectedByMinorGC: true,
        }),
      );
      return;
    }
    running = false;
    session.post("HeapProfiler.stopSampling", (error, result) => {
      if (error === null) {
        writeFileSync(
          join(directory, `${process.pid}.heapprofile`),
          JSON.stringify(result.profile),
        );
      }
    });
  });
}
