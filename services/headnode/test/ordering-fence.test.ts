// The ordering fence (replica/ordering-fence.ts): its decision on its own, then as the
// replica core applies it to client mutations (refused before an op is assigned).

import { type BallastError, ErrorCode } from "@ballast/protocol";
import { constants as runtimeConstants } from "@ballast/runtime";
import { describe, expect, test } from "vitest";
import { replicaLimitsDefault } from "../src/constants.ts";
import { OrderingFence } from "../src/replica/ordering-fence.ts";
import { type ClientRequest, Replica } from "../src/replica/replica.ts";
import { only, syncJournal } from "./effects-helpers.ts";

const sessionA = "a".repeat(32);
const sessionB = "b".repeat(32);
const limits = { fenceSessionsMax: 3, fenceExpiryTicks: 100 };

function fenceOf(session: string, sequence: number) {
  return { session, sequence };
}

describe("the fence decision", () => {
  test("an attempt below the highest its session had admitted is refused, naming that one", () => {
    const fence = new OrderingFence(limits);
    expect(fence.admit(fenceOf(sessionA, 5), 0)).toEqual({ admitted: true });
    expect(fence.admit(fenceOf(sessionA, 3), 1)).toEqual({ admitted: false, highestSequence: 5 });
    expect(fence.admit(fenceOf(sessionA, 4), 2)).toEqual({ admitted: false, highestSequence: 5 });
    // A refusal does not lower or move what the session is at.
    expect(fence.admit(fenceOf(sessionA, 4), 3)).toEqual({ admitted: false, highestSequence: 5 });
    expect(fence.admit(fenceOf(sessionA, 6), 4)).toEqual({ admitted: true });
    expect(fence.admit(fenceOf(sessionA, 5), 5)).toEqual({ admitted: false, highestSequence: 6 });
  });

  test("ascending attempts, with gaps, are all admitted", () => {
    const fence = new OrderingFence(limits);
    for (const sequence of [1, 2, 7, 8, 100]) {
      expect(fence.admit(fenceOf(sessionA, sequence), sequence)).toEqual({ admitted: true });
    }
  });

  test("an equal sequence (the same attempt delivered twice) is admitted: it overtakes nothing", () => {
    const fence = new OrderingFence(limits);
    expect(fence.admit(fenceOf(sessionA, 9), 0).admitted).toBe(true);
    expect(fence.admit(fenceOf(sessionA, 9), 1).admitted).toBe(true);
  });

  test("sessions are fenced apart: one's high sequence does not refuse another's low one", () => {
    const fence = new OrderingFence(limits);
    expect(fence.admit(fenceOf(sessionA, 1000), 0).admitted).toBe(true);
    expect(fence.admit(fenceOf(sessionB, 1), 0).admitted).toBe(true);
    expect(fence.admit(fenceOf(sessionB, 2), 0).admitted).toBe(true);
    expect(fence.admit(fenceOf(sessionA, 999), 0).admitted).toBe(false);
  });

  test("a session with nothing admitted for fenceExpiryTicks is forgotten; one admitted since is not", () => {
    const fence = new OrderingFence(limits);
    fence.admit(fenceOf(sessionA, 10), 0);
    fence.admit(fenceOf(sessionB, 10), 50);
    // One tick short of A's expiry: still fenced.
    expect(fence.admit(fenceOf(sessionA, 9), 99).admitted).toBe(false);
    // At its expiry A is forgotten, and a stale copy gets through (the accepted cost).
    expect(fence.admit(fenceOf(sessionA, 9), 100).admitted).toBe(true);
    // B was admitted at tick 50: remembered until 150.
    expect(fence.admit(fenceOf(sessionB, 9), 149).admitted).toBe(false);
    expect(fence.size).toBe(2);
  });

  test("past fenceSessionsMax the session admitted longest ago is forgotten first", () => {
    const fence = new OrderingFence(limits);
    const sessions = ["1", "2", "3", "4"].map((digit) => digit.repeat(32));
    fence.admit(fenceOf(sessions[0]!, 5), 0);
    fence.admit(fenceOf(sessions[1]!, 5), 1);
    fence.admit(fenceOf(sessions[2]!, 5), 2);
    // Session 0 is admitted again, so session 1 is now the oldest.
    fence.admit(fenceOf(sessions[0]!, 6), 3);
    fence.admit(fenceOf(sessions[3]!, 5), 4);
    expect(fence.size).toBe(limits.fenceSessionsMax);
    expect(fence.admit(fenceOf(sessions[0]!, 5), 5).admitted).toBe(false);
    expect(fence.admit(fenceOf(sessions[2]!, 4), 5).admitted).toBe(false);
    // Evicted: what it loses is its fence.
    expect(fence.admit(fenceOf(sessions[1]!, 4), 5).admitted).toBe(true);
  });

  test("a table kept and restored in another keeps each session's sequence, age and order", () => {
    const old = new OrderingFence(limits);
    const sessions = ["1", "2", "3"].map((digit) => digit.repeat(32));
    old.admit(fenceOf(sessions[0]!, 5), 1000);
    old.admit(fenceOf(sessions[1]!, 7), 1040);
    old.admit(fenceOf(sessions[2]!, 2), 1090);
    const kept = old.kept(1090);
    expect(kept).toEqual([
      { session: sessions[0], sequence: 5, ageTicks: 90 },
      { session: sessions[1], sequence: 7, ageTicks: 50 },
      { session: sessions[2], sequence: 2, ageTicks: 0 },
    ]);
    // A new core counts its ticks from 0.
    const reopened = new OrderingFence(limits);
    reopened.restore(kept, 0);
    expect(reopened.admit(fenceOf(sessions[1]!, 6), 0)).toEqual({
      admitted: false,
      highestSequence: 7,
    });
    // Session 0 was admitted 90 ticks before: it expires 10 ticks on, not 100.
    expect(reopened.admit(fenceOf(sessions[0]!, 4), 9).admitted).toBe(false);
    expect(reopened.admit(fenceOf(sessions[0]!, 4), 10).admitted).toBe(true);
    // Session 1 is now the oldest and goes first past the bound.
    reopened.admit(fenceOf("4".repeat(32), 1), 11);
    expect(reopened.size).toBe(limits.fenceSessionsMax);
    expect(reopened.admit(fenceOf(sessions[1]!, 6), 12).admitted).toBe(true);
  });

  test("the default expiry outlasts a 64 MiB backlog of 4 KiB writes read 1024 at a time, each within two request deadlines", () => {
    const rounds =
      runtimeConstants.linkWriteBufferBytesMax / 4096 / runtimeConstants.linkUnansweredMax;
    expect(replicaLimitsDefault.fenceSessionsMax).toBeGreaterThan(0);
    expect(replicaLimitsDefault.fenceExpiryTicks).toBeGreaterThan(
      rounds * 2 * replicaLimitsDefault.requestDeadlineTicks,
    );
  });
});

describe("the fence in the replica core", () => {
  const configuration = { epoch: 3, primary: "head-1", secondaries: [] };

  function primary(overrides = {}) {
    const core = new Replica(
      {
        nodeId: "head-1",
        volume: "vol",
        partition: 0,
        partitionStart: 0,
        partitionBytes: 1 << 20,
        session: 1,
      },
      { notes: [] },
      overrides,
    );
    core.configure(configuration);
    core.drainEffects();
    return core;
  }

  function write(requestId: number, fill: number, sequence?: number, epoch = 3): ClientRequest {
    return {
      kind: "write",
      requestId,
      epoch,
      writes: [{ offset: 0, data: new Uint8Array(4096).fill(fill) }],
      ...(sequence === undefined ? {} : { fence: fenceOf(sessionA, sequence) }),
    };
  }

  test("a stale copy arriving after a later attempt of its session is refused Superseded and gets no op", () => {
    const core = primary();
    core.onClientRequest(write(1, 0xb2, 3)); // W2's attempt, sequence 3
    const first = core.drainEffects();
    expect(only(first, "journal.append")[0]?.notes.map((note) => note.opNum)).toEqual([1]);
    syncJournal(core, first);
    core.onClientRequest(write(2, 0xa1, 1)); // W1's first attempt, read late
    const late = core.drainEffects();
    expect(only(late, "journal.append")).toEqual([]);
    const [refusal] = only(late, "reply.error");
    expect(refusal?.requestId).toBe(2);
    const error = refusal!.error as BallastError;
    expect(error.code).toBe(ErrorCode.Superseded);
    expect(error.retryable).toBe(true);
    expect(core.lastOpNum).toBe(1);
    // An unfenced request (an older client) is taken as before.
    core.onClientRequest(write(3, 0xc3));
    expect(core.lastOpNum).toBe(2);
  });

  test("a request refused for another reason does not raise its session's sequence", () => {
    const core = primary();
    core.onClientRequest(write(1, 1, 5, 2)); // wrong epoch
    expect(only(core.drainEffects(), "reply.error")[0]?.error.code).toBe(ErrorCode.WrongEpoch);
    core.onClientRequest(write(2, 2, 4));
    expect(core.lastOpNum).toBe(1);
  });

  test("an attempt that waits for room is fenced at arrival, and ops follow arrival order", () => {
    const core = primary({ notesInflightMax: 1 });
    core.onClientRequest(write(1, 1, 1));
    core.onClientRequest(write(2, 2, 3)); // waits for room
    core.onClientRequest(write(3, 3, 2)); // a stale copy, behind it
    const effects = core.drainEffects();
    expect(
      only(effects, "reply.error").map((reply) => [reply.requestId, reply.error.code]),
    ).toEqual([[3, ErrorCode.Superseded]]);
    syncJournal(core, effects);
    core.tick(); // room again: the waiting attempt is assigned
    expect(core.lastOpNum).toBe(2);
  });

  test("a core reopened in place takes back its predecessor's fence at the same epoch, and drops it at another", () => {
    const core = primary();
    core.onClientRequest(write(1, 1, 3));
    syncJournal(core, core.drainEffects());
    const kept = core.fenceToKeep();
    expect(kept).toEqual({ epoch: 3, sessions: [{ session: sessionA, sequence: 3, ageTicks: 0 }] });

    const reopen = (epoch: number) => {
      const next = new Replica(
        {
          nodeId: "head-1",
          volume: "vol",
          partition: 0,
          partitionStart: 0,
          partitionBytes: 1 << 20,
          session: 2,
        },
        { notes: [] },
      );
      next.carryFence(kept!);
      next.configure({ ...configuration, epoch });
      next.drainEffects();
      return next;
    };
    const same = reopen(3);
    same.onClientRequest(write(1, 0xa1, 1));
    expect(only(same.drainEffects(), "reply.error")[0]?.error.code).toBe(ErrorCode.Superseded);
    expect(same.lastOpNum).toBe(0);
    expect(same.fenceToKeep()?.sessions).toEqual([{ session: sessionA, sequence: 3, ageTicks: 0 }]);

    const later = reopen(4);
    expect(later.fenceToKeep()).toBeUndefined();
    later.onClientRequest(write(1, 0xa1, 1, 4));
    expect(only(later.drainEffects(), "reply.error")).toEqual([]);
    expect(later.lastOpNum).toBe(1);
  });

  test("a new epoch starts with an empty fence (older attempts are refused by their epoch)", () => {
    const core = primary();
    core.onClientRequest(write(1, 1, 9));
    syncJournal(core, core.drainEffects());
    core.configure({ ...configuration, epoch: 4 });
    core.drainEffects();
    core.onClientRequest(write(2, 2, 9, 3));
    expect(only(core.drainEffects(), "reply.error")[0]?.error.code).toBe(ErrorCode.WrongEpoch);
    core.onClientRequest(write(3, 3, 2, 4));
    expect(only(core.drainEffects(), "reply.error")).toEqual([]);
    expect(core.lastOpNum).toBe(2);
  });
});
