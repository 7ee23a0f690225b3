// Differential test of lazy ticking (held-ticks.ts, Replica.quietTicks): the same random
// inputs drive two clusters of cores, one whose cores are ticked every time and one
// whose cores are ticked through HeldTicks, as the head node's shell does. Every effect
// each core produces, every reply and every number the shell reads must be the same;
// only the count of ticks actually run may differ.

import { crc32c } from "@ballast/protocol";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { ReplicaLimits } from "../src/constants.ts";
import { HeldTicks } from "../src/held-ticks.ts";
import { type Configuration, Replica } from "../src/replica/replica.ts";
import { InstantCluster } from "../src/testing/cluster.ts";

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
  | { kind: "configure"; primary: number };

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
);

/** Effects as comparable text: bytes by length and checksum. */
function describeEffect(effect: unknown): string {
  return JSON.stringify(effect, (_key, value) =>
    value instanceof Uint8Array ? `bytes:${value.length}:${crc32c(value)}` : value,
  );
}

class Harness {
  readonly cluster = new InstantCluster();
  readonly cores: Replica[];
  readonly held: HeldTicks[] | undefined;
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
    this.held = lazy ? this.cores.map((core) => new HeldTicks(core)) : undefined;
    this.cores.forEach((core, index) => {
      if (this.held !== undefined) {
        // As the shell: every input finds the held ticks handed over first. Completions
        // (through the effect runner) never find any held: a core with work in flight is
        // never quiet.
        const held = this.held[index]!;
        const deliver = core.onReplicationMessage.bind(core);
        core.onReplicationMessage = (message) => {
          held.catchUp();
          deliver(message);
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
            if (held.pending > 0)
              throw new Error(`${name} arrived with ${held.pending} held ticks`);
            original(...args);
          };
        }
      }
      this.cluster.add(nodes[index]!, core);
    });
    this.configure(epoch1);
  }

  private input(index: number, run: (core: Replica) => void): void {
    this.held?.[index]?.catchUp();
    run(this.cores[index]!);
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
        this.input(primary, (core) =>
          core.onClientRequest({
            kind: "write",
            requestId: ++this.requestId,
            epoch: this.epoch,
            writes: [{ offset: step.offset, data: new Uint8Array(step.length).fill(step.fill) }],
          }),
        );
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
        // As the replicator does: straight to the core, no catching up.
        this.cores[step.node]!.requestCheckpoint();
        return;
      case "ticks":
        for (let tick = 0; tick < step.count; tick++) {
          this.cores.forEach((core, index) => {
            if (this.held === undefined) core.tick();
            else this.held[index]!.tick();
          });
          if (step.settle) this.cluster.settle();
        }
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
          (core as unknown as { tickCount: number }).tickCount + (this.held?.[index]?.pending ?? 0),
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

describe("lazy ticking (HeldTicks, Replica.quietTicks)", () => {
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
      { numRuns: 150 },
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

  it("runs an idle replica's ticks only at the primary's timers", () => {
    const lazy = new Harness(true);
    lazy.apply({ kind: "write", offset: 0, length: 4096, fill: 7 });
    lazy.apply({ kind: "flush" });
    // Let the flush, the checkpoint after it and its record all finish.
    lazy.apply({ kind: "ticks", count: 200, settle: true });
    const before = lazy.held!.map((held) => held.ticksRun);
    lazy.apply({ kind: "ticks", count: 1000, settle: true });
    const ran = lazy.held!.map((held, index) => held.ticksRun - before[index]!);
    // The primary runs a tick only for its looks for drops (7) and compaction victims
    // (11): its current followers get no heartbeats; its secondaries, which only take
    // notes and commit points (their held ticks counted as each arrives), run none.
    expect(ran[0]).toBeGreaterThan(0);
    expect(ran[0]).toBeLessThanOrEqual(Math.ceil(1000 / 7) + Math.ceil(1000 / 11));
    expect(ran.slice(1)).toEqual([0, 0]);
  });
});
