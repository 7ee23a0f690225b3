import { subjects } from "@ballast/protocol";
import { describe, expect, test, vi } from "vitest";
import { membersMax } from "../src/constants.ts";
import { Heartbeats } from "../src/heartbeats.ts";
import { type Heartbeat, Membership } from "../src/membership.ts";

function heartbeat(overrides: Partial<Heartbeat> = {}): Heartbeat {
  return {
    type: "heartbeat.v1",
    kind: "sled",
    nodeId: "sled-1",
    pid: 100,
    startedAtMs: 1_000,
    sentAtMs: 1_000,
    sequence: 0,
    version: "0.1.0",
    ...overrides,
  };
}

describe("membership", () => {
  test("a member carries the disk its newest heartbeat names", () => {
    const membership = new Membership({ heartbeatTimeoutMs: 2_000 });
    const diskA = "a".repeat(32);
    const diskB = "b".repeat(32);
    membership.onHeartbeat(heartbeat({ disk: diskA }), 5_000);
    expect(membership.list()[0]!.disk).toBe(diskA);
    // Back under the same id on another disk (a restart with an empty data directory).
    const events = membership.onHeartbeat(
      heartbeat({ disk: diskB, pid: 999, startedAtMs: 5_500, sequence: 0 }),
      5_600,
    );
    expect(events.map((event) => event.type)).toEqual(["restarted"]);
    expect(membership.list()[0]!.disk).toBe(diskB);
    membership.onHeartbeat(heartbeat({ pid: 999, startedAtMs: 5_500, sequence: 1 }), 5_700);
    expect(membership.list()[0]).not.toHaveProperty("disk");
  });

  test("a first heartbeat joins the node as healthy", () => {
    const membership = new Membership({ heartbeatTimeoutMs: 1000 });
    const events = membership.onHeartbeat(heartbeat(), 5_000);
    expect(events.map((event) => event.type)).toEqual(["joined"]);
    expect(membership.alive().map((member) => member.id)).toEqual(["sled-1"]);
  });

  test("a node silent past the timeout is declared dead exactly once", () => {
    const membership = new Membership({ heartbeatTimeoutMs: 1000 });
    membership.onHeartbeat(heartbeat(), 5_000);
    expect(membership.tick(6_000)).toEqual([]); // exactly at the timeout: still alive
    const died = membership.tick(6_001);
    expect(died).toHaveLength(1);
    expect(died[0]).toMatchObject({ type: "died", silentMs: 1001, timeoutMs: 1000 });
    expect(membership.tick(9_000)).toEqual([]);
    expect(membership.alive()).toEqual([]);
    expect(membership.list()[0]?.alive).toBe(false);
  });

  test("a dead node that beats again rejoins", () => {
    const membership = new Membership({ heartbeatTimeoutMs: 1000 });
    membership.onHeartbeat(heartbeat({ sequence: 0 }), 5_000);
    membership.tick(7_000);
    const events = membership.onHeartbeat(heartbeat({ sequence: 1 }), 7_500);
    expect(events.map((event) => event.type)).toEqual(["rejoined"]);
    expect(events[0]).toMatchObject({ silentMs: 2_500 });
    expect(membership.alive()).toHaveLength(1);
  });

  test("a new pid, start time or a sequence that goes back means a restart", () => {
    const membership = new Membership({ heartbeatTimeoutMs: 1000 });
    membership.onHeartbeat(heartbeat({ sequence: 5 }), 5_000);
    expect(membership.onHeartbeat(heartbeat({ sequence: 6 }), 5_100)).toEqual([]);
    const restarted = membership.onHeartbeat(
      heartbeat({ pid: 200, startedAtMs: 5_050, sequence: 0 }),
      5_200,
    );
    expect(restarted).toEqual([expect.objectContaining({ type: "restarted", previousPid: 100 })]);
    expect(membership.list()[0]?.pid).toBe(200);
  });

  test("an id already held by another kind is refused", () => {
    const membership = new Membership({ heartbeatTimeoutMs: 1000 });
    membership.onHeartbeat(heartbeat(), 5_000);
    const events = membership.onHeartbeat(heartbeat({ kind: "headnode" }), 5_100);
    expect(events).toEqual([expect.objectContaining({ type: "refused", nodeId: "sled-1" })]);
    expect(membership.list()[0]?.kind).toBe("sled");
  });

  test("members list sorted by kind then id", () => {
    const membership = new Membership({ heartbeatTimeoutMs: 1000 });
    membership.onHeartbeat(heartbeat({ nodeId: "sled-2" }), 1);
    membership.onHeartbeat(heartbeat({ nodeId: "head-1", kind: "headnode" }), 1);
    membership.onHeartbeat(heartbeat({ nodeId: "sled-1" }), 1);
    expect(membership.list().map((member) => member.id)).toEqual(["head-1", "sled-1", "sled-2"]);
    expect(membership.alive("sled").map((member) => member.id)).toEqual(["sled-1", "sled-2"]);
  });

  test("a non-positive timeout is a programming error", () => {
    expect(() => new Membership({ heartbeatTimeoutMs: 0 })).toThrow(/positive/);
    expect(() => new Membership({ heartbeatTimeoutMs: 1000, evictAfterMs: 999 })).toThrow(
      /evictAfterMs/,
    );
  });
});

describe("eviction of members dead for long", () => {
  test("a member silent past evictAfterMs is forgotten once, and joins afresh if heard again", () => {
    const membership = new Membership({ heartbeatTimeoutMs: 1000, evictAfterMs: 10_000 });
    membership.onHeartbeat(heartbeat(), 5_000);
    expect(membership.tick(6_001).map((event) => event.type)).toEqual(["died"]);
    membership.onHeartbeat(heartbeat({ nodeId: "sled-2" }), 13_000);
    // sled-1 exactly at the limit: still listed, dead.
    expect(membership.tick(15_000).map((event) => event.type)).toEqual(["died"]);
    expect(membership.list().map((member) => [member.id, member.alive])).toEqual([
      ["sled-1", false],
      ["sled-2", false],
    ]);
    const evicted = membership.tick(15_001);
    expect(evicted).toEqual([
      expect.objectContaining({ type: "evicted", silentMs: 10_001, member: expect.anything() }),
    ]);
    expect(evicted[0]?.type === "evicted" && evicted[0].member.id).toBe("sled-1");
    expect(membership.list().map((member) => member.id)).toEqual(["sled-2"]);
    expect(membership.tick(40_000).map((event) => event.type)).toEqual(["evicted"]);
    expect(membership.tick(50_000)).toEqual([]);
    expect(membership.onHeartbeat(heartbeat({ sequence: 9 }), 60_000)).toEqual([
      expect.objectContaining({ type: "joined" }),
    ]);
  });

  test("a member still alive is not evicted however long since the last tick", () => {
    const membership = new Membership({ heartbeatTimeoutMs: 1000, evictAfterMs: 10_000 });
    membership.onHeartbeat(heartbeat(), 5_000);
    // The first tick after a long silence declares it dead; only a later one forgets it.
    expect(membership.tick(100_000).map((event) => event.type)).toEqual(["died"]);
    expect(membership.tick(100_001).map((event) => event.type)).toEqual(["evicted"]);
  });

  test("ids that stopped beating make room: new nodes are not refused for good at membersMax", () => {
    const membership = new Membership({ heartbeatTimeoutMs: 1000, evictAfterMs: 10_000 });
    for (let index = 0; index < membersMax; index++) {
      membership.onHeartbeat(heartbeat({ kind: "gateway", nodeId: `gateway-pod-${index}` }), 0);
    }
    const next = heartbeat({ kind: "gateway", nodeId: "gateway-pod-new" });
    expect(membership.onHeartbeat(next, 1).map((event) => event.type)).toEqual(["refused"]);
    membership.tick(2_000);
    // Dead, not yet forgotten: still counted.
    expect(membership.onHeartbeat(next, 2_001).map((event) => event.type)).toEqual(["refused"]);
    expect(membership.tick(10_001)).toHaveLength(membersMax);
    expect(membership.onHeartbeat(next, 10_002).map((event) => event.type)).toEqual(["joined"]);
    expect(membership.list()).toHaveLength(1);
  });
});

describe("the heartbeats shell on eviction (unit, mocked clock)", () => {
  test("a member evicted is told to onEvicted once, after onReturn; heard again, it joins", () => {
    let clockMs = 1_000;
    const spy = vi.spyOn(globalThis.performance, "now").mockImplementation(() => clockMs);
    try {
      const told: string[] = [];
      const heartbeats = new Heartbeats({
        logger: { info: () => undefined, warn: () => undefined } as never,
        heartbeatTimeoutMs: 1_000,
        evictAfterMs: 10_000,
        onReturn: (nodeId) => told.push(`return ${nodeId}`),
        onEvicted: (nodeId) => told.push(`evicted ${nodeId}`),
        onJoined: (nodeId) => told.push(`joined ${nodeId}`),
      });
      // Ticks closer together than the timeout (farther apart reads as a pause here).
      const tickUntil = (untilMs: number) => {
        while (clockMs < untilMs) {
          clockMs += 250;
          heartbeats.tick();
        }
      };
      heartbeats.onHeartbeat(
        heartbeat({ kind: "headnode", nodeId: "head-9" }),
        subjects.heartbeat.build("headnode", "head-9"),
      );
      tickUntil(11_000); // dead, not yet forgotten
      expect(told).toEqual(["joined head-9"]);
      tickUntil(12_000); // silent past evictAfterMs
      tickUntil(20_000);
      expect(told).toEqual(["joined head-9", "return head-9", "evicted head-9"]);
      // Back (cut off, not restarted): a new member to membership.
      heartbeats.onHeartbeat(
        heartbeat({ kind: "headnode", nodeId: "head-9" }),
        subjects.heartbeat.build("headnode", "head-9"),
      );
      expect(told.at(-1)).toBe("joined head-9");
    } finally {
      spy.mockRestore();
    }
  });
});

describe("the heartbeats shell after a stall of this coordinator (unit, mocked clock)", () => {
  test("a stall just under the timeout declares no live node dead before its queued heartbeats are read; a node that stopped dies later", () => {
    let clockMs = 0;
    const spy = vi.spyOn(globalThis.performance, "now").mockImplementation(() => clockMs);
    try {
      const died: string[] = [];
      const heartbeats = new Heartbeats({
        logger: {
          info: () => undefined,
          warn: (fields: { member?: string }, message: string) => {
            if (message.startsWith("node declared dead")) died.push(fields.member!);
          },
        } as never,
        heartbeatTimeoutMs: 5_000,
        onReturn: () => undefined,
      });
      const beat = (nodeId: string) =>
        heartbeats.onHeartbeat(
          heartbeat({ kind: "headnode", nodeId }),
          subjects.heartbeat.build("headnode", nodeId),
        );
      // Ticks every 1,250 ms (a quarter of the timeout, as the coordinator runs them);
      // p beats at 100 ms past each second, s at 950 ms; `stopped` no longer beat.
      const stopped = new Set<string>();
      const runUntil = (untilMs: number) => {
        while (clockMs < untilMs) {
          clockMs += 50;
          if (clockMs % 1_000 === 100 && !stopped.has("p")) beat("p");
          if (clockMs % 1_000 === 950 && !stopped.has("s")) beat("s");
          if (clockMs % 1_250 === 0) heartbeats.tick();
        }
      };
      runUntil(10_000);
      expect([...heartbeats.aliveHeadNodes()].sort()).toEqual(["p", "s"]);
      // The event loop stalls 4.9 s: p last read at 9,100, s at 9,950. The tick's timer
      // runs first; the heartbeats queued meanwhile are read after it.
      clockMs += 4_900;
      // Work that runs before the tick (a status request) declares no death either.
      expect(heartbeats.listening(clockMs)).toBe(true);
      heartbeats.declareDeaths(clockMs);
      expect([...heartbeats.aliveHeadNodes()].sort()).toEqual(["p", "s"]);
      heartbeats.tick();
      expect([...heartbeats.aliveHeadNodes()].sort()).toEqual(["p", "s"]);
      expect(heartbeats.listening(clockMs)).toBe(true);
      beat("p");
      beat("s");
      expect(died).toEqual([]);
      // p stops for good: once the listening is over it is declared dead, s not.
      stopped.add("p");
      clockMs = Math.ceil(clockMs / 1_250) * 1_250 - 50;
      runUntil(clockMs + 15_000);
      expect(died).toEqual(["p"]);
      expect([...heartbeats.aliveHeadNodes()]).toEqual(["s"]);
    } finally {
      spy.mockRestore();
    }
  });

  test("ticks a little late are no pause: a node silent past the timeout is declared dead on time", () => {
    let clockMs = 0;
    const spy = vi.spyOn(globalThis.performance, "now").mockImplementation(() => clockMs);
    try {
      const heartbeats = new Heartbeats({
        logger: { info: () => undefined, warn: () => undefined } as never,
        heartbeatTimeoutMs: 5_000,
        onReturn: () => undefined,
      });
      // Ticks every 2,400 ms, under two ticks of 1,250 ms apart: never a pause. p beats
      // at the first three, then stops.
      const alive: string[][] = [];
      for (let tick = 1; tick <= 6; tick++) {
        clockMs += 2_400;
        if (tick <= 3) {
          heartbeats.onHeartbeat(
            heartbeat({ kind: "headnode", nodeId: "p" }),
            subjects.heartbeat.build("headnode", "p"),
          );
        }
        heartbeats.tick();
        alive.push([...heartbeats.aliveHeadNodes()]);
      }
      expect(heartbeats.listening(clockMs)).toBe(false);
      // Silent 2,400 and 4,800 ms: alive; 7,200 ms: dead.
      expect(alive).toEqual([["p"], ["p"], ["p"], ["p"], ["p"], []]);
    } finally {
      spy.mockRestore();
    }
  });
});

describe("a service that beats too seldom for the coordinator's timeout", () => {
  test("is reported when it joins, restarts or changes its interval, and only then", () => {
    const membership = new Membership({ heartbeatTimeoutMs: 1_000 });
    const types = (events: { type: string }[]) => events.map((event) => event.type);
    // 600 ms: fewer than two heartbeats a second's timeout.
    const slow = heartbeat({ intervalMs: 600 });
    expect(membership.onHeartbeat(slow, 0)).toEqual([
      expect.objectContaining({ type: "joined" }),
      expect.objectContaining({ type: "too-slow", intervalMs: 600, timeoutMs: 1_000 }),
    ]);
    expect(types(membership.onHeartbeat({ ...slow, sequence: 1 }, 500))).toEqual([]);
    // Two a timeout is enough.
    expect(types(membership.onHeartbeat({ ...slow, sequence: 2, intervalMs: 500 }, 900))).toEqual(
      [],
    );
    expect(types(membership.onHeartbeat({ ...slow, sequence: 3, intervalMs: 700 }, 1_400))).toEqual(
      ["too-slow"],
    );
    // Restarted with the same setting: said again.
    expect(
      types(membership.onHeartbeat({ ...slow, pid: 101, sequence: 0, intervalMs: 700 }, 2_000)),
    ).toEqual(["restarted", "too-slow"]);
    // A service that does not say its interval is taken as it comes.
    expect(types(membership.onHeartbeat(heartbeat({ nodeId: "sled-2" }), 2_100))).toEqual([
      "joined",
    ]);
    expect(membership.list().find((member) => member.id === "sled-1")?.intervalMs).toBe(700);
  });

  test("is logged as an error naming both settings", () => {
    const errors: string[] = [];
    const heartbeats = new Heartbeats({
      logger: {
        info: () => undefined,
        warn: () => undefined,
        error: (_fields: unknown, message: string) => errors.push(message),
      } as never,
      heartbeatTimeoutMs: 5_000,
      onReturn: () => undefined,
    });
    heartbeats.onHeartbeat(
      heartbeat({ kind: "headnode", nodeId: "head-1", intervalMs: 3_000 }),
      subjects.heartbeat.build("headnode", "head-1"),
    );
    heartbeats.onHeartbeat(
      heartbeat({ kind: "headnode", nodeId: "head-2", intervalMs: 1_000 }),
      subjects.heartbeat.build("headnode", "head-2"),
    );
    expect(errors).toEqual([
      "headnode head-1 sends a heartbeat every 3000 ms, but this coordinator declares a node dead after 5000 ms of silence: fewer than 2 heartbeats a timeout, so one late or lost heartbeat has it declared dead and it flaps; set its BALLAST_HEARTBEAT_INTERVAL_MS (--heartbeat-interval-ms) to at most 2500 or the coordinators' BALLAST_HEARTBEAT_TIMEOUT_MS (--heartbeat-timeout-ms) to at least 6000",
    ]);
  });
});
