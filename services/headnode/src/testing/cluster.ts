// Replica cores wired together for scenario tests, with no faults and no simulated
// delays worth speaking of: each core's effects are carried out by the head node's
// effect runner through the shared fakes (fakes.ts), and `settle()` completes work and
// delivers messages until nothing moves. Core ticks stay with the test (`core.tick()`),
// so a test decides exactly when flushes, checkpoints and resends may happen.
//
// A test can take the coordinator away (`recordsHeld`): checkpoints then reach the local
// file and the sleds but are not recorded, as when a head node is killed in between; and
// it can cut a node off (`isolated`): messages to and from it are lost.

import type { BallastError } from "@ballast/protocol";
import { EffectRunner } from "../effect-runner.ts";
import type { ReplicationMessage, Reply } from "../replica/effects.ts";
import type { Replica } from "../replica/replica.ts";
import {
  DriftingClock,
  FakeCheckpointFile,
  FakeCheckpointRecords,
  FakeJournal,
  FakeNetwork,
  FakeSleds,
  SimRandom,
  type SimWorld,
  simWorld,
} from "./fakes.ts";

export interface ClusterNode {
  core: Replica;
  runner: EffectRunner;
  /** The node's disks: they outlive its core (`restart`). */
  journal: FakeJournal;
  checkpoints: FakeCheckpointFile;
}

const settleRoundsMax = 10_000;

export class InstantCluster {
  readonly nodes = new Map<string, ClusterNode>();
  readonly sleds: FakeSleds;
  readonly records = new FakeCheckpointRecords();
  /** Client replies, by request id. */
  readonly replies = new Map<number, Reply | BallastError>();
  /** While set, checkpoint records wait (the coordinator is out of reach). */
  recordsHeld = false;
  /** Nodes whose messages, both ways, are lost. */
  readonly isolated = new Set<string>();
  private tick = 0;
  private readonly world: SimWorld;
  private readonly network: FakeNetwork<{
    from: string;
    to: string;
    message: ReplicationMessage;
  }>;

  constructor(seed = 1) {
    this.world = simWorld(
      new SimRandom(seed),
      { tick: () => this.tick, faultsOn: () => false },
      (check, message) => {
        throw new Error(`[${check}] ${message}`);
      },
    );
    this.network = new FakeNetwork(this.world, { dropRate: 0, duplicateRate: 0, delayTicksMax: 0 });
    this.sleds = new FakeSleds(this.world, {
      chunkFailRate: 0,
      chunkWriteTicksMax: 1,
      blobPutFailRate: 0,
      blobCopyLossRate: 0,
      blobPutTicksMax: 0,
    });
  }

  /** Adds a node with empty disks (or those of `disks`) running `core`. */
  add(
    id: string,
    core: Replica,
    disks?: Pick<ClusterNode, "journal" | "checkpoints">,
  ): ClusterNode {
    const journal = disks?.journal ?? new FakeJournal(this.world, 0);
    const checkpoints = disks?.checkpoints ?? new FakeCheckpointFile(this.world, 1);
    const runner = new EffectRunner(
      core,
      {
        journal,
        checkpoints,
        sleds: this.sleds.port(id),
        transport: {
          send: (to, message) => this.network.send({ from: id, to, message }),
          recordCheckpoint: (pointer, done) => this.records.record(id, id, pointer, done),
        },
        clock: new DriftingClock(() => this.tick),
      },
      {
        reply: (requestId, reply) => this.replies.set(requestId, reply),
        replyError: (requestId, error) => this.replies.set(requestId, error),
        fatal: (what, error) => {
          throw new Error(`${id}: ${what}: ${error.message}`);
        },
      },
    );
    runner.sleds = ["sled-1", "sled-2"];
    this.nodes.get(id)?.runner.close();
    const node = { core, runner, journal, checkpoints };
    this.nodes.set(id, node);
    return node;
  }

  /** kill -9 and restart with `core` (built from `node(id)`'s disks): pending work is lost. */
  restart(id: string, core: Replica): ClusterNode {
    const old = this.node(id);
    old.runner.close();
    old.journal.crash();
    old.checkpoints.crash();
    return this.add(id, core, old);
  }

  node(id: string): ClusterNode {
    const node = this.nodes.get(id);
    if (node === undefined) throw new Error(`no node ${id}`);
    return node;
  }

  /** Carries out effects, completes work and delivers messages until nothing moves. */
  settle(): void {
    for (let round = 0; round < settleRoundsMax; round++) {
      for (const node of this.nodes.values()) node.runner.run();
      if (this.idle()) return;
      this.tick++;
      for (const node of this.nodes.values()) {
        node.journal.complete();
        node.checkpoints.complete();
      }
      this.sleds.complete();
      this.records.complete(() => this.recordsHeld);
      const lost = ({ from, to }: { from: string; to: string }) =>
        this.isolated.has(from) || this.isolated.has(to);
      for (const { to, message } of this.network.due((e) => (lost(e) ? "lose" : "deliver"))) {
        const target = this.nodes.get(to);
        if (target === undefined) continue;
        target.core.onReplicationMessage(message);
        target.runner.run();
      }
    }
    throw new Error("the cluster did not settle");
  }

  private idle(): boolean {
    if (this.network.size > 0 || this.sleds.pending > 0) return false;
    if (!this.recordsHeld && this.records.pending > 0) return false;
    for (const node of this.nodes.values()) {
      if (node.journal.pending > 0 || node.checkpoints.pending) return false;
    }
    return true;
  }
}
