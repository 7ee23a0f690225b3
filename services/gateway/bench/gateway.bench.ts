// End-to-end throughput through the NBD gateway: real NBD clients against a local
// cluster (gateway → head nodes → sleds, two replicas), all on this machine. Starts its
// own cluster in a temporary directory and removes it after.
//
//   node --import tsx services/gateway/bench/gateway.bench.ts

import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { freePort, LocalCluster } from "@ballast/cli";
import { subjects } from "@ballast/protocol";
import { Bus, connectNats, createLogger, startTracing } from "@ballast/runtime";

const run = promisify(execFile);
const mebibyte = 1024 * 1024;
const copyBytes = 256 * mebibyte;
const fioSeconds = 10;

const directory = await mkdtemp(join(tmpdir(), "ballast-gateway-bench-"));
const port = await freePort();
const cluster = await LocalCluster.start({
  dataDir: directory,
  coordinators: 1,
  headNodes: 3,
  sleds: 3,
  gateways: 1,
  nbdPortFirst: port,
  env: { BALLAST_LOG_LEVEL: "warn", BALLAST_SLED_DEVICE_BYTES: String(1024 * mebibyte) },
});
const logger = createLogger({ service: "bench", nodeId: "bench", level: "silent" });
const connection = await connectNats({
  servers: cluster.natsUrl,
  name: "bench",
  logger,
  access: cluster.natsAccess("operator"),
});
const bus = new Bus(connection, startTracing({ serviceName: "bench", instanceId: "bench" }).tracer);

async function untilReady<T>(attempt: () => Promise<T>): Promise<T> {
  for (let tries = 0; ; tries++) {
    try {
      return await attempt();
    } catch (error) {
      if (tries > 100) throw error;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
}

const rows: [string, string][] = [];
try {
  await untilReady(() =>
    bus.request(subjects.coordinator.build(), {
      type: "volume.create.v1",
      name: "bench",
      sizeBytes: 1024 * mebibyte,
    }),
  );
  const url = `nbd://127.0.0.1:${port}/bench`;
  await untilReady(() => run("nbdinfo", [url]));

  const source = join(directory, "in.raw");
  const target = join(directory, "out.raw");
  const data = randomBytes(copyBytes);
  await writeFile(source, data);
  let start = performance.now();
  await run("nbdcopy", ["--flush", source, url]);
  const inSeconds = (performance.now() - start) / 1000;
  start = performance.now();
  await run("nbdcopy", [url, target]);
  const outSeconds = (performance.now() - start) / 1000;
  const back = (await readFile(target)).subarray(0, copyBytes);
  const same =
    createHash("sha256").update(back).digest("hex") ===
    createHash("sha256").update(data).digest("hex");
  if (!same) throw new Error("the data read back differs from the data written");
  rows.push([
    `nbdcopy ${copyBytes / mebibyte} MiB in (with flush)`,
    `${(copyBytes / mebibyte / inSeconds).toFixed(1)} MiB/s`,
  ]);
  rows.push([
    `nbdcopy ${copyBytes / mebibyte} MiB out`,
    `${(copyBytes / mebibyte / outSeconds).toFixed(1)} MiB/s`,
  ]);

  for (const rw of ["randread", "randwrite"] as const) {
    const { stdout } = await run("fio", [
      "--name=bench",
      "--ioengine=nbd",
      `--uri=${url}`,
      `--rw=${rw}`,
      "--bs=4k",
      "--size=64M",
      "--iodepth=16",
      `--runtime=${fioSeconds}`,
      "--time_based",
      "--output-format=json",
    ]);
    const [job] = JSON.parse(stdout.slice(stdout.indexOf("{"))).jobs;
    const side = rw === "randread" ? job.read : job.write;
    const p50 = side.clat_ns?.percentile?.["50.000000"] ?? 0;
    const p99 = side.clat_ns?.percentile?.["99.000000"] ?? 0;
    rows.push([
      `fio ${rw} 4 KiB, queue depth 16`,
      `${Math.round(side.iops)} IOPS (p50 ${(p50 / 1e6).toFixed(1)} ms, p99 ${(p99 / 1e6).toFixed(1)} ms)`,
    ]);
  }
} finally {
  await connection.close();
  await cluster.stop();
  await rm(directory, { recursive: true, force: true });
}

process.stdout.write("gateway → head nodes → sleds, two replicas, one machine\n");
for (const [what, figure] of rows) process.stdout.write(`${what.padEnd(40)} ${figure}\n`);
