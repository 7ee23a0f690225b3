// Shared helpers of the sled's unit tests: a store on real device files in a temporary
// directory, deterministic data, and a way to catch a BallastError's code.

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BallastError } from "@ballast/protocol";
import { createLogger } from "@ballast/runtime";
import { openDeviceSet } from "../src/device-set.ts";
import type { GenerationMarkStore } from "../src/generation-mark.ts";
import { SledStore } from "../src/store.ts";

export const silentLogger = createLogger({ service: "sled-test", nodeId: "test", level: "silent" });

export const mebibyte = 1024 * 1024;

export async function temporaryDirectory(): Promise<{ path: string; remove(): Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), "ballast-sled-test-"));
  return { path, remove: () => rm(path, { recursive: true, force: true }) };
}

export interface StoreOnFilesOptions {
  dataDir: string;
  sledId?: string;
  deviceCount?: number;
  deviceBytes?: number;
  nowMs?: () => number;
  generationMark?: GenerationMarkStore;
  generationMarkBatch?: number;
}

export async function openStoreOnFiles(options: StoreOnFilesOptions) {
  const sledId = options.sledId ?? "sled-1";
  const devices = await openDeviceSet({
    dataDir: options.dataDir,
    sledId,
    deviceCount: options.deviceCount ?? 2,
    deviceBytes: options.deviceBytes ?? 8 * mebibyte,
    log: () => undefined,
  });
  return SledStore.open({
    sledId,
    devices,
    logger: silentLogger,
    ...(options.nowMs === undefined ? {} : { nowMs: options.nowMs }),
    ...(options.generationMark === undefined ? {} : { generationMark: options.generationMark }),
    ...(options.generationMarkBatch === undefined
      ? {}
      : { generationMarkBatch: options.generationMarkBatch }),
  });
}

/** Bytes that depend on `seed` and position, so that a misplaced block shows. */
export function patterned(bytes: number, seed: number): Buffer {
  const data = Buffer.alloc(Math.ceil(bytes / 4) * 4);
  let state = (seed * 2654435761) >>> 0 || 1;
  for (let at = 0; at < data.byteLength; at += 4) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    data.writeUInt32LE(state >>> 0, at);
  }
  return data.subarray(0, bytes);
}

/** The code of the BallastError `work` rejects with. */
export async function codeOf(work: () => unknown): Promise<string> {
  try {
    await work();
  } catch (error) {
    if (error instanceof BallastError) return error.code;
    throw error;
  }
  throw new Error("expected a BallastError, but it succeeded");
}
