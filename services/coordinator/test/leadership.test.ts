// Leadership on durations: each coordinator measures on its own monotonic clock, and the
// clocks here start far apart, because no two are ever compared.

import type { Logger } from "@ballast/runtime";
import { describe, expect, test } from "vitest";
import { LeaderElection, Leadership, leaderKey } from "../src/leadership.ts";
import { FakeStore } from "./fake-store.ts";

const leaseMs = 3000;
const marginMs = 500;

function election(nodeId: string) {
  return new LeaderElection({ nodeId, leaseMs, marginMs });
}

describe("the pure election", () => {
  test("a leader leads until leaseMs − margin after the start of its last renewal", () => {
    const a = election("a");
    const write = a.next(undefined, 100);
    expect(write).toEqual({ kind: "create", record: { coordinator: "a", term: 1 } });
    a.onWritten({ coordinator: "a", term: 1 }, 90);
    expect(a.isLeader(90 + leaseMs - marginMs - 1)).toBe(true);
    expect(a.isLeader(90 + leaseMs - marginMs)).toBe(false);
    expect(a.termAt(1000)).toBe(1);
  });

  test("another takes over only once the key has not changed for leaseMs + margin on its clock", () => {
    const b = election("b");
    const key = { value: { coordinator: "a", term: 4 }, revision: 10 };
    expect(b.next(key, 5_000_000)).toEqual({ kind: "none" });
    expect(b.next(key, 5_000_000 + leaseMs + marginMs - 1)).toEqual({ kind: "none" });
    expect(b.next(key, 5_000_000 + leaseMs + marginMs)).toEqual({
      kind: "update",
      record: { coordinator: "b", term: 5 },
      revision: 10,
    });
  });

  test("a renewal seen in between starts the wait again", () => {
    const b = election("b");
    b.next({ value: { coordinator: "a", term: 4 }, revision: 10 }, 0);
    const renewed = { value: { coordinator: "a", term: 4 }, revision: 11 };
    expect(b.next(renewed, leaseMs + marginMs)).toEqual({ kind: "none" });
    expect(b.next(renewed, 2 * (leaseMs + marginMs) - 1)).toEqual({ kind: "none" });
    expect(b.next(renewed, 2 * (leaseMs + marginMs)).kind).toBe("update");
  });

  test("a restarted process of the same id waits like anyone else: it holds no term", () => {
    const again = election("a");
    expect(again.next({ value: { coordinator: "a", term: 2 }, revision: 3 }, 0)).toEqual({
      kind: "none",
    });
  });

  test("leading again after a lapse is a new tenure, even in the same term", () => {
    const a = election("a");
    a.next(undefined, 0);
    a.onWritten({ coordinator: "a", term: 1 }, 0);
    const first = a.tenure;
    a.next({ value: { coordinator: "a", term: 1 }, revision: 1 }, 1000);
    a.onWritten({ coordinator: "a", term: 1 }, 1000);
    expect(a.tenure).toBe(first); // a renewal in time continues the tenure
    // Paused through its lease: on waking it does not lead, and its renewal starts anew.
    expect(a.isLeader(60_000)).toBe(false);
    const write = a.next({ value: { coordinator: "a", term: 1 }, revision: 2 }, 60_000);
    expect(write).toMatchObject({ kind: "update", record: { term: 1 } });
    a.onWritten({ coordinator: "a", term: 1 }, 60_000);
    expect(a.tenure).toBe(first + 1);
  });
});

describe("a graceful stop releases the key", () => {
  test("the holder stops leading at once and marks its own term released", () => {
    const a = election("a");
    a.next(undefined, 0);
    a.onWritten({ coordinator: "a", term: 3 }, 0);
    const write = a.release({ value: { coordinator: "a", term: 3 }, revision: 7 });
    expect(write).toEqual({
      kind: "update",
      record: { coordinator: "a", term: 3, released: true },
      revision: 7,
    });
    expect(a.isLeader(1)).toBe(false);
  });

  test("nothing to release: not holding, another's key, another term, or released already", () => {
    expect(election("a").release({ value: { coordinator: "a", term: 3 }, revision: 7 })).toEqual({
      kind: "none",
    });
    const holding = () => {
      const a = election("a");
      a.next(undefined, 0);
      a.onWritten({ coordinator: "a", term: 3 }, 0);
      return a;
    };
    for (const value of [
      { coordinator: "b", term: 4 },
      { coordinator: "a", term: 2 },
      { coordinator: "a", term: 3, released: true as const },
    ]) {
      const a = holding();
      expect(a.release({ value, revision: 9 })).toEqual({ kind: "none" });
      expect(a.isLeader(1), "it leads no more either way").toBe(false);
    }
    expect(holding().release(undefined)).toEqual({ kind: "none" });
  });

  test("a released key is taken over at once, naming its revision, with the next term", () => {
    const b = election("b");
    expect(
      b.next({ value: { coordinator: "a", term: 4, released: true }, revision: 10 }, 0),
    ).toEqual({
      kind: "update",
      record: { coordinator: "b", term: 5 },
      revision: 10,
      afterRelease: true,
    });
    // The same id restarted takes its own released key at once too: it was given up.
    const again = election("a");
    expect(
      again.next({ value: { coordinator: "a", term: 4, released: true }, revision: 10 }, 0),
    ).toMatchObject({ kind: "update", record: { coordinator: "a", term: 5 } });
    // Not released: the lease is waited out, as before.
    expect(election("b").next({ value: { coordinator: "a", term: 4 }, revision: 10 }, 0)).toEqual({
      kind: "none",
    });
  });
});

/** A coordinator with its own monotonic clock, started at an arbitrary origin. */
function coordinator(store: FakeStore, nodeId: string, originMs: number, logger?: Logger) {
  const clock = { nowMs: originMs };
  const leadership = new Leadership({
    kv: store,
    nodeId,
    leaseMs,
    marginMs,
    clock: () => clock.nowMs,
    ...(logger === undefined ? {} : { logger }),
  });
  return { clock, leadership };
}

describe("two coordinators on one store", () => {
  test("never both lead, whatever their clocks read; the new term is higher", async () => {
    const store = new FakeStore();
    const a = coordinator(store, "a", 1_000);
    const b = coordinator(store, "b", 9_000_000_000);
    const advance = (ms: number) => {
      a.clock.nowMs += ms;
      b.clock.nowMs += ms;
    };
    expect((await a.leadership.renew())?.term).toBe(1);
    expect(await b.leadership.renew()).toBeUndefined();
    // a renews every second; b never gets in.
    for (let second = 0; second < 10; second++) {
      advance(1000);
      expect(await a.leadership.renew()).toBeDefined();
      expect(await b.leadership.renew()).toBeUndefined();
    }
    // a is paused: it stops renewing. b keeps trying each second.
    let takenAtMs: number | undefined;
    for (let elapsed = 0; elapsed < 10_000 && takenAtMs === undefined; elapsed += 250) {
      advance(250);
      const leading = await b.leadership.renew();
      if (leading !== undefined) {
        takenAtMs = elapsed + 250;
        expect(leading.term).toBe(2);
      }
      // Never two leaders at one instant.
      expect(a.leadership.isLeader() && b.leadership.isLeader()).toBe(false);
    }
    expect(takenAtMs).toBeDefined();
    // a wakes: it does not lead, and its renewal does not take the key back.
    expect(a.leadership.isLeader()).toBe(false);
    expect(await a.leadership.renew()).toBeUndefined();
    expect(store.value(leaderKey)).toEqual({ coordinator: "b", term: 2 });
  });

  test("a leader that stops gracefully hands over at once; two takeovers, one wins", async () => {
    const store = new FakeStore();
    const a = coordinator(store, "a", 1_000);
    const b = coordinator(store, "b", 77_000);
    const c = coordinator(store, "c", 5_000_000);
    expect((await a.leadership.renew())?.term).toBe(1);
    expect(await b.leadership.renew()).toBeUndefined();
    expect(await c.leadership.renew()).toBeUndefined();
    expect(await a.leadership.release()).toBe(true);
    expect(a.leadership.isLeader()).toBe(false);
    expect(store.value(leaderKey)).toEqual({ coordinator: "a", term: 1, released: true });
    // No time passes: b takes it over at once, and c, naming the same revision, loses.
    const leading = await b.leadership.renew();
    expect(leading).toMatchObject({ term: 2, afterRelease: true });
    expect(await c.leadership.renew()).toBeUndefined();
    expect(store.value(leaderKey)).toEqual({ coordinator: "b", term: 2 });
    // a's release is spent: a second one writes nothing, and a does not lead again.
    expect(await a.leadership.release()).toBe(false);
    expect(await a.leadership.renew()).toBeUndefined();
    // b's next renewal continues the tenure the takeover began.
    b.clock.nowMs += 1000;
    expect((await b.leadership.renew())?.tenure).toBe(leading?.tenure);
  });

  test("a release the store fails leads no more, and the lease is waited out as for a kill", async () => {
    /** A store whose updates fail while `down` (fake: an unreachable KV). */
    class FlakyStore extends FakeStore {
      down = false;
      override async update(key: string, value: Uint8Array, revision: number): Promise<number> {
        if (this.down) throw new Error("the store is unreachable");
        return super.update(key, value, revision);
      }
    }
    const store = new FlakyStore();
    const a = coordinator(store, "a", 0);
    const b = coordinator(store, "b", 40_000);
    expect((await a.leadership.renew())?.term).toBe(1);
    expect(await b.leadership.renew()).toBeUndefined();
    store.down = true;
    expect(await a.leadership.release()).toBe(false);
    expect(a.leadership.isLeader()).toBe(false);
    store.down = false;
    expect(store.value(leaderKey)).toEqual({ coordinator: "a", term: 1 });
    // Not released: b takes over only once the key has stood still for the lease.
    b.clock.nowMs += leaseMs + marginMs - 1;
    expect(await b.leadership.renew()).toBeUndefined();
    b.clock.nowMs += 1;
    expect((await b.leadership.renew())?.term).toBe(2);
  });

  test("a leader record that does not parse is waited out and taken over with a higher term", async () => {
    // Damaged or foreign bytes on the key (a client once had a coordinator publish its
    // msgpack reply there): each renewal used to throw on the parse, swallowed, and no
    // coordinator ever led again.
    const store = new FakeStore();
    const warnings: string[] = [];
    const logger = { warn: (_fields: unknown, message: string) => warnings.push(message) };
    const a = coordinator(store, "a", 0);
    const b = coordinator(store, "b", 70_000, logger as unknown as Logger);
    expect((await a.leadership.renew())?.term).toBe(1);
    const revision = (await store.get(leaderKey))?.revision as number;
    const foreign = new Uint8Array([0xde, 0x00, 0x02, 0xa2, 0x6f, 0x6b]);
    const damagedAt = await store.update(leaderKey, foreign, revision);
    // a, whose lease has not run out, reads a key that is no longer its own.
    a.clock.nowMs += 1000;
    expect(await a.leadership.renew()).toBeUndefined();
    expect(await b.leadership.holder()).toBeUndefined();
    expect(await b.leadership.renew()).toBeUndefined();
    expect(warnings).toHaveLength(1);
    b.clock.nowMs += leaseMs + marginMs - 1;
    expect(await b.leadership.renew()).toBeUndefined();
    b.clock.nowMs += 1;
    const leading = await b.leadership.renew();
    expect(leading?.term).toBeGreaterThan(damagedAt);
    expect(store.value(leaderKey)).toEqual({ coordinator: "b", term: leading?.term });
    expect(await b.leadership.holder()).toBe("b");
    expect(warnings).toHaveLength(1);
  });
});
