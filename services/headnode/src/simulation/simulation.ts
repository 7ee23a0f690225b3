// Deterministic simulation of one partition: the real replica cores, on a simulated
// network, disk and set of sleds, all driven by one seeded random generator and a tick
// counter. Nothing reads the clock or Math.random, so a seed replays exactly.
//
// Faults: the network drops, duplicates, delays and so reorders messages; a disk
// completes journal writes after a delay, and a crash loses what had not completed (the
// append in progress may leave a prefix of its notes: a torn tail); chunk writes to the
// fake sleds fail at a rate; replicas crash and restart from their durable journal and
// last durable checkpoint with a new session number.
//
// Checkers run while it goes and after it settles (see checker.ts): every committed op
// is the same note on every replica; every acknowledged write was committed as sent;
// every read returns exactly the model's state at the op it reports, and never an older
// state than an acknowledged write it follows; once settled, every replica's metadata is
// identical and a full read matches the model; on every replica at every tick, the space
// accounting holds (every referenced chunk is in the table, kept counts equal a recount,
// no drop refused), with drops and compaction frequent (small limits).
//
// The core's effects are carried out by the head node's own effect runner
// (effect-runner.ts), through the seeded fakes of testing/fakes.ts for the journal,
// checkpoint file, sleds, network and coordinator; integration tests use the real ones.

import { BallastError } from "@ballast/protocol";
import type { ReplicaLimits } from "../constants.ts";
import { EffectRunner } from "../effect-runner.ts";
import type { ReplicaPorts } from "../ports.ts";
import type { ReadResult, ReplicationMessage } from "../replica/effects.ts";
import { Replica } from "../replica/replica.ts";
import {
  type ClientOutcome,
  randomRequest,
  resolveRead,
  type SimRequest,
} from "../testing/client.ts";
import {
  DriftingClock,
  FakeCheckpointFile,
  FakeCheckpointRecords,
  FakeJournal,
  FakeNetwork,
  FakeSleds,
  recoveredFrom,
  SimRandom,
  type SimWorld,
  simWorld,
} from "../testing/fakes.ts";
import { Checker, type Violation } from "./checker.ts";

export interface SimulationOptions {
  seed: number;
  replicas: 2 | 3;
  /** Ticks of load, then ticks to settle with faults off. */
  loadTicks: number;
  settleTicksMax: number;
  partitionBytes: number;
  /** Per message: chance of loss and of duplication; the most ticks a delivery waits. */
  dropRate: number;
  duplicateRate: number;
  delayTicksMax: number;
  /** Per tick: chance that a live replica crashes; ticks a crashed replica stays down. */
  crashRate: number;
  downTicksMax: number;
  diskDelayTicksMax: number;
  chunkFailRate: number;
  /** Client requests in flight at most; per tick, chance to issue one. */
  clientConcurrency: number;
  requestRate: number;
  limits: Partial<ReplicaLimits>;
  /**
   * Sabotage, to prove the checkers can fail: a disk that acknowledges journal writes
   * it then loses in a crash (its newest durable notes vanish). Never on in real runs.
   */
  diskLosesAcknowledgedWrites?: boolean;
}

export const simulationDefaults: Omit<SimulationOptions, "seed"> = {
  replicas: 3,
  loadTicks: 400,
  settleTicksMax: 3000,
  partitionBytes: 64 * 1024,
  dropRate: 0.05,
  duplicateRate: 0.03,
  delayTicksMax: 6,
  crashRate: 0.004,
  downTicksMax: 40,
  diskDelayTicksMax: 3,
  chunkFailRate: 0.1,
  clientConcurrency: 6,
  requestRate: 0.6,
  limits: {
    flushBytesThreshold: 8 * 1024,
    flushIntervalTicks: 20,
    chunkBytesMax: 16 * 1024,
    checkpointReleasableBytes: 16 * 1024,
    checkpointIntervalTicks: 60,
    resendTicks: 12,
    heartbeatTicks: 4,
    requestDeadlineTicks: 300,
    notesInflightMax: 64,
    notesPerMessageMax: 16,
    dropIntervalTicks: 5,
    compactionIntervalTicks: 25,
    compactionVictimsMax: 4,
    // Small chunks merged more eagerly than the head node's eighth of chunkBytesMax, so
    // that merges of fully live chunks meet every fault too.
    compactionSmallChunkBytes: 8 * 1024,
    compactionSmallChunksMin: 4,
  },
};

export interface SimulationResult {
  seed: number;
  violations: Violation[];
  stats: {
    ticks: number;
    acknowledgedMutations: number;
    reads: number;
    crashes: number;
    commitOpNum: number;
    chunks: number;
    messagesDropped: number;
    /** Whole-chunk reads for compaction, and chunks dropped by committed records. */
    chunkReads: number;
    chunksDropped: number;
  };
}

interface SimulatedNode {
  id: string;
  replica: Replica | undefined;
  runner: EffectRunner | undefined;
  /** Bumped on every restart: sessions grow with it. */
  incarnation: number;
  restartTick: number;
  /** What survives a crash. */
  journal: FakeJournal;
  checkpoints: FakeCheckpointFile;
}

type Envelope =
  | { kind: "replication"; to: string; message: ReplicationMessage }
  | { kind: "request"; to: string; request: SimRequest }
  | { kind: "reply"; requestId: number; outcome: ClientOutcome };

interface Outstanding {
  request: SimRequest;
  issuedTick: number;
  /** The highest op acknowledged to the client before this request was issued. */
  acknowledgedBefore: number;
}

const epoch = 1;

export class Simulation {
  readonly options: SimulationOptions;
  private readonly random: SimRandom;
  private readonly world: SimWorld;
  private readonly nodes: SimulatedNode[] = [];
  private readonly checker = new Checker();
  private readonly network: FakeNetwork<Envelope>;
  private readonly sleds: FakeSleds;
  private readonly records = new FakeCheckpointRecords();
  private readonly outstanding = new Map<number, Outstanding>();
  private tickNow = 0;
  private nextRequestId = 1;
  private highestAcknowledgedOpNum = 0;
  private faultsOn = true;
  private readonly stats = { crashes: 0, reads: 0, acknowledgedMutations: 0 };

  constructor(options: SimulationOptions) {
    this.options = options;
    this.random = new SimRandom(options.seed);
    this.world = simWorld(
      this.random,
      { tick: () => this.tickNow, faultsOn: () => this.faultsOn },
      (check, message) => this.checker.fail(check, message),
    );
    this.network = new FakeNetwork(this.world, options);
    this.sleds = new FakeSleds(this.world, {
      chunkFailRate: options.chunkFailRate,
      chunkWriteTicksMax: 4,
      blobPutFailRate: 0,
      blobCopyLossRate: 0,
      blobPutTicksMax: 1,
    });
    for (let index = 0; index < options.replicas; index++) {
      this.nodes.push({
        id: `head-${index + 1}`,
        replica: undefined,
        runner: undefined,
        incarnation: 0,
        restartTick: 0,
        journal: new FakeJournal(this.world, options.diskDelayTicksMax),
        checkpoints: new FakeCheckpointFile(this.world, 5),
      });
    }
  }

  async run(): Promise<SimulationResult> {
    try {
      await this.runPhases();
    } catch (error) {
      // An assertion inside a replica (or the simulator) is a detected violation too.
      this.checker.fail("exception", `tick ${this.tickNow}: ${(error as Error).stack ?? error}`);
    }
    const primary = this.nodes[0]!.replica;
    return {
      seed: this.options.seed,
      violations: this.checker.violations,
      stats: {
        ticks: this.tickNow,
        acknowledgedMutations: this.stats.acknowledgedMutations,
        reads: this.stats.reads,
        crashes: this.stats.crashes,
        commitOpNum: primary?.commitOpNum ?? -1,
        chunks: primary?.metadata.chunks.size ?? -1,
        messagesDropped: this.network.dropped,
        chunkReads: this.sleds.chunkReads,
        chunksDropped: this.checker.chunksDropped,
      },
    };
  }

  private async runPhases(): Promise<void> {
    for (const node of this.nodes) await this.start(node);
    for (let tick = 0; tick < this.options.loadTicks; tick++) await this.step(true);
    this.faultsOn = false;
    for (const node of this.nodes) if (node.replica === undefined) await this.start(node);
    let settled = false;
    for (let tick = 0; tick < this.options.settleTicksMax && !settled; tick++) {
      await this.step(false);
      settled = this.isSettled();
    }
    if (!settled) {
      this.checker.fail(
        "settle",
        `replicas did not settle within ${this.options.settleTicksMax} ticks: ${this.describeState()}`,
      );
    } else {
      this.checkSettled();
    }
  }

  // ---------------------------------------------------------------- one tick

  private async step(load: boolean): Promise<void> {
    this.tickNow++;
    if (load) {
      await this.maybeCrashOrRestart();
      this.maybeIssueRequest();
    } else {
      this.expireClientRequests(true);
    }
    this.completeWork();
    this.deliverMessages();
    for (const node of this.nodes) {
      if (node.replica === undefined) continue;
      node.replica.tick();
      node.runner?.run();
      this.checker.space(node.id, node.replica.metadata);
    }
    this.expireClientRequests(false);
  }

  private chance(probability: number): boolean {
    return this.random.chance(probability);
  }

  private integer(from: number, to: number): number {
    return this.random.integer(from, to);
  }

  // ---------------------------------------------------------------- replicas

  private async start(node: SimulatedNode): Promise<void> {
    node.incarnation++;
    // Sessions grow with every restart, as the head node's durable counter makes them.
    const session = node.incarnation;
    const recovered = await recoveredFrom(node.journal, node.checkpoints);
    const replica = new Replica(
      {
        nodeId: node.id,
        volume: "sim",
        partition: 0,
        partitionStart: 0,
        partitionBytes: this.options.partitionBytes,
        session,
      },
      recovered,
      this.options.limits,
      { committed: (note) => this.checker.committed(node.id, note) },
    );
    replica.configure({
      epoch,
      primary: this.nodes[0]!.id,
      secondaries: this.nodes.slice(1).map((other) => other.id),
    });
    node.replica = replica;
    node.runner = new EffectRunner(replica, this.portsOf(node), {
      reply: (requestId, reply) =>
        this.network.send({ kind: "reply", requestId, outcome: { ok: true, reply } }),
      replyError: (requestId, error) =>
        this.network.send({ kind: "reply", requestId, outcome: { ok: false, error } }),
      fatal: (what, error) => this.checker.fail("exception", `${what}: ${error.message}`),
    });
    node.runner.sleds = ["sled-1", "sled-2"];
    node.runner.run();
  }

  private portsOf(node: SimulatedNode): ReplicaPorts {
    return {
      journal: node.journal,
      checkpoints: node.checkpoints,
      sleds: this.sleds.port(node.id),
      transport: {
        send: (to, message) => this.network.send({ kind: "replication", to, message }),
        // A coordinator that always takes the record.
        recordCheckpoint: (pointer, done) => this.records.record(node.id, node.id, pointer, done),
      },
      clock: new DriftingClock(() => this.tickNow),
    };
  }

  private async maybeCrashOrRestart(): Promise<void> {
    for (const node of this.nodes) {
      if (node.replica === undefined) {
        if (this.tickNow >= node.restartTick) await this.start(node);
        continue;
      }
      const anotherIsDown = this.nodes.some((other) => other.replica === undefined);
      if (!anotherIsDown && this.chance(this.options.crashRate)) this.crash(node);
    }
  }

  private crash(node: SimulatedNode): void {
    this.stats.crashes++;
    node.runner?.close();
    node.runner = undefined;
    node.replica = undefined;
    node.restartTick = this.tickNow + this.integer(1, this.options.downTicksMax);
    // The operation in progress may be torn: a prefix of an append survives.
    node.journal.crash();
    node.checkpoints.crash();
    if (this.options.diskLosesAcknowledgedWrites) node.journal.loseNewest(this.integer(1, 3));
  }

  /** Completes disk, sled and coordinator work due by now; each runner hears of its own. */
  private completeWork(): void {
    for (const node of this.nodes) {
      node.journal.complete();
      node.checkpoints.complete();
    }
    this.sleds.complete();
    this.records.complete();
  }

  // ---------------------------------------------------------------- network

  private sendOnNetwork(envelope: Envelope): void {
    this.network.send(envelope);
  }

  private deliverMessages(): void {
    for (const envelope of this.network.due()) {
      switch (envelope.kind) {
        case "replication": {
          const node = this.node(envelope.to);
          if (node.replica === undefined) break;
          node.replica.onReplicationMessage(envelope.message);
          node.runner?.run();
          break;
        }
        case "request":
          this.deliverRequest(envelope.to, envelope.request);
          break;
        case "reply":
          this.receiveReply(envelope.requestId, envelope.outcome);
          break;
        default: {
          const unreachable: never = envelope;
          throw new Error(`unknown envelope ${JSON.stringify(unreachable)}`);
        }
      }
    }
  }

  private node(id: string): SimulatedNode {
    const node = this.nodes.find((candidate) => candidate.id === id);
    if (node === undefined) throw new Error(`no node ${id}`);
    return node;
  }

  // ---------------------------------------------------------------- the client

  private maybeIssueRequest(): void {
    if (this.outstanding.size >= this.options.clientConcurrency) return;
    if (!this.chance(this.options.requestRate)) return;
    const requestId = this.nextRequestId++;
    const drawn = randomRequest(this.random, 0, this.options.partitionBytes);
    const request = { ...drawn, requestId, epoch } as SimRequest;
    this.outstanding.set(requestId, {
      request,
      issuedTick: this.tickNow,
      acknowledgedBefore: this.highestAcknowledgedOpNum,
    });
    this.sendOnNetwork({ kind: "request", to: this.nodes[0]!.id, request });
  }

  private deliverRequest(to: string, request: SimRequest): void {
    const node = this.node(to);
    const replica = node.replica;
    if (replica === undefined) return;
    if (request.kind === "read") {
      let outcome: ClientOutcome;
      try {
        const read = replica.read(request.epoch, [
          { offset: request.offset, length: request.length },
        ]);
        outcome = { ok: true, reply: { kind: "read", read } };
      } catch (error) {
        if (!(error instanceof BallastError)) throw error;
        outcome = { ok: false, error };
      }
      // A read's parts are views of the replica's memory and of sled chunks: resolve
      // them now, as the shell does before replying.
      if (outcome.ok && outcome.reply.kind === "read") {
        const bytes = this.resolveRead(outcome.reply.read);
        const outstanding = this.outstanding.get(request.requestId);
        if (outstanding !== undefined) {
          this.checker.read(
            request.offset,
            bytes,
            outcome.reply.read.asOfOpNum,
            outstanding.acknowledgedBefore,
          );
          this.stats.reads++;
        }
      }
      this.sendOnNetwork({ kind: "reply", requestId: request.requestId, outcome });
      return;
    }
    replica.onClientRequest(request);
    node.runner?.run();
  }

  private resolveRead(read: ReadResult): Uint8Array {
    return resolveRead(read, this.sleds.chunks, (check, message) =>
      this.checker.fail(check, message),
    );
  }

  private receiveReply(requestId: number, outcome: ClientOutcome): void {
    const outstanding = this.outstanding.get(requestId);
    if (outstanding === undefined) return; // a duplicate, or given up on
    this.outstanding.delete(requestId);
    if (!outcome.ok || outcome.reply.kind !== "mutation") return;
    const request = outstanding.request;
    if (request.kind === "read" || request.kind === "flush") {
      this.checker.fail("client", `request ${requestId} (${request.kind}) got a mutation reply`);
      return;
    }
    this.stats.acknowledgedMutations++;
    this.checker.acknowledged(request, outcome.reply.opNumFirst, outcome.reply.opNumLast);
    this.highestAcknowledgedOpNum = Math.max(
      this.highestAcknowledgedOpNum,
      outcome.reply.opNumLast,
    );
  }

  private expireClientRequests(all: boolean): void {
    for (const [requestId, outstanding] of this.outstanding) {
      if (all || this.tickNow - outstanding.issuedTick > 400) this.outstanding.delete(requestId);
    }
  }

  // ---------------------------------------------------------------- settling

  private isSettled(): boolean {
    const replicas = this.nodes.map((node) => node.replica);
    if (replicas.some((replica) => replica === undefined)) return false;
    const primary = replicas[0]!;
    if (this.network.size > 0 || this.sleds.pending > 0) return false;
    if (this.nodes.some((node) => node.journal.pending > 0)) return false;
    // A secondary may still hold an uncommitted op past the primary's last, from the
    // primary's previous life: it is replaced by the next op, and until then harmless.
    return replicas.every(
      (replica) =>
        replica!.commitOpNum === primary.lastOpNum && replica!.durableOpNum >= primary.lastOpNum,
    );
  }

  private checkSettled(): void {
    const primary = this.nodes[0]!.replica!;
    const expected = primary.metadata.fingerprint();
    for (const node of this.nodes) this.checker.space(node.id, node.replica!.metadata);
    for (const node of this.nodes.slice(1)) {
      const fingerprint = node.replica!.metadata.fingerprint();
      if (fingerprint !== expected) {
        this.checker.fail(
          "metadata",
          `${node.id}'s metadata differs from the primary's once settled`,
        );
      }
    }
    const read = primary.read(epoch, [{ offset: 0, length: this.options.partitionBytes }]);
    this.checker.read(0, this.resolveRead(read), read.asOfOpNum, this.highestAcknowledgedOpNum);
    this.checker.allAcknowledgedCommitted(primary.commitOpNum);
  }

  private describeState(): string {
    return this.nodes
      .map((node) =>
        node.replica === undefined
          ? `${node.id}: down`
          : `${node.id}: ${node.replica.roleName} last ${node.replica.lastOpNum} durable ${node.replica.durableOpNum} commit ${node.replica.commitOpNum}`,
      )
      .join("; ");
  }
}

export async function simulate(
  seed: number,
  overrides: Partial<Omit<SimulationOptions, "seed">> = {},
): Promise<SimulationResult> {
  return new Simulation({ ...simulationDefaults, ...overrides, seed }).run();
}
