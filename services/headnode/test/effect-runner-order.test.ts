// The effect runner's order (effect-runner.ts, "Order"): a shell that defers the
// journal (the head node) gets a drain's sends out before its journal effects, which it
// hands over later, still in the order the core gave them; without the hook (the
// simulators) every effect runs at once, in order. This is what lets a write's notes
// leave for the secondaries before the primary's journal encodes them.

import { describe, expect, it } from "vitest";
import { EffectRunner } from "../src/effect-runner.ts";
import type { ReplicaPorts } from "../src/ports.ts";
import type { Effect, ReplicationMessage } from "../src/replica/effects.ts";
import type { Note } from "../src/replica/note.ts";
import type { Replica } from "../src/replica/replica.ts";

function note(opNum: number): Note {
  return {
    opNum,
    epoch: 1,
    session: 1,
    kind: "write",
    offset: 0,
    length: 4,
    data: new Uint8Array(4),
    checksum: 0,
  };
}

const notes = { type: "replica.notes.v1" } as unknown as ReplicationMessage;

/** A runner over a stub core that yields `drains` in turn, and the calls its ports saw. */
function harness(drains: Effect[][], deferJournal?: (run: () => void) => void) {
  const calls: string[] = [];
  const core = { drainEffects: () => drains.shift() ?? [] } as unknown as Replica;
  const ports = {
    journal: {
      append: (appended: readonly Note[]) =>
        calls.push(`append ${appended.map((n) => n.opNum).join(",")}`),
      truncateAfter: (afterOpNum: number) => calls.push(`truncate ${afterOpNum}`),
      releaseThrough: (throughOpNum: number) => calls.push(`release ${throughOpNum}`),
    },
    transport: { send: (to: string) => calls.push(`send ${to}`) },
  } as unknown as ReplicaPorts;
  const runner = new EffectRunner(core, ports, {
    reply: (requestId) => calls.push(`reply ${requestId}`),
    replyError: () => {},
    fatal: () => {},
    ...(deferJournal === undefined ? {} : { deferJournal }),
  });
  return { runner, calls };
}

describe("effect runner order", () => {
  it("sends a drain's notes before it hands the drain's journal effects over", () => {
    const deferred: (() => void)[] = [];
    const { runner, calls } = harness(
      [
        [
          { type: "journal.append", generation: 0, notes: [note(1)] },
          { type: "send", to: "head-2", message: notes },
          { type: "send", to: "head-3", message: notes },
        ],
      ],
      (run) => deferred.push(run),
    );
    runner.run();
    for (const run of deferred.splice(0)) run();
    expect(calls).toEqual(["send head-2", "send head-3", "append 1"]);
  });

  it("without the hook runs every effect at once, in the core's order (the simulators)", () => {
    const { runner, calls } = harness([
      [
        { type: "journal.append", generation: 0, notes: [note(1)] },
        { type: "send", to: "head-2", message: notes },
      ],
    ]);
    runner.run();
    expect(calls).toEqual(["append 1", "send head-2"]);
  });

  it("defers the journal effects when the shell asks, and keeps their order across drains", () => {
    const deferred: (() => void)[] = [];
    const { runner, calls } = harness(
      [
        [
          { type: "journal.append", generation: 0, notes: [note(1)] },
          { type: "send", to: "head-2", message: notes },
        ],
        [
          { type: "journal.truncate", generation: 1, afterOpNum: 0 },
          { type: "journal.append", generation: 1, notes: [note(1)] },
          { type: "reply", requestId: 7, reply: { kind: "flush", flushedOpNum: 0 } },
        ],
        [{ type: "journal.release", throughOpNum: 0 }],
      ],
      (run) => deferred.push(run),
    );
    runner.run();
    expect(calls).toEqual(["send head-2"]);
    runner.run();
    // One hand-over covers both drains: nothing journal-bound ran in between.
    expect(deferred).toHaveLength(1);
    expect(calls).toEqual(["send head-2", "reply 7"]);
    deferred.shift()!();
    expect(calls).toEqual(["send head-2", "reply 7", "append 1", "truncate 0", "append 1"]);
    runner.run();
    expect(deferred).toHaveLength(1);
    deferred.shift()!();
    expect(calls.at(-1)).toBe("release 0");
  });
});
