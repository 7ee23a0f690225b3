// Sled benchmark: what a sled process delivers through NATS, beside what fio gets from a
// plain file in the same directory in the same run, so the figures say how much of the
// disk the sled's path (message, checksums, group commit, two fdatasyncs per write)
// leaves on the table.
//
//   cd /work/main && node --import tsx services/sled/bench/sled.bench.ts
//
// It starts its own nats-server and one sled (LocalCluster) in a temporary directory,
// and removes both when done. Measured:
//   - 4 MiB chunk writes, acknowledged after fdatasync, several in flight;
//   - 4 KiB random chunk reads (each verified against its block CRC), several in flight;
//   - fio: sequential 4 MiB writes with fsync after each, and 4 KiB random reads
//     (buffered, like the sled), with as many jobs as the sled has requests in flight.
// Reads are served from the page cache in both cases: the point is the per-request cost.

import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { LocalCluster } from "@ballast/cli";
import { subjects } from "@ballast/protocol";
import { Bus, connectNats, createLogger, startTracing } from "@ballast/runtime";

const mebibyte = 1024 * 1024;
const chunkBytes = 4 * mebibyte;
const chunksToWrite = 64;
const writesInflight = 8;
const readBytes = 4096;
const readsInflight = 16;
const readSeconds = 5;
const fioFileBytes = chunksToWrite * chunkBytes;

interface Figures {
  opsPerSecond: number;
  mebibytesPerSecond: number;
  latencyMsP50: number;
  latencyMsP99: number;
}

async function main(): Promise<void> {
  const directory = await mkdtemp(join(tmpdir(), "ballast-sled-bench-"));
  const logger = createLogger({ service: "bench", nodeId: "bench", level: "silent" });
  let cluster: LocalCluster | undefined;
  try {
    cluster = await LocalCluster.start({
      dataDir: directory,
      coordinators: 0,
      headNodes: 0,
      sleds: 1,
      env: {
        BALLAST_SLED_DEVICES: "2",
        BALLAST_SLED_DEVICE_BYTES: String(512 * mebibyte),
        BALLAST_LOG_LEVEL: "warn",
      },
    });
    const connection = await connectNats({
      servers: cluster.natsUrl,
      name: "bench",
      logger,
      access: cluster.natsAccess("operator"),
    });
    const bus = new Bus(
      connection,
      startTracing({ serviceName: "bench", instanceId: "bench" }).tracer,
    );
    const inbox = subjects.node.build("sled", "sled-1");
    await waitForSled(bus, inbox);

    const owner = { volume: "bench", partition: 0 };
    const payload = new Uint8Array(chunkBytes);
    for (let at = 0; at < chunkBytes; at++) payload[at] = (at * 131) & 0xff;
    const write = await measure(chunksToWrite, writesInflight, async (index) => {
      payload[0] = index & 0xff; // every chunk differs
      await bus.request(
        inbox,
        { type: "sled.chunk.write.v1", owner, chunkId: `bench-${index}`, data: payload },
        { deadlineMs: 30_000 },
      );
    });
    const read = await measureFor(readSeconds, readsInflight, async (index) => {
      const chunk = randomInteger(chunksToWrite, index);
      const block = randomInteger(chunkBytes / readBytes, index * 7 + 1);
      await bus.request(inbox, {
        type: "sled.chunk.read.v1",
        owner,
        chunkId: `bench-${chunk}`,
        offset: block * readBytes,
        length: readBytes,
      });
    });
    const stat = await bus.request(inbox, { type: "sled.stat.v1" });
    const syncs = stat.devices.reduce((total, device) => total + device.syncs, 0);
    await connection.drain();
    await cluster.stop();
    cluster = undefined;

    const fioFile = join(directory, "fio.dat");
    const fioWrite = await fio(fioFile, [
      "--rw=write",
      `--bs=${chunkBytes}`,
      `--size=${fioFileBytes}`,
      "--fsync=1",
      "--numjobs=1",
    ]);
    const fioRead = await fio(fioFile, [
      "--rw=randread",
      `--bs=${readBytes}`,
      `--size=${fioFileBytes}`,
      `--numjobs=${readsInflight}`,
      `--runtime=${readSeconds}`,
      "--time_based",
    ]);

    const rows: [string, string, string][] = [
      [
        `4 MiB writes + fsync (${writesInflight} in flight)`,
        `${write.mebibytesPerSecond.toFixed(0)} MiB/s, p50 ${write.latencyMsP50.toFixed(1)} ms, p99 ${write.latencyMsP99.toFixed(1)} ms`,
        fioWrite === undefined
          ? "fio unavailable"
          : `${fioWrite.mebibytesPerSecond.toFixed(0)} MiB/s (1 job)`,
      ],
      [
        `4 KiB random reads (${readsInflight} in flight)`,
        `${Math.round(read.opsPerSecond)} IOPS, p50 ${read.latencyMsP50.toFixed(2)} ms, p99 ${read.latencyMsP99.toFixed(2)} ms`,
        fioRead === undefined
          ? "fio unavailable"
          : `${Math.round(fioRead.opsPerSecond)} IOPS (${readsInflight} jobs)`,
      ],
    ];
    printTable(["", "sled via NATS", "fio, plain file"], rows);
    process.stdout.write(
      `group commit: ${syncs} fdatasyncs for ${chunksToWrite} chunk writes (two per write unshared)\n`,
    );
  } finally {
    await cluster?.stop().catch(() => undefined);
    await rm(directory, { recursive: true, force: true });
  }
}

async function waitForSled(bus: Bus, inbox: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      await bus.request(inbox, { type: "node.info.v1" }, { deadlineMs: 500 });
      return;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

/** Runs `count` operations with `inflight` at a time. */
async function measure(
  count: number,
  inflight: number,
  operation: (index: number) => Promise<void>,
): Promise<Figures> {
  const latenciesMs: number[] = [];
  let next = 0;
  const startedAt = performance.now();
  await Promise.all(
    Array.from({ length: inflight }, async () => {
      while (next < count) {
        const index = next++;
        const before = performance.now();
        await operation(index);
        latenciesMs.push(performance.now() - before);
      }
    }),
  );
  return figures(latenciesMs, (performance.now() - startedAt) / 1000, chunkBytes);
}

/** Runs operations for `seconds` with `inflight` at a time. */
async function measureFor(
  seconds: number,
  inflight: number,
  operation: (index: number) => Promise<void>,
): Promise<Figures> {
  const latenciesMs: number[] = [];
  let next = 0;
  const startedAt = performance.now();
  const endAt = startedAt + seconds * 1000;
  await Promise.all(
    Array.from({ length: inflight }, async () => {
      while (performance.now() < endAt) {
        const before = performance.now();
        await operation(next++);
        latenciesMs.push(performance.now() - before);
      }
    }),
  );
  return figures(latenciesMs, (performance.now() - startedAt) / 1000, readBytes);
}

function figures(latenciesMs: number[], seconds: number, bytesEach: number): Figures {
  const sorted = [...latenciesMs].sort((a, b) => a - b);
  const at = (fraction: number) =>
    sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * fraction))] ?? 0;
  return {
    opsPerSecond: sorted.length / seconds,
    mebibytesPerSecond: (sorted.length * bytesEach) / mebibyte / seconds,
    latencyMsP50: at(0.5),
    latencyMsP99: at(0.99),
  };
}

/** A seeded spread of integers below `limit` (no Math.random: runs are comparable). */
function randomInteger(limit: number, seed: number): number {
  let state = (seed * 2654435761) >>> 0;
  state ^= state >>> 16;
  state = Math.imul(state, 0x45d9f3b) >>> 0;
  state ^= state >>> 16;
  return (state >>> 0) % limit;
}

async function fio(file: string, options: string[]): Promise<Figures | undefined> {
  try {
    const { stdout } = await promisify(execFile)(
      "fio",
      [
        "--name=bench",
        `--filename=${file}`,
        "--ioengine=psync",
        "--direct=0",
        "--group_reporting",
        "--output-format=json",
        ...options,
      ],
      { maxBuffer: 16 * mebibyte },
    );
    const job = JSON.parse(stdout).jobs[0];
    const side = job.write.io_bytes > 0 ? job.write : job.read;
    return {
      opsPerSecond: side.iops,
      mebibytesPerSecond: side.bw_bytes / mebibyte,
      latencyMsP50: (side.clat_ns?.percentile?.["50.000000"] ?? 0) / 1e6,
      latencyMsP99: (side.clat_ns?.percentile?.["99.000000"] ?? 0) / 1e6,
    };
  } catch (error) {
    process.stderr.write(`fio failed: ${(error as Error).message}\n`);
    return undefined;
  }
}

function printTable(header: string[], rows: string[][]): void {
  const all = [header, ...rows];
  const widths = header.map((_, column) => Math.max(...all.map((row) => row[column]!.length)));
  for (const row of all) {
    process.stdout.write(
      `${row.map((cell, column) => cell.padEnd(widths[column]!)).join("  |  ")}\n`,
    );
  }
}

const startedAt = performance.now();
await main();
process.stdout.write(
  `(sled benchmark took ${((performance.now() - startedAt) / 1000).toFixed(1)} s)\n`,
);
// Timers of libraries (NATS reconnects, the tracer) must not keep a finished run alive.
process.exit(0);
