// The chaos workload: concurrent clients, each the single writer of its own 4 KiB blocks,
// some through the client library and some through the NBD gateway, recording every
// operation as BlockOps for the checker (checker.ts).
//
// Outcomes are conservative. A write that was acknowledged is `ok`. A write that was
// never sent (no NBD connection could be made) is `fail`. Everything else that might
// have reached the cluster (an error answer, a timeout, a dropped connection) is
// `unknown`: it may take effect at any later time or never. Reads that fail say nothing
// and are recorded as `unknown`, which the checker ignores.
//
// A multi-block write is recorded as one write per block (each block is its own
// register); the workload's blocks are laid out so that some ranges cross a partition
// boundary, and multi-block writes into those cross it.

import type { Volume } from "@ballast/client";
import type { BlockOp, Outcome } from "./checker.ts";
import { ChaosNbdClient, nbdCommand } from "./nbd-client.ts";
import {
  type BlockValue,
  decodeBlock,
  encodeBlock,
  payloadBlockBytes,
  volumeTagOf,
} from "./payload.ts";
import type { Random } from "./random.ts";

export type OpKind = "write" | "read" | "trim" | "write-zeroes" | "flush" | "multi-write";
export const opKinds: readonly OpKind[] = [
  "write",
  "read",
  "trim",
  "write-zeroes",
  "flush",
  "multi-write",
];

/** How long one client operation may take before it counts as `unknown`. */
export const operationTimeoutMs = 15_000;
/** How long an NBD client waits for a connection and handshake. */
export const nbdConnectTimeoutMs = 3000;
/** Pause after a failed operation, so a client does not spin while the cluster is down. */
export const pauseAfterFailureMs = 200;
/** Blocks in one owned range; multi-block writes stay within a range. */
export const rangeBlocks = 4;

/** The history of a run, with times in ms since the run began. */
export class History {
  readonly ops: BlockOp[] = [];
  private readonly origin = performance.now();
  nowMs(): number {
    return Math.round((performance.now() - this.origin) * 1000) / 1000;
  }
  add(op: Omit<BlockOp, "id">): BlockOp {
    const recorded = { id: this.ops.length + 1, ...op };
    this.ops.push(recorded);
    return recorded;
  }
}

/** What each client did, by operation kind and outcome, and when it last succeeded. */
export interface ClientStats {
  name: string;
  /** Completion times (history ms) of every successful operation. */
  successesMs: number[];
  counts: Record<OpKind, Record<Outcome, number>>;
}

/** One way to reach a volume: the client library, or an NBD connection. */
/**
 * One client's way to the volume. `signal` fires when the client gives up on the
 * operation (its timeout): the library then sends no further attempt (an abandoned
 * operation would go on retrying and could land after the client's next write to the
 * same blocks); an NBD connection is closed on a timeout, and the gateway aborts what
 * the connection had in flight.
 */
export interface BlockPort {
  readonly via: "library" | "nbd";
  write(offset: number, data: Uint8Array, signal: AbortSignal): Promise<void>;
  read(offset: number, length: number, signal: AbortSignal): Promise<Uint8Array>;
  trim(offset: number, length: number, signal: AbortSignal): Promise<void>;
  writeZeroes(offset: number, length: number, signal: AbortSignal): Promise<void>;
  flush(): Promise<void>;
  close(): void;
}

/** Raised when an operation was certainly not sent. */
export class NotSentError extends Error {}

export function libraryPort(volume: Volume): BlockPort {
  return {
    via: "library",
    write: (offset, data, signal) => volume.write(offset, data, { signal }),
    read: (offset, length, signal) => volume.read(offset, length, { signal }),
    trim: (offset, length, signal) => volume.trim(offset, length, { signal }),
    writeZeroes: (offset, length, signal) => volume.writeZeroes(offset, length, { signal }),
    flush: () => volume.flush(),
    close: () => void volume.close().catch(() => undefined),
  };
}

export function nbdPort(port: () => number, exportName: string): BlockPort {
  let client: ChaosNbdClient | undefined;
  const connected = async () => {
    if (client !== undefined) return client;
    try {
      client = await ChaosNbdClient.open(port(), exportName, nbdConnectTimeoutMs);
    } catch (error) {
      throw new NotSentError(`no NBD connection: ${(error as Error).message}`);
    }
    return client;
  };
  const run = async (command: number, offset: number, length: number, data?: Uint8Array) => {
    const connection = await connected();
    try {
      return await connection.request(command, offset, length, operationTimeoutMs, data);
    } catch (error) {
      connection.close();
      if (client === connection) client = undefined;
      throw error;
    }
  };
  return {
    via: "nbd",
    write: async (offset, data) => void (await run(nbdCommand.write, offset, data.length, data)),
    read: async (offset, length) => new Uint8Array(await run(nbdCommand.read, offset, length)),
    trim: async (offset, length) => void (await run(nbdCommand.trim, offset, length)),
    writeZeroes: async (offset, length) => void (await run(nbdCommand.writeZeroes, offset, length)),
    flush: async () => void (await run(nbdCommand.flush, 0, 0)),
    close: () => client?.close(),
  };
}

export interface ClientPlan {
  name: string;
  /** The writer number stamped into this client's blocks. */
  writer: number;
  volume: string;
  /** First block of each range this client owns (rangeBlocks blocks each). */
  ranges: number[];
  port: BlockPort;
  random: Random;
}

function emptyCounts(): Record<OpKind, Record<Outcome, number>> {
  const counts = {} as Record<OpKind, Record<Outcome, number>>;
  for (const kind of opKinds) counts[kind] = { ok: 0, fail: 0, unknown: 0 };
  return counts;
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
    }),
  ]);
}

/**
 * Runs one client until `keepGoing()` says stop: each loop one operation on its own
 * blocks, recorded into `history`.
 */
export async function runClient(
  plan: ClientPlan,
  history: History,
  keepGoing: () => boolean,
): Promise<ClientStats> {
  const stats: ClientStats = { name: plan.name, successesMs: [], counts: emptyCounts() };
  const tag = volumeTagOf(plan.volume);
  let sequence = 0;
  const { random, port } = plan;
  while (keepGoing()) {
    const draw = random.next();
    const kind: OpKind =
      draw < 0.42
        ? "write"
        : draw < 0.72
          ? "read"
          : draw < 0.78
            ? "trim"
            : draw < 0.84
              ? "write-zeroes"
              : draw < 0.9
                ? "flush"
                : "multi-write";
    const start = random.pick(plan.ranges);
    const count = kind === "multi-write" || kind === "read" ? random.between(1, rangeBlocks) : 1;
    const first = start + random.int(rangeBlocks - count + 1);
    const blocks = Array.from({ length: count }, (_, index) => first + index);
    const offset = first * payloadBlockBytes;
    const length = count * payloadBlockBytes;
    const invokeMs = history.nowMs();
    const base = { process: plan.name, volume: plan.volume, invokeMs };
    let outcome: Outcome;
    switch (kind) {
      case "write":
      case "multi-write":
      case "trim":
      case "write-zeroes": {
        const values: BlockValue[] = blocks.map((_block) =>
          kind === "trim" || kind === "write-zeroes"
            ? { kind: "zero" }
            : { kind: "data", writer: plan.writer, sequence: ++sequence },
        );
        const data =
          kind === "write" || kind === "multi-write"
            ? concat(
                blocks.map((block, index) =>
                  encodeBlock(
                    tag,
                    block,
                    plan.writer,
                    (values[index] as { sequence: number }).sequence,
                  ),
                ),
              )
            : undefined;
        outcome = await settle((signal) =>
          data !== undefined
            ? port.write(offset, data, signal)
            : kind === "trim"
              ? port.trim(offset, length, signal)
              : port.writeZeroes(offset, length, signal),
        );
        const completeMs = history.nowMs();
        blocks.forEach((block, index) => {
          history.add({
            ...base,
            kind: "write",
            block,
            value: values[index]!,
            outcome,
            ...(outcome === "ok" ? { completeMs } : {}),
          });
        });
        break;
      }
      case "read": {
        let data: Uint8Array | undefined;
        outcome = await settle((signal) =>
          port.read(offset, length, signal).then((bytes) => {
            data = bytes;
          }),
        );
        const completeMs = history.nowMs();
        blocks.forEach((block, index) => {
          const value: BlockValue =
            data === undefined
              ? { kind: "zero" }
              : decodeBlock(
                  data.subarray(index * payloadBlockBytes, (index + 1) * payloadBlockBytes),
                  tag,
                  block,
                );
          history.add({
            ...base,
            kind: "read",
            block,
            value,
            outcome: outcome === "ok" ? "ok" : "unknown",
            ...(outcome === "ok" ? { completeMs } : {}),
          });
        });
        break;
      }
      case "flush":
        outcome = await settle(() => port.flush());
        break;
      default: {
        const unreachable: never = kind;
        throw new Error(`unknown operation ${String(unreachable)}`);
      }
    }
    stats.counts[kind][outcome]++;
    if (outcome === "ok") stats.successesMs.push(history.nowMs());
    else await new Promise((resolve) => setTimeout(resolve, pauseAfterFailureMs));
  }
  port.close();
  return stats;
}

/**
 * ok if it resolved; fail if it was certainly never sent; unknown otherwise. On the
 * timeout the operation is aborted, so that it sends nothing more.
 */
async function settle(start: (signal: AbortSignal) => Promise<void>): Promise<Outcome> {
  const controller = new AbortController();
  const operation = start(controller.signal);
  try {
    await withTimeout(operation, operationTimeoutMs);
    return "ok";
  } catch (error) {
    controller.abort(error);
    operation.catch(() => undefined);
    return error instanceof NotSentError ? "fail" : "unknown";
  }
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const bytes = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let at = 0;
  for (const part of parts) {
    bytes.set(part, at);
    at += part.length;
  }
  return bytes;
}
