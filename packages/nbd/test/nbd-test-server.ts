// Starts an NbdServer on 127.0.0.1 (a free port) over fake devices, for tests.

import type { Logger } from "@ballast/runtime";
import { type BlockDevice, type NbdLimits, NbdServer } from "../src/index.ts";

export interface TestServer {
  server: NbdServer;
  address: { port: number };
}

export interface TestServerOptions {
  devices: BlockDevice[];
  limits?: Partial<NbdLimits>;
  /** Replaces the lookup by name, to make it fail or wait. */
  openExport?: (name: string) => Promise<BlockDevice | undefined>;
  listExports?: () => Promise<string[]>;
  /** Told of each device a connection is done with. */
  releaseExport?: (device: BlockDevice) => void;
  /** Logs there (silent without). */
  logger?: Logger;
  clock?: () => number;
}

export async function startTestServer(options: TestServerOptions): Promise<TestServer> {
  const byName = new Map(options.devices.map((device) => [device.name, device]));
  const server = new NbdServer({
    openExport: options.openExport ?? (async (name) => byName.get(name)),
    listExports: options.listExports ?? (async () => [...byName.keys()]),
    ...(options.releaseExport === undefined ? {} : { releaseExport: options.releaseExport }),
    ...(options.limits === undefined ? {} : { limits: options.limits }),
    ...(options.logger === undefined ? {} : { logger: options.logger }),
    ...(options.clock === undefined ? {} : { clock: options.clock }),
  });
  const bound = await server.listen({ host: "127.0.0.1", port: 0 });
  if (bound.port === undefined) throw new Error("the server did not report a port");
  return { server, address: { port: bound.port } };
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `condition` until it holds, or throws after `waitMs`. */
export async function waitUntil(
  condition: () => boolean,
  what: string,
  waitMs = 5000,
): Promise<void> {
  const deadline = Date.now() + waitMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await sleep(5);
  }
}

/** Bytes that differ by seed and position. */
export function patterned(bytes: number, seed: number): Buffer {
  const data = Buffer.alloc(bytes);
  for (let at = 0; at < bytes; at++) data[at] = (at * 31 + seed * 17 + (at >> 9)) & 0xff;
  return data;
}
