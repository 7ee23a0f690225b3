// CPU the NBD server spends per request, alone: fio (ioengine=nbd) writes 4 KiB blocks
// at random at QD32 and QD1 to an NbdServer in this process whose device answers at
// once and keeps nothing, so what is measured is the server's request loop, reply
// path and sockets (the gateway's share of a write, without the client library).
//
//   node --import tsx packages/nbd/bench/transmission.bench.ts [seconds] [rounds]

import { execFile } from "node:child_process";
import { promisify } from "node:util";
import type { OperationOptions } from "@ballast/client";
import { type BlockDevice, NbdServer } from "../src/index.ts";

const run = promisify(execFile);
const seconds = Number(process.argv[2] ?? 5);
const rounds = Number(process.argv[3] ?? 2);
const deviceBytes = 256 * 1024 * 1024;

/** A device that answers every operation at once and stores nothing. */
class NullDevice implements BlockDevice {
  readonly name = "null";
  readonly sizeBytes = deviceBytes;
  readonly readOnly = false;
  async read(_offset: number, length: number, _options?: OperationOptions): Promise<Uint8Array> {
    return new Uint8Array(length);
  }
  write(): Promise<void> {
    return Promise.resolve();
  }
  trim(): Promise<void> {
    return Promise.resolve();
  }
  writeZeroes(): Promise<void> {
    return Promise.resolve();
  }
  flush(): Promise<void> {
    return Promise.resolve();
  }
}

const device = new NullDevice();
const server = new NbdServer({
  openExport: async (name) => (name === device.name ? device : undefined),
  listExports: async () => [device.name],
});
const { port } = await server.listen({ host: "127.0.0.1", port: 0 });

async function job(iodepth: number): Promise<void> {
  const before = process.cpuUsage();
  const { stdout } = await run(
    "fio",
    [
      "--name=w",
      "--ioengine=nbd",
      `--uri=nbd://127.0.0.1:${port}/${device.name}`,
      "--rw=randwrite",
      "--bs=4096",
      `--iodepth=${iodepth}`,
      `--size=${deviceBytes}`,
      "--output-format=json",
      "--time_based",
      `--runtime=${seconds}`,
    ],
    { maxBuffer: 16 * 1024 * 1024 },
  );
  const used = process.cpuUsage(before);
  const writes = JSON.parse(stdout.slice(stdout.indexOf("{"))).jobs[0].write.total_ios as number;
  process.stdout.write(
    `QD${iodepth}: ${(writes / seconds).toFixed(0)} IOPS, server CPU ${((used.user + used.system) / writes).toFixed(2)} us a write (system ${(used.system / writes).toFixed(2)})\n`,
  );
}

try {
  for (let round = 0; round < rounds; round++) {
    await job(32);
    await job(1);
  }
} finally {
  await server.close();
}
