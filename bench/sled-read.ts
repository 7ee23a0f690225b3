// Ways for a sled to read 4 KiB ranges of a device file, compared by CPU per read (the
// whole process's, every thread's: `process.cpuUsage`) and reads a second. A file of
// 64 MiB in a temporary directory (deleted afterwards), read once so that it is in the
// page cache, then `reads` random block-aligned 4 KiB reads, `batches` batches in flight,
// `ranges` reads per batch (a `sled.chunk.read-many.v1`'s ranges):
//
//   filehandle  FileHandle.read per range (libuv's threadpool, the handle's bookkeeping)
//   callback    fs.read on the descriptor per range (the threadpool, no promise)
//   sync        readSync per range on the event loop (a floor; a sled must not block)
//   worker      a batch in one message to a worker thread that reads it with readSync
//               and transfers its buffer back (postMessage both ways)
//   pool        the sled's reader (read-pool.ts): reads waiting for a worker go in one
//               trip, through shared memory and Atomics (wait, waitAsync), then copied
//
//   node --import tsx bench/sled-read.ts [reads=40000] [batches=16] [ranges=2] [modes]

import { read as callbackRead, readSync } from "node:fs";
import { mkdtemp, open, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Worker } from "node:worker_threads";
import { ReadPool } from "../services/sled/src/read-pool.ts";

const fileBytes = 64 * 1024 * 1024;
const readBytes = 4096;
const reads = Number(process.argv[2] ?? 40_000);
const batches = Number(process.argv[3] ?? 16);
const ranges = Number(process.argv[4] ?? 2);
const modes = (process.argv[5] ?? "filehandle,callback,sync,worker,pool").split(",");

type ReadBatch = (positions: number[]) => Promise<unknown>;

const workerSource = `
const { parentPort } = require("node:worker_threads");
const { readSync } = require("node:fs");
parentPort.on("message", ({ id, fd, positions, length }) => {
  const buffer = new ArrayBuffer(positions.length * length);
  const bytes = new Uint8Array(buffer);
  for (let i = 0; i < positions.length; i++) {
    readSync(fd, bytes, i * length, length, positions[i]);
  }
  parentPort.postMessage({ id, buffer }, [buffer]);
});
`;

const directory = await mkdtemp(join(tmpdir(), "ballast-sled-read-bench-"));
try {
  const path = join(directory, "device");
  const handle = await open(path, "w+");
  const chunk = Buffer.alloc(1024 * 1024, 7);
  for (let at = 0; at < fileBytes; at += chunk.length)
    await handle.write(chunk, 0, chunk.length, at);
  await handle.sync();
  for (let at = 0; at < fileBytes; at += chunk.length)
    await handle.read(chunk, 0, chunk.length, at);
  const fd = handle.fd;

  const worker = new Worker(workerSource, { eval: true });
  const waiting = new Map<number, (buffer: ArrayBuffer) => void>();
  let nextId = 0;
  worker.on("message", ({ id, buffer }: { id: number; buffer: ArrayBuffer }) => {
    waiting.get(id)!(buffer);
    waiting.delete(id);
  });
  const pool = new ReadPool();

  const ways: Record<string, ReadBatch> = {
    filehandle: (positions) =>
      Promise.all(
        positions.map((position) =>
          handle.read(Buffer.allocUnsafe(readBytes), 0, readBytes, position),
        ),
      ),
    callback: (positions) =>
      Promise.all(
        positions.map(
          (position) =>
            new Promise((resolve, reject) =>
              callbackRead(fd, Buffer.allocUnsafe(readBytes), 0, readBytes, position, (error) =>
                error ? reject(error) : resolve(undefined),
              ),
            ),
        ),
      ),
    sync: async (positions) => {
      for (const position of positions) {
        readSync(fd, Buffer.allocUnsafe(readBytes), 0, readBytes, position);
      }
    },
    worker: (positions) =>
      new Promise((resolve) => {
        const id = nextId++;
        waiting.set(id, resolve);
        worker.postMessage({ id, fd, positions, length: readBytes });
      }),
    pool: (positions) =>
      Promise.all(positions.map((position) => pool.read(fd, position, readBytes))),
  };

  const randomPosition = () => Math.floor(Math.random() * (fileBytes / readBytes)) * readBytes;
  for (const mode of modes) {
    const way = ways[mode];
    if (way === undefined) throw new Error(`unknown mode ${mode}`);
    for (let round = 0; round < 2; round++) {
      let left = reads;
      const cpu = process.cpuUsage();
      const started = performance.now();
      await Promise.all(
        Array.from({ length: batches }, async () => {
          while (left > 0) {
            const count = Math.min(ranges, left);
            left -= count;
            await way(Array.from({ length: count }, randomPosition));
          }
        }),
      );
      const elapsedMs = performance.now() - started;
      const used = process.cpuUsage(cpu);
      if (round === 0) continue; // the first round warms up
      console.log(
        `${mode.padEnd(10)} ${((used.user + used.system) / reads).toFixed(2).padStart(6)} µs CPU per read` +
          ` (user ${(used.user / reads).toFixed(2)}, system ${(used.system / reads).toFixed(2)}),` +
          ` ${Math.round((reads / elapsedMs) * 1000)} reads/s`,
      );
    }
  }
  await worker.terminate();
  await pool.close();
  await handle.close();
} finally {
  await rm(directory, { recursive: true, force: true });
}
