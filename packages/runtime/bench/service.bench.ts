// The cost of one NATS hop through the service shell: request/reply round trips from a
// Bus to a Service through a real nats-server on 127.0.0.1, both ends in this process,
// tracing and metrics off (as on the write path by default). Beside it, the floor: the
// same requests answered by a bare nats.js callback responder (a fixed reply, no decode,
// no dispatch), and by a bare `for await` responder, which shows what the async
// iterator costs per message. The requester is the same Bus in every row, so the
// differences between rows are the responding side's.
//
// Figures are wall time per round trip at queue depth 1 and CPU time of this process per
// round trip at QD1 and QD32 (the CPU figure is the steadier one on a shared machine;
// nats-server's own CPU is not counted).
//
//   npm run bench:micro runtime/bench
//   node --import tsx packages/runtime/bench/service.bench.ts [shell|bare|iterator]
//   (a word keeps only the rows whose name contains it, e.g. to profile one of them)

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startNatsServer } from "@ballast/cli";
import { encodeResult } from "@ballast/protocol";
import { Bus, connectNats, createLogger, Service } from "@ballast/runtime";
import type { NatsConnection } from "@nats-io/transport-node";

const warmupRoundTrips = 2_000;
const roundTrips = 20_000;
const depthPipelined = 32;
const repeats = 3;

const logger = createLogger({ service: "bench", nodeId: "bench", level: "silent" });
const directory = await mkdtemp(join(tmpdir(), "ballast-service-bench-"));
const nats = await startNatsServer({ directory });

const flush = { type: "volume.flush.v1" as const, volume: "v", partition: 0, epoch: 1 };

function connection(name: string): Promise<NatsConnection> {
  return connectNats({ servers: nats.url, name, logger });
}

/** Runs `count` round trips, `depth` at a time; returns wall and CPU µs per round trip. */
async function measure(
  send: () => Promise<unknown>,
  count: number,
  depth: number,
): Promise<{ wallUs: number; cpuUs: number }> {
  let next = 0;
  const worker = async () => {
    while (next++ < count) await send();
  };
  const cpu = process.cpuUsage();
  const started = process.hrtime.bigint();
  await Promise.all(Array.from({ length: depth }, worker));
  const wallNs = Number(process.hrtime.bigint() - started);
  const used = process.cpuUsage(cpu);
  return { wallUs: wallNs / 1000 / count, cpuUs: (used.user + used.system) / count };
}

interface Case {
  name: string;
  send: () => Promise<unknown>;
}

const closers: (() => Promise<void>)[] = [];
const cases: Case[] = [];

// The floor: a bare callback responder and nats.js's own request.
{
  const server = await connection("bare-server");
  const client = new Bus(await connection("bare-client"), undefined);
  const reply = encodeResult({ flushedOpNum: 1 });
  server.subscribe("bench.bare", {
    callback: (_error, message) => {
      message.respond(reply);
    },
  });
  await server.flush();
  cases.push({
    name: "bare nats.js (callback responder)",
    send: () => client.request("bench.bare", flush),
  });
  closers.push(async () => {
    await client.connection.close();
    await server.close();
  });
}

// The same with a `for await` responder: what an async iterator costs per message.
{
  const server = await connection("iterator-server");
  const client = new Bus(await connection("iterator-client"), undefined);
  const reply = encodeResult({ flushedOpNum: 1 });
  const subscription = server.subscribe("bench.iterator");
  void (async () => {
    for await (const message of subscription) message.respond(reply);
  })();
  await server.flush();
  cases.push({
    name: "bare nats.js (for await responder, iterator)",
    send: () => client.request("bench.iterator", flush),
  });
  closers.push(async () => {
    await client.connection.close();
    await server.close();
  });
}

// The shell: Service.serve answering a Bus request, as every hop of the write path does.
{
  const service = new Service({
    kind: "headnode",
    nodeId: "bench-head",
    bus: new Bus(await connection("shell-server"), undefined),
    tracer: undefined,
    logger,
    heartbeatIntervalMs: 1000,
  });
  service.serve("bench.shell", { accept: ["volume.flush.v1"] }, () => ({ flushedOpNum: 1 }));
  await service.bus.connection.flush();
  const client = new Bus(await connection("shell-client"), undefined);
  cases.push({
    name: "service shell (Bus → Service)",
    send: () => client.request("bench.shell", flush),
  });
  closers.push(async () => {
    await client.connection.close();
    await service.stop("bench over");
  });
}

try {
  const only = process.argv[2] ?? "";
  for (const { name, send } of cases.filter((row) => row.name.includes(only))) {
    await measure(send, warmupRoundTrips, 1);
    const qd1: { wallUs: number; cpuUs: number }[] = [];
    const qd32: { wallUs: number; cpuUs: number }[] = [];
    for (let repeat = 0; repeat < repeats; repeat++) {
      qd1.push(await measure(send, roundTrips, 1));
      qd32.push(await measure(send, roundTrips, depthPipelined));
    }
    const best = (rows: { wallUs: number; cpuUs: number }[], key: "wallUs" | "cpuUs") =>
      Math.min(...rows.map((row) => row[key])).toFixed(1);
    process.stdout.write(
      `${name.padEnd(46)} QD1 ${best(qd1, "wallUs")} µs/round trip, ${best(qd1, "cpuUs")} µs CPU;` +
        ` QD${depthPipelined} ${best(qd32, "cpuUs")} µs CPU/round trip (best of ${repeats})\n`,
    );
  }
} finally {
  for (const close of closers) await close();
  await nats.stop();
  await rm(directory, { recursive: true, force: true });
}
