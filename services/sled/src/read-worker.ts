// The thread of a ReadPool (read-pool.ts), as source text: a worker started from a file
// would need the file beside the bundle the sled runs from, and a function's own text
// is not safe to send either (the bundler wraps named functions in helpers the worker
// lacks), so the worker is given this text (`eval`, CommonJS).
//
// It shares memory with the pool: a control block, a list of ranges (descriptor,
// position, length), a data area and a text area. It sleeps in Atomics.wait until the
// pool posts a trip, reads the trip's ranges with readSync one after another into the
// data area, end to end, writes what failed (as JSON) into the text area, and wakes the
// pool. The descriptors stay open while a trip is out: each file waits for its reads
// before it closes (block-file.ts).

/** The control block's fields (Int32Array indexes) and the values of `request`. */
export const readControl = {
  /** What the worker is asked: `idle`, `posted` (a trip) or `stop`. */
  request: 0,
  /** 1 once the trip's answer is written. */
  done: 1,
  /** Ranges in the trip. */
  rangeCount: 2,
  /** Bytes of failure JSON in the text area (0: every range was read). */
  failureTextBytes: 3,
  fields: 4,
  idle: 0,
  posted: 1,
  stop: 2,
} as const;

export const readWorkerSource = `
"use strict";
const { readSync } = require("node:fs");
const { workerData } = require("node:worker_threads");
const { control, ranges, data, text, failureMessageCharsMax } = workerData;
const c = ${JSON.stringify(readControl)};
const encoder = new TextEncoder();
const describe = (error) => ({
  message: (error instanceof Error ? error.message : String(error)).slice(0, failureMessageCharsMax),
  code: typeof error?.code === "string" ? error.code : undefined,
  errno: typeof error?.errno === "number" ? error.errno : undefined,
  syscall: typeof error?.syscall === "string" ? error.syscall : undefined,
});
for (;;) {
  Atomics.wait(control, c.request, c.idle);
  const what = Atomics.load(control, c.request);
  if (what === c.stop) break;
  if (what !== c.posted) continue;
  const failures = [];
  let at = 0;
  const count = control[c.rangeCount];
  for (let range = 0; range < count; range++) {
    const fd = ranges[3 * range];
    const position = ranges[3 * range + 1];
    const length = ranges[3 * range + 2];
    try {
      let got = 0;
      while (got < length) {
        const read = readSync(fd, data, at + got, length - got, position + got);
        if (read === 0) {
          throw new Error("short read: " + got + " of " + length + " bytes at " + position + " (end of file)");
        }
        got += read;
      }
    } catch (error) {
      failures.push({ index: range, ...describe(error) });
    }
    at += length;
  }
  control[c.failureTextBytes] =
    failures.length === 0 ? 0 : encoder.encodeInto(JSON.stringify(failures), text).written;
  Atomics.store(control, c.request, c.idle);
  Atomics.store(control, c.done, 1);
  Atomics.notify(control, c.done);
}
`;
