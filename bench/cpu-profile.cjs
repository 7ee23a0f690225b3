// Preloaded into each service by `npm run bench:idle -- --profile DIR` (NODE_OPTIONS
// --require; Node 20 refuses --cpu-prof there): the first SIGWINCH starts the V8 CPU
// profiler, the second stops it and writes DIR/<pid>.cpuprofile (open it in Chrome
// DevTools or speedscope). The benchmark sends both around its measuring window.
const inspector = require("node:inspector");
const { writeFileSync } = require("node:fs");
const { join } = require("node:path");

const directory = process.env.BALLAST_BENCH_PROFILE_DIR;
if (directory !== undefined) {
  const session = new inspector.Session();
  session.connect();
  let running = false;
  process.on("SIGWINCH", () => {
    if (!running) {
      running = true;
      session.post("Profiler.enable", () => session.post("Profiler.start"));
      return;
    }
    running = false;
    session.post("Profiler.stop", (error, result) => {
      if (error === null) {
        writeFileSync(join(directory, `${process.pid}.cpuprofile`), JSON.stringify(result.profile));
      }
    });
  });
}
