// Differential test of lazy ticking (held-ticks.ts, tick-schedule.ts, Replica.quietTicks):
// the same random inputs drive two clusters of cores, one whose cores are ticked every
// time and one driven as the head node drives them: a node tick asks only the cores due
// in a TickSchedule, each through HeldTicks, and every input (messages, completions,
// requests, configures, checkpoint requests, holds) passes a gate that catches the
// count up and makes the core due at the next tick. Every effect each core produces,
// every reply and every number the shell reads must be the same; only the count of
// ticks actually run may differ.

import { crc32c } from "@ballast/protocol";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { ReplicaLimits } from "../src/constants.ts";
import { HeldTicks } from "../src/held-ticks.ts";
import { type Configuration, Replica } from "../src/replica/replica.ts";
import { InstantCluster } from "../src/testing/cluster.ts";
import { TickSchedule } from "../src/tick-schedule.ts";

const partitionBytes = 64 * 1024;
const nodes = ["head-1", "head-2", "head-3"];
const epoch1: Configuration = { epoch: 1, primary: "head-1", secondaries: ["head-2", "head-3"] };

/** Short intervals, so that flushes, checkpoints, drops and compactions happen often. */
const limits: Partial<ReplicaLimits> = {
  heartbeatTicks: 10,
  resendTicks: 4,
  flushIntervalTicks: 5,
  flushBytesThreshold: 1024 * 1024,
  checkpointIntervalTicks: 30,
  checkpointRetryTicks: 6,
  checkpointReleasableBytes: 16 * 1024,
  dropIntervalTicks: 7,
  compactionIntervalTicks: 11,
  requestDeadlineTicks: 40,
};

type Action =
  | { kind: "write"; offset: number; length: number; fill: number }
  | { kind: "trim"; offset: number; length: number }
  | { kind: "flush" }
  | { kind: "checkpoint"; node: number }
  | { kind: "ticks"; count: number; settle: boolean }
  | { kind: "configure"; primary: number }
  | { kind: "hold"; forTicks: number }
  | { kind: "release" }
  /** A write that arrives in the middle of a node tick, before the due cores are asked. */
  | { kind: "midTick"; offset: number; fill: number };

const sector = 512;
const action: fc.Arbitrary<Action> = fc.oneof(
  fc.record({
    kind: fc.constant("write" as const),
    offset: fc.integer({ min: 0, max: 32 }).map((s) => s * sector),
    length: fc.integer({ min: 1, max: 16 }).map((s) => s * sector),
    fill: fc.integer({ min: 1, max: 255 }),
  }),
  fc.record({
    kind: fc.constant("trim" as const),
    offset: fc.integer({ min: 0, max: 32 }).map((s) => s * sector),
    length: fc.integer({ min: 1, max: 16 }).map((s) => s * sector),
  }),
  fc.constant({ kind: "flush" as const }),
  fc.record({ kind: fc.constant("checkpoint" as const), node: fc.integer({ min: 0, max: 2 }) }),
  fc.record({
    kind: fc.constant("ticks" as const),
    count: fc.integer({ min: 1, max: 60 }),
    settle: fc.boolean(),
  }),
  fc.record({ kind: fc.constant("configure" as const), primary: fc.integer({ min: 0, max: 1 }) }),
  fc.record({ kind: fc.constant("hold" as const), forTicks: fc.integer({ min: 1, max: 40 }) }),
  fc.constant({ kind: "release" as const }),
  fc.record({
    kind: fc.constant("midTick" as const),
    offset: fc.integer({ min: 0, max: 32 }).map((s) => s * sector),
    fill: fc.integer({ min: 1, max: 255 }),
  }),
);

/** Effects as comparable text: bytes by length and checksum. */
function describeEffect(effect: unknown): string {
  return JSON.stringify(effect, (_key, value) =>
    value instanceof Uint8Array ? `bytes:${value.length}:${crc32c(value)}` : value,
  );
}

/** What drives the lazy cores, as the head node does (headnode.ts, partition-host.ts). */
interface Lazy {
  schedule: TickSchedule<number>;
  held: HeldTicks[];
}

class Harness {
  readonly cluster = new InstantCluster();
  readonly cores: Replica[];
  readonly lazy: Lazy | undefined;
  /** Every effect each core produced, in order. */
  readonly effects: string[][] = nodes.map(() => []);
  private requestId = 0;
  private epoch = 1;

  constructor(lazy: boolean) {
    this.cores = nodes.map((nodeId, index) => {
      const core = new Replica(
        { nodeId, volume: "vol", partition: 0, partitionStart: 0, partitionBytes, session: 1 },
        { notes: [] },
        limits,
      );
      const drain = core.drainEffects.bind(core);
      core.drainEffects = () => {
        const drained = drain();
        for (const effect of drained) this.effects[index]!.push(describeEffect(effect));
        return drained;
      };
      return core;
    });
    this.lazy = lazy
      ? { schedule: new TickSchedule(), held: this.cores.map((core) => new HeldTicks(core, 0)) }
      : undefined;
    this.cores.forEach((core, index) => {
      this.lazy?.schedule.wake(index);
      if (this.lazy !== undefined) {
        // As the shell: every input passes the gate. Completions (through the effect
        // runner's completion hook) too, although they never find a tick held: a core
        // with work in flight is never quiet.
        const deliver = core.onReplicationMessage.bind(core);
        core.onReplicationMessage = (message) => {
          this.input(index, () => deliver(message));
        };
        for (const name of [
          "onJournalDurable",
          "onChunkWritten",
          "onChunkFailed",
          "onChunkRead",
          "onChunkReadFailed",
          "onCheckpointDurable",
          "onCheckpointStored",
          "onCheckpointRecorded",
          "onCheckpointFailed",
        ] as const) {
          const original = (core[name] as (...args: unknown[]) => void).bind(core);
          (core as unknown as Record<string, unknown>)[name] = (...args: unknown[]) => {
            this.input(index, () => original(...args));
          };
        }
      }
      this.cluster.add(nodes[index]!, core);
    });
    this.configure(epoch1);
  }

  /** An input to core `index`: through the gate when lazy (PartitionHost.input). */
  private input<T>(index: number, run: (core: Replica) => T): T {
    const lazy = this.lazy;
    if (lazy === undefined) return run(this.cores[index]!);
    const result = lazy.held[index]!.input(lazy.schedule.now, run);
    lazy.schedule.wake(index);
    return result;
  }

  /** One node tick: every core when eager; the due ones, as the head node does, when lazy. */
  private nodeTick(midTick?: () => void): void {
    const lazy = this.lazy;
    if (lazy === undefined) {
      for (const core of this.cores) core.tick();
      midTick?.();
      return;
    }
    const due = lazy.schedule.advance();
    midTick?.();
    for (const index of due) {
      lazy.schedule.due(index, lazy.held[index]!.tick(lazy.schedule.now).dueTick);
    }
  }

  private write(offset: number, length: number, fill: number): void {
    this.input(this.primaryIndex(), (core) =>
      core.onClientRequest({
        kind: "write",
        requestId: ++this.requestId,
        epoch: this.epoch,
        writes: [{ offset, data: new Uint8Array(length).fill(fill) }],
      }),
    );
  }

  private configure(configuration: Configuration): void {
    for (let index = 0; index < this.cores.length; index++) {
      this.input(index, (core) => core.configure(configuration));
    }
    this.cluster.settle();
  }

  private primaryIndex(): number {
    return this.cores.findIndex((core) => core.roleName === "primary");
  }

  apply(step: Action): void {
    const primary = this.primaryIndex();
    switch (step.kind) {
      case "write":
        this.write(step.offset, step.length, step.fill);
        this.cluster.settle();
        return;
      case "trim":
        this.input(primary, (core) =>
          core.onClientRequest({
            kind: "trim",
            requestId: ++this.requestId,
            epoch: this.epoch,
            ranges: [{ offset: step.offset, length: step.length }],
          }),
        );
        this.cluster.settle();
        return;
      case "flush":
        this.input(primary, (core) =>
          core.onClientRequest({ kind: "flush", requestId: ++this.requestId, epoch: this.epoch }),
        );
        this.cluster.settle();
        return;
      case "checkpoint":
        // As the replicator does, through the host (HostedReplica.requestCheckpoint).
        this.input(step.node, (core) => core.requestCheckpoint());
        return;
      case "ticks":
        for (let tick = 0; tick < step.count; tick++) {
          this.nodeTick();
          if (step.settle) this.cluster.settle();
        }
        this.cluster.settle();
        return;
      case "midTick":
        // Eagerly the write comes after every core's tick; lazily the primary's tick
        // (due or not yet asked) must run in its place before the write.
        this.nodeTick(() => this.write(step.offset, 4096, step.fill));
        this.cluster.settle();
        return;
      case "hold":
        // The deadline counts from the core's tick count: it must be caught up.
        this.input(primary, (core) => core.holdAcks(this.epoch, "hold", step.forTicks));
        return;
      case "release":
        this.input(primary, (core) => core.releaseAcks("hold"));
        this.cluster.settle();
        return;
      case "configure": {
        // A failover between the first two nodes (every replica holds every op once
        // settled, so either may lead).
        this.epoch++;
        const next = nodes[step.primary]!;
        this.configure({
          epoch: this.epoch,
          primary: next,
          secondaries: nodes.filter((node) => node !== next),
        });
        return;
      }
      default: {
        const unreachable: never = step;
        throw new Error(`unknown action ${JSON.stringify(unreachable)}`);
      }
    }
  }

  /** Everything the shell and the other cores can see, with the count of ticks given. */
  view() {
    return {
      replies: [...this.cluster.replies].map(([id, reply]) => [id, describeEffect(reply)]),
      cores: this.cores.map((core, index) => ({
        role: core.roleName,
        ticks:
          (core as unknown as { tickCount: number }).tickCount +
          (this.lazy === undefined ? 0 : this.lazy.held[index]!.pending(this.lazy.schedule.now)),
        lastOpNum: core.lastOpNum,
        durableOpNum: core.durableOpNum,
        commitOpNum: core.commitOpNum,
        released: core.releasedThroughOpNum,
        digest: core.metadata.digest(),
        followers: core.followers(),
        recorded: core.recordedCheckpoint,
        space: core.spaceUsage(),
        effects: this.effects[index]!.length,
      })),
    };
  }
}

describe("lazy ticking (TickSchedule, HeldTicks, Replica.quietTicks)", () => {
  it("changes nothing a core does or shows, for any inputs", () => {
    fc.assert(
      fc.property(fc.array(action, { minLength: 1, maxLength: 40 }), (actions) => {
        const eager = new Harness(false);
        const lazy = new Harness(true);
        for (const step of actions) {
          eager.apply(step);
          lazy.apply(step);
          expect(lazy.view()).toEqual(eager.view());
        }
        expect(lazy.effects).toEqual(eager.effects);
      }),
      {
        numRuns: 150,
        // A hold set on an idle primary with held ticks: its deadline counts from the
        // caught-up count (PartitionHost.holdAcks once skipped catching up).
        examples: [
          [
            [
              { kind: "ticks", count: 1, settle: false },
              { kind: "hold", forTicks: 1 },
              { kind: "write", offset: 0, length: 512, fill: 1 },
            ],
          ],
        ],
      },
    );
  });

  it("sends a current follower no heartbeat, and the commit point at once", () => {
    const eager = new Harness(false);
    eager.apply({ kind: "write", offset: 0, length: 4096, fill: 7 });
    eager.apply({ kind: "ticks", count: 300, settle: true });
    const heartbeats = () =>
      eager.effects[0]!.filter(
        (effect) => effect.includes('"replica.notes.v1"') && effect.includes('"notes":[]'),
      ).length;
    const before = heartbeats();
    eager.apply({ kind: "ticks", count: 1000, settle: true });
    // Both followers hold every op, the commit point and the session: nothing to tell.
    expect(heartbeats() - before).toBe(0);
    // A write commits (and its flush record after it, within flushIntervalTicks): the
    // followers learn each new commit point within heartbeatTicks, not 250.
    eager.apply({ kind: "write", offset: 4096, length: 4096, fill: 8 });
    const primary = eager.cores[0]!;
    expect(eager.cores[1]!.commitOpNum).toBeLessThan(primary.commitOpNum);
    eager.apply({ kind: "ticks", count: 3 * limits.heartbeatTicks!, settle: true });
    expect(eager.cores[1]!.commitOpNum).toBe(primary.commitOpNum);
    expect(eager.cores[2]!.commitOpNum).toBe(primary.commitOpNum);
  });

  it("runs an idle replica's ticks only at the primary's timers, and asks an idle secondary only when a message comes", () => {
    const lazy = new Harness(true);
    const asked = lazy.cores.map(() => 0);
    lazy.cores.forEach((core, index) => {
      const quietTicks = core.quietTicks.bind(core);
      core.quietTicks = () => {
        asked[index]!++;
        return quietTicks();
      };
    });
    lazy.apply({ kind: "write", offset: 0, length: 4096, fill: 7 });
    lazy.apply({ kind: "flush" });
    // Let the flush, the checkpoint after it and its record all finish.
    lazy.apply({ kind: "ticks", count: 200, settle: true });
    const before = lazy.lazy!.held.map((held) => held.ticksRun);
    const askedBefore = [...asked];
    lazy.apply({ kind: "ticks", count: 1000, settle: true });
    const ran = lazy.lazy!.held.map((held, index) => held.ticksRun - before[index]!);
    // An idle secondary gets no heartbeat from a primary it has acknowledged, so it is
    // asked only by the gate a message passes (twice per message), never at every tick.
    for (const index of [1, 2]) {
      expect(asked[index]! - askedBefore[index]!).toBeLessThanOrEqual(3 * Math.ceil(1000 / 250));
    }
    // Nor is the primary: its current followers get no heartbeats, and its looks for
    // chunks to drop and compaction victims found none at this commit point, so they
    // cannot find any until it moves. An idle partition runs no tick at all.
    expect(asked[0]! - askedBefore[0]!).toBeLessThanOrEqual(2);
    expect(ran).toEqual([0, 0, 0]);
  });
});
