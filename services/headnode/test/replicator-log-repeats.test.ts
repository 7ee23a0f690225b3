import type { Logger } from "@ballast/runtime";
import { describe, expect, test } from "vitest";
import type { ChunkEntry } from "../src/replica/metadata.ts";
import { type ReplicatedPartition, Replicator, replicatorIntervalMs } from "../src/replicator.ts";

/**
 * Log volume of the re-replication pass under a lasting fault: a fake clock (the pass's
 * `clock`) and a captured logger (a fake standing in for pino), so an hour of passes runs
 * at once and the lines are counted.
 */

interface Line {
  level: "info" | "warn" | "error";
  message: string;
  fields: Record<string, unknown>;
}

function capturedLogger(): { logger: Logger; lines: Line[] } {
  const lines: Line[] = [];
  const at =
    (level: Line["level"]) =>
    (fields: Record<string, unknown> | string, message?: string): void => {
      if (typeof fields === "string") lines.push({ level, message: fields, fields: {} });
      else lines.push({ level, message: message ?? "", fields });
    };
  const logger = { info: at("info"), warn: at("warn"), error: at("error"), debug: () => {} };
  return { logger: logger as unknown as Logger, lines };
}

function primary(chunks: Map<number, ChunkEntry>, sleds: string[]): ReplicatedPartition {
  return {
    address: { volume: "v", volumeId: "1-v", partition: 0 },
    roleName: "primary",
    sleds,
    replica: {
      metadata: { chunks } as ReplicatedPartition["replica"]["metadata"],
      recordCopies: () => {},
      requestCheckpoint: () => {},
      recordedCheckpoint: undefined,
    },
  };
}

const noBlobs = {
  checkChunk: async () => [],
  statBlob: async () => undefined,
  copyBlob: async (): Promise<string> => {
    throw new Error("no checkpoint in this test");
  },
  statChunk: async () => undefined,
  getBlob: async (): Promise<{ data: Uint8Array; sled: string }> => {
    throw new Error("no checkpoint in this test");
  },
};

const repeatMs = 5 * 60_000;
const hourMs = 60 * 60_000;

describe("re-replication pass under a lasting fault: lines at a bounded rate", () => {
  test("a sled out with no sled to copy to: the data-at-risk warning when it begins, a reminder per interval with the count, and a line when it ends", async () => {
    const { logger, lines } = capturedLogger();
    let nowMs = 0;
    const chunks = new Map<number, ChunkEntry>([
      [1, { sledChunkId: "v/0/1", copies: ["sled-1", "sled-3"], bytes: 4096 }],
    ]);
    let sleds = ["sled-1", "sled-3"];
    const replicator = new Replicator({
      logger,
      partitions: () => [{ ...primary(chunks, sleds) }],
      sleds: { copyChunk: async (_owner, _chunk, from) => from[0]!, ...noBlobs },
      logRepeatIntervalMs: repeatMs,
      clock: () => nowMs,
    });
    replicator.setOut(["sled-3"]);
    await replicator.pass();
    for (; nowMs < hourMs; nowMs += replicatorIntervalMs) await replicator.pass();
    const stuck = lines.filter((line) => line.message.includes("have no live sled to copy to"));
    // 121 passes in the hour (one a replicatorIntervalMs) met it; one line per interval.
    expect(stuck.every((line) => line.level === "warn")).toBe(true);
    expect(stuck).toHaveLength(hourMs / repeatMs);
    expect(stuck[0]!.fields.repeatsSuppressed).toBeUndefined();
    // The passes left out since the last line (setOut's pass at 0 among them).
    expect(stuck[1]!.fields.repeatsSuppressed).toBeGreaterThanOrEqual(
      repeatMs / replicatorIntervalMs - 1,
    );
    // A sled to copy to comes: the chunk is copied, and the end is said once.
    sleds = ["sled-1", "sled-2", "sled-3"];
    await replicator.pass();
    nowMs += replicatorIntervalMs;
    await replicator.pass();
    const ended = lines.filter((line) => line.message.startsWith("no chunk is left without"));
    expect(ended).toHaveLength(1);
    await replicator.close();
  });

  test("copies to a sled that fails every pass (full): one warning per partition and sled per interval, not one per chunk per pass", async () => {
    const { logger, lines } = capturedLogger();
    let nowMs = 0;
    const chunks = new Map<number, ChunkEntry>();
    for (let n = 0; n < 20; n++) {
      chunks.set(n, { sledChunkId: `v/0/${n}`, copies: ["sled-1", "sled-3"], bytes: 4096 });
    }
    let full = true;
    const replicator = new Replicator({
      logger,
      partitions: () => [primary(chunks, ["sled-1", "sled-2", "sled-3"])],
      sleds: {
        copyChunk: async (_owner, _chunk, from, to) => {
          if (full) throw new Error(`${to} is full`);
          return from[0]!;
        },
        ...noBlobs,
      },
      logRepeatIntervalMs: repeatMs,
      clock: () => nowMs,
    });
    replicator.setOut(["sled-3"]);
    await replicator.pass();
    for (; nowMs < hourMs; nowMs += replicatorIntervalMs) await replicator.pass();
    const failed = lines.filter((line) => line.message.startsWith("could not copy a chunk"));
    const work = lines.filter((line) => line.message === "re-replicating chunks short of copies");
    // Old: 20 chunks × 121 passes warnings, and an info line a pass.
    expect(failed).toHaveLength(hourMs / repeatMs);
    expect(failed.every((line) => line.level === "warn" && line.fields.to === "sled-2")).toBe(true);
    expect(work).toHaveLength(hourMs / repeatMs);
    // The sled has room again: the copies are made, the first says how many failed unsaid.
    full = false;
    await replicator.pass();
    const made = lines.filter(
      (line) => line.message === "made a new copy of a chunk short of copies",
    );
    expect(made).toHaveLength(20);
    expect(made.filter((line) => line.fields.afterFailuresSuppressed !== undefined)).toHaveLength(
      1,
    );
    await replicator.close();
  });
});
