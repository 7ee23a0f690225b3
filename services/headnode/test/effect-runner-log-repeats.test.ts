// Log volume of a chunk write that fails as long as its sleds are full or dead: the core
// retries the flush every flushRetryTicks (half a second), and each failure used to be a
// warning. A stub core, stub ports with a fake clock, and a captured log (fakes: a unit
// test) run an hour of retries at once and count the lines.

import { BallastError, ErrorCode } from "@ballast/protocol";
import { describe, expect, it } from "vitest";
import { replicaLimitsDefault, tickMs } from "../src/constants.ts";
import { EffectRunner, type RunnerLog } from "../src/effect-runner.ts";
import type { ReplicaPorts } from "../src/ports.ts";
import type { Effect } from "../src/replica/effects.ts";
import type { Replica } from "../src/replica/replica.ts";

interface Line {
  level: string;
  fields: Record<string, unknown>;
  message: string;
}

describe("effect runner: a lasting chunk write failure is logged at a bounded rate", () => {
  it("warns when it begins, then once per interval with the count left out, and says when writes succeed again", () => {
    const lines: Line[] = [];
    const log: RunnerLog = {
      info: (fields, message) => lines.push({ level: "info", fields: { ...fields }, message }),
      warn: (fields, message) => lines.push({ level: "warn", fields: { ...fields }, message }),
      error: (fields, message) => lines.push({ level: "error", fields: { ...fields }, message }),
    };
    let nowMs = 0;
    let full = true;
    const failures: string[] = [];
    const pending: Effect[] = [];
    const core = {
      drainEffects: () => pending.splice(0),
      onChunkFailed: (_chunk: number, reason?: string) => failures.push(reason ?? "other"),
      onChunkWritten: () => {},
    } as unknown as Replica;
    const ports = {
      clock: { nowMs: () => nowMs, wallMs: () => nowMs },
      sleds: {
        writeChunk: (_effect: unknown, _sleds: unknown, done: (outcome: unknown) => void) =>
          done(
            full
              ? { ok: false, error: new BallastError(ErrorCode.NoSpace, "sled-1 is full") }
              : { ok: true, value: ["sled-1", "sled-2"] },
          ),
      },
    } as unknown as ReplicaPorts;
    const repeatMs = 5 * 60_000;
    const runner = new EffectRunner(core, ports, {
      reply: () => {},
      replyError: () => {},
      fatal: () => {},
      log,
      logRepeatIntervalMs: repeatMs,
    });
    const retryMs = replicaLimitsDefault.flushRetryTicks * tickMs;
    const hourMs = 60 * 60_000;
    const write: Effect = {
      type: "chunk.write",
      chunkNumber: 3,
      sledChunkId: "v/0/3",
      data: new Uint8Array(8),
    } as unknown as Effect;
    for (; nowMs < hourMs; nowMs += retryMs) {
      pending.push(write);
      runner.run();
    }
    // Every failure still reaches the core (it refuses writes NoSpace meanwhile).
    expect(failures).toHaveLength(hourMs / retryMs);
    expect(failures.every((reason) => reason === "no-space")).toBe(true);
    const warned = lines.filter((line) => line.message === "chunk write failed; will retry");
    // Old: one warning a retry, 7200 an hour.
    expect(warned).toHaveLength(hourMs / repeatMs);
    expect(warned.every((line) => line.level === "warn")).toBe(true);
    expect(warned[1]!.fields.repeatsSuppressed).toBe(repeatMs / retryMs - 1);
    full = false;
    pending.push(write);
    runner.run();
    pending.push(write);
    runner.run();
    const ended = lines.filter((line) => line.message === "chunk writes to sleds succeed again");
    expect(ended).toHaveLength(1);
    expect(ended[0]!.level).toBe("info");
  });
});
