// The thread of a ReadPool (read-pool.ts). It shares memory with the pool: a control
// block, a list of ranges (descriptor, position, length), a data area and a text area.
// It sleeps in Atomics.wait until the pool posts a trip, reads the trip's ranges with
// readSync one after another into the data area, end to end, writes what failed (as
// JSON) into the text area, and wakes the pool. Plain JavaScript, so that it runs
// without a loader. The descriptors stay open while a trip is out: each file waits for
// its reads before it closes (block-file.ts).

import { readSync } from "node:fs";
import { workerData } from "node:worker_threads";

// The control block's fields; read-pool.ts has the same.
const request = 0; // 0: nothing to do, 1: a trip is posted, 2: stop
const done = 1; // 1 when the trip's answer is written
const rangeCount = 2;
const failureTextBytes = 3;
const idle = 0;
const posted = 1;
const stop = 2;

const { control, ranges, data, text, failureMessageCharsMax } = workerData;
const encoder = new TextEncoder();

for (;;) {
  Atomics.wait(control, request, idle);
  const what = Atomics.load(control, request);
  if (what === stop) break;
  if (what !== posted) continue;
  const failures = [];
  let at = 0;
  const count = control[rangeCount];
  for (let range = 0; range < count; range++) {
    const fd = ranges[3 * range];
    const position = ranges[3 * range + 1];
    const length = ranges[3 * range + 2];
    try {
      let got = 0;
      while (got < length) {
        const read = readSync(fd, data, at + got, length - got, position + got);
        if (read === 0) {
          throw new Error(`short read: ${got} of ${length} bytes at ${position} (end of file)`);
        }
        got += read;
      }
    } catch (error) {
      failures.push({ index: range, ...describe(error) });
    }
    at += length;
  }
  let textBytes = 0;
  if (failures.length > 0) {
    textBytes = encoder.encodeInto(JSON.stringify(failures), text).written;
  }
  control[failureTextBytes] = textBytes;
  Atomics.store(control, request, idle);
  Atomics.store(control, done, 1);
  Atomics.notify(control, done);
}

/** What of an error crosses to the pool: its message (cut short) and its system codes. */
function describe(error) {
  const message = error instanceof Error ? error.message : String(error);
  return {
    message: message.slice(0, failureMessageCharsMax),
    code: typeof error?.code === "string" ? error.code : undefined,
    errno: typeof error?.errno === "number" ? error.errno : undefined,
    syscall: typeof error?.syscall === "string" ? error.syscall : undefined,
  };
}
