// Idle followers get no heartbeats (replica.ts, "Idle followers"): a primary sends a
// current follower nothing while nobody writes, and a follower that restarted (and so
// forgot the commit point and the primary's session) says hello until the primary tells
// it both. Lazy ticking (HeldTicks) must see the hello's timer like any other.

import { describe, expect, it } from "vitest";
import type { ReplicaLimits } from "../src/constants.ts";
import { HeldTicks } from "../src/held-ticks.ts";
import type { Effect } from "../src/replica/effects.ts";
import { type Configuration, helloSession, Replica } from "../src/replica/replica.ts";
import { InstantCluster } from "../src/testing/cluster.ts";

const partitionBytes = 64 * 1024;
const epoch1: Configuration = { epoch: 1, primary: "head-1", secondaries: ["head-2", "head-3"] };
const limits: Partial<ReplicaLimits> = { heartbeatTicks: 10, helloTicks: 50 };

type Sent = { from: string; to: string; message: Extract<Effect, { type: "send" }>["message"] };

/** A cluster of three cores whose every send is recorded. */
class Scenario {
  readonly cluster = new InstantCluster();
  readonly sent: Sent[] = [];
  readonly cores = new Map<string, Replica>();
  private requestId = 0;

  constructor(private readonly overrides: Partial<ReplicaLimits> = limits) {
    for (const nodeId of ["head-1", "head-2", "head-3"]) this.start(nodeId, 1, { notes: [] });
  }

  start(nodeId: string, session: number, recovered: ConstructorParameters<typeof Replica>[1]) {
    const core = new Replica(
      { nodeId, volume: "vol", partition: 0, partitionStart: 0, partitionBytes, session },
      recovered,
      this.overrides,
    );
    const drain = core.drainEffects.bind(core);
    core.drainEffects = () => {
      const effects = drain();
      for (const effect of effects) {
        if (effect.type === "send")
          this.sent.push({ from: nodeId, to: effect.to, message: effect.message });
      }
      return effects;
    };
    this.cores.set(nodeId, core);
    return core;
  }

  core(nodeId: string): Replica {
    return this.cores.get(nodeId)!;
  }

  /** kill -9 of `nodeId` and a restart from its journal, configured as before. */
  restart(nodeId: string): Replica {
    const disk = this.cluster.node(nodeId);
    const core = this.start(nodeId, 2, { notes: disk.journal.notes.map((note) => ({ ...note })) });
    this.cluster.restart(nodeId, core);
    core.configure(epoch1);
    this.cluster.settle();
    return core;
  }

  write(fill: number): void {
    this.core("head-1").onClientRequest({
      kind: "write",
      requestId: ++this.requestId,
      epoch: epoch1.epoch,
      writes: [{ offset: 0, data: new Uint8Array(4096).fill(fill) }],
    });
    this.cluster.settle();
  }

  ticks(count: number): void {
    for (let tick = 0; tick < count; tick++) {
      for (const core of this.cores.values()) core.tick();
      this.cluster.settle();
    }
  }

  heartbeats(): Sent[] {
    return this.sent.filter(
      ({ message }) => message.type === "replica.notes.v1" && message.notes.length === 0,
    );
  }

  hellos(): Sent[] {
    return this.sent.filter(
      ({ message }) => message.type === "replica.ack.v1" && message.session === helloSession,
    );
  }
}

function started(overrides?: Partial<ReplicaLimits>): Scenario {
  const scenario = new Scenario(overrides);
  for (const [nodeId, core] of scenario.cores) scenario.cluster.add(nodeId, core);
  for (const core of scenario.cores.values()) core.configure(epoch1);
  scenario.cluster.settle();
  return scenario;
}

describe("idle followers", () => {
  it("sends no message at all while nobody writes, once followers are current", () => {
    const scenario = started();
    scenario.write(7);
    scenario.ticks(100);
    const before = scenario.sent.length;
    scenario.ticks(5000);
    // Not one heartbeat, acknowledgement or hello in 5,000 ticks (500 heartbeat periods).
    expect(scenario.sent.slice(before)).toEqual([]);
    const primary = scenario.core("head-1");
    for (const nodeId of ["head-2", "head-3"]) {
      expect(scenario.core(nodeId).commitOpNum).toBe(primary.commitOpNum);
    }
    // The next write still reaches both at once, with its commit point.
    scenario.write(8);
    scenario.ticks(2 * 10);
    for (const nodeId of ["head-2", "head-3"]) {
      expect(scenario.core(nodeId).commitOpNum).toBe(primary.commitOpNum);
    }
  });

  it("heartbeats a follower until it acknowledges this session, even with nothing written", () => {
    const scenario = new Scenario();
    for (const [nodeId, core] of scenario.cores) scenario.cluster.add(nodeId, core);
    scenario.cluster.isolated.add("head-3");
    for (const core of scenario.cores.values()) core.configure(epoch1);
    scenario.cluster.settle();
    scenario.ticks(45);
    const toHead3 = () => scenario.heartbeats().filter(({ to }) => to === "head-3").length;
    // Lost: the primary keeps trying every heartbeatTicks …
    expect(toHead3()).toBeGreaterThanOrEqual(4);
    scenario.cluster.isolated.delete("head-3");
    scenario.ticks(15);
    const answered = toHead3();
    scenario.ticks(1000);
    // … and stops once head-3 has answered one.
    expect(toHead3()).toBe(answered);
  });

  it("tells a follower that restarted the commit point once it says hello", () => {
    const scenario = started();
    for (let fill = 1; fill <= 5; fill++) scenario.write(fill);
    scenario.ticks(100);
    const primary = scenario.core("head-1");
    const restarted = scenario.restart("head-2");
    // It resumes from its journal, committed only through its checkpoint (none here).
    expect(restarted.lastOpNum).toBe(primary.lastOpNum);
    expect(restarted.commitOpNum).toBeLessThan(primary.commitOpNum);
    scenario.ticks(49);
    expect(scenario.hellos()).toEqual([]);
    scenario.ticks(1);
    expect(scenario.hellos().map(({ from, to }) => ({ from, to }))).toEqual([
      { from: "head-2", to: "head-1" },
    ]);
    scenario.ticks(20);
    expect(restarted.commitOpNum).toBe(primary.commitOpNum);
    expect(restarted.metadata.fingerprint()).toBe(primary.metadata.fingerprint());
    // Then quiet again: one hello was enough.
    const before = scenario.sent.length;
    scenario.ticks(1000);
    expect(scenario.sent.slice(before)).toEqual([]);
  });

  it("says hello again when the first is lost", () => {
    const scenario = started();
    scenario.write(1);
    scenario.ticks(100); // its flush record too
    const restarted = scenario.restart("head-2");
    scenario.cluster.isolated.add("head-2");
    scenario.ticks(60);
    expect(scenario.hellos()).toHaveLength(1);
    scenario.cluster.isolated.delete("head-2");
    scenario.ticks(60);
    expect(scenario.hellos()).toHaveLength(2);
    expect(restarted.commitOpNum).toBe(scenario.core("head-1").commitOpNum);
  });

  it("leaves a restarted follower behind without its hello (the simulator's no-hello sabotage)", () => {
    const scenario = started({ ...limits, helloTicks: Number.POSITIVE_INFINITY });
    scenario.write(1);
    scenario.ticks(100); // its flush record too
    const restarted = scenario.restart("head-2");
    scenario.ticks(5000);
    expect(restarted.commitOpNum).toBeLessThan(scenario.core("head-1").commitOpNum);
  });

  it("deposes a primary that holds an older epoch, through the hello", () => {
    const scenario = started();
    scenario.write(1);
    scenario.ticks(100);
    // head-2 learns of epoch 2 (head-3 dropped) long before head-1 does.
    scenario.core("head-2").configure({ ...epoch1, epoch: 2, secondaries: ["head-2"] });
    scenario.ticks(50);
    const [hello] = scenario.hellos();
    expect(hello?.message).toMatchObject({ epoch: 2, from: "head-2" });
    // As any ack of a newer epoch: head-1 stops serving until it is configured again.
    expect(scenario.core("head-1").roleName).toBe("idle");
  });

  it("wakes a held secondary for its hello (lazy ticking sees the timer)", () => {
    const scenario = started();
    scenario.write(1);
    scenario.ticks(100); // its flush record too
    const restarted = scenario.restart("head-2");
    expect(restarted.quietTicks()).toBe(49);
    const held = new HeldTicks(restarted);
    // Held back until the hello is due, then a real tick that says it.
    let ticks = 0;
    while (scenario.hellos().length === 0 && ticks < 1000) {
      held.tick(ticks + 1); // asked at every node tick, as a schedule may

      scenario.cluster.settle();
      ticks++;
    }
    expect(ticks).toBe(50);
    expect(held.ticksRun).toBe(1);
    scenario.cluster.settle();
    for (let tick = 0; tick < 20; tick++) {
      scenario.core("head-1").tick();
      scenario.cluster.settle();
    }
    expect(restarted.commitOpNum).toBe(scenario.core("head-1").commitOpNum);
    // Heard from its primary: no hello to wake for (only its checkpoint interval).
    expect(restarted.quietTicks()).toBeGreaterThan(limits.helloTicks!);
  });
});
