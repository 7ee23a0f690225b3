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
// identical and a full read matches the model.
//
// The sleds, network and disk here are fakes for simulation only; integration tests use
// the real ones.

import { BallastError, limits } from "@ballast/protocol";
import { uniformInt } from "pure-rand/distribution/uniformInt";
import { xoroshiro128plus } from "pure-rand/generator/xoroshiro128plus";
import type { JumpableRandomGenerator } from "pure-rand/types/JumpableRandomGenerator";
import type { ReplicaLimits } from "../constants.ts";
import type { Effect, ReadResult, ReplicationMessage } from "../replica/effects.ts";
import { PartitionMetadata } from "../replica/metadata.ts";
import type { Note } from "../replica/note.ts";
import { type ClientRequest, Replica } from "../replica/replica.ts";
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
  };
}

type DiskOperation =
  | { kind: "append"; notes: Note[]; generation: number }
  | { kind: "truncate"; afterOpNum: number }
  | { kind: "release"; throughOpNum: number };

interface SimulatedDisk {
  /** What survives a crash. */
  journal: Note[];
  checkpoint: Uint8Array | undefined;
  /** Operations not yet durable, completed one after another. */
  queue: { operation: DiskOperation; readyTick: number }[];
  checkpointPending: { opNum: number; snapshot: Uint8Array; readyTick: number } | undefined;
  /**
   * The later steps of a checkpoint (stored on the fake sleds, recorded with a coordinator
   * that always accepts), each answered at the next disk pass; lost in a crash.
   */
  checkpointStep:
    | { kind: "store"; opNum: number; blobKey: string; bytes: number }
    | { kind: "record"; opNum: number }
    | undefined;
}

interface SimulatedNode {
  id: string;
  replica: Replica | undefined;
  /** Bumped on every restart, so completions from an earlier life are dropped. */
  incarnation: number;
  restartTick: number;
  disk: SimulatedDisk;
}

type Envelope =
  | { kind: "replication"; to: string; message: ReplicationMessage }
  | { kind: "request"; to: string; request: ClientRequest | ReadRequest }
  | { kind: "reply"; requestId: number; outcome: ClientOutcome };

interface ReadRequest {
  kind: "read";
  requestId: number;
  epoch: number;
  offset: number;
  length: number;
}

type ClientOutcome =
  | { ok: true; reply: Extract<Effect, { type: "reply" }>["reply"] }
  | { ok: false; error: BallastError };

interface Outstanding {
  request: ClientRequest | ReadRequest;
  issuedTick: number;
  /** The highest op acknowledged to the client before this request was issued. */
  acknowledgedBefore: number;
}

const epoch = 1;

export class Simulation {
  readonly options: SimulationOptions;
  private readonly random: JumpableRandomGenerator;
  private readonly nodes: SimulatedNode[] = [];
  private readonly checker = new Checker();
  private readonly inFlight: { tick: number; envelope: Envelope }[] = [];
  private readonly sleds = new Map<string, Uint8Array>();
  private readonly outstanding = new Map<number, Outstanding>();
  private readonly chunkWrites: {
    node: string;
    incarnation: number;
    readyTick: number;
    chunkNumber: number;
    sledChunkId: string;
    data: Uint8Array;
    fails: boolean;
  }[] = [];
  private tickNow = 0;
  private nextRequestId = 1;
  private highestAcknowledgedOpNum = 0;
  private faultsOn = true;
  private readonly stats = { crashes: 0, messagesDropped: 0, reads: 0, acknowledgedMutations: 0 };

  constructor(options: SimulationOptions) {
    this.options = options;
    this.random = xoroshiro128plus(options.seed);
    for (let index = 0; index < options.replicas; index++) {
      this.nodes.push({
        id: `head-${index + 1}`,
        replica: undefined,
        incarnation: 0,
        restartTick: 0,
        disk: {
          journal: [],
          checkpoint: undefined,
          queue: [],
          checkpointPending: undefined,
          checkpointStep: undefined,
        },
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
        messagesDropped: this.stats.messagesDropped,
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
    this.completeDiskWork();
    this.completeChunkWrites();
    this.deliverMessages();
    for (const node of this.nodes) {
      if (node.replica === undefined) continue;
      node.replica.tick();
      this.execute(node);
    }
    this.expireClientRequests(false);
  }

  private chance(probability: number): boolean {
    if (probability <= 0) return false;
    return uniformInt(this.random, 0, 999_999) < probability * 1_000_000;
  }

  private integer(from: number, to: number): number {
    return uniformInt(this.random, from, to);
  }

  // ---------------------------------------------------------------- replicas

  private async start(node: SimulatedNode): Promise<void> {
    node.incarnation++;
    // Sessions grow with every restart, as the head node's durable counter makes them.
    const session = node.incarnation;
    const checkpoint =
      node.disk.checkpoint === undefined
        ? undefined
        : await PartitionMetadata.restore(node.disk.checkpoint);
    const replica = new Replica(
      {
        nodeId: node.id,
        volume: "sim",
        partition: 0,
        partitionStart: 0,
        partitionBytes: this.options.partitionBytes,
        session,
      },
      {
        ...(checkpoint === undefined ? {} : { checkpoint }),
        notes: node.disk.journal.map((note) => ({ ...note })),
      },
      this.options.limits,
      { committed: (note) => this.checker.committed(node.id, note) },
    );
    replica.configure({
      epoch,
      primary: this.nodes[0]!.id,
      secondaries: this.nodes.slice(1).map((other) => other.id),
    });
    node.replica = replica;
    this.execute(node);
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
    node.replica = undefined;
    node.restartTick = this.tickNow + this.integer(1, this.options.downTicksMax);
    // The operation in progress may be torn: a prefix of an append survives.
    const inProgress = node.disk.queue[0];
    if (inProgress !== undefined && inProgress.operation.kind === "append") {
      const kept = this.integer(0, inProgress.operation.notes.length);
      this.appendDurably(node.disk, inProgress.operation.notes.slice(0, kept));
    }
    node.disk.queue = [];
    node.disk.checkpointPending = undefined;
    node.disk.checkpointStep = undefined;
    if (this.options.diskLosesAcknowledgedWrites) {
      const lost = this.integer(1, 3);
      node.disk.journal.splice(Math.max(0, node.disk.journal.length - lost));
    }
  }

  private appendDurably(disk: SimulatedDisk, notes: Note[]): void {
    for (const note of notes) {
      const last = disk.journal[disk.journal.length - 1];
      if (last !== undefined && note.opNum !== last.opNum + 1) {
        this.checker.fail("journal", `append of op ${note.opNum} after op ${last.opNum}`);
      }
      disk.journal.push(note);
    }
  }

  /** Carries out the effects a replica produced. */
  private execute(node: SimulatedNode): void {
    const replica = node.replica;
    if (replica === undefined) return;
    for (const effect of replica.drainEffects()) {
      switch (effect.type) {
        case "journal.append":
          this.enqueueDisk(node, {
            kind: "append",
            notes: effect.notes,
            generation: effect.generation,
          });
          break;
        case "journal.truncate":
          this.enqueueDisk(node, { kind: "truncate", afterOpNum: effect.afterOpNum });
          break;
        case "journal.release":
          this.enqueueDisk(node, { kind: "release", throughOpNum: effect.throughOpNum });
          break;
        case "send":
          this.sendOnNetwork({ kind: "replication", to: effect.to, message: effect.message });
          break;
        case "reply":
          this.sendOnNetwork({
            kind: "reply",
            requestId: effect.requestId,
            outcome: { ok: true, reply: effect.reply },
          });
          break;
        case "reply.error":
          this.sendOnNetwork({
            kind: "reply",
            requestId: effect.requestId,
            outcome: { ok: false, error: effect.error },
          });
          break;
        case "chunk.write":
          this.chunkWrites.push({
            node: node.id,
            incarnation: node.incarnation,
            readyTick: this.tickNow + this.integer(1, 4),
            chunkNumber: effect.chunkNumber,
            sledChunkId: effect.sledChunkId,
            data: effect.data,
            fails: this.faultsOn && this.chance(this.options.chunkFailRate),
          });
          break;
        case "checkpoint.write":
          node.disk.checkpointPending = {
            opNum: effect.opNum,
            snapshot: effect.snapshot,
            readyTick: this.tickNow + this.integer(1, 5),
          };
          break;
        case "checkpoint.store":
          node.disk.checkpointStep = {
            kind: "store",
            opNum: effect.opNum,
            blobKey: effect.blobKey,
            bytes: effect.snapshot.byteLength,
          };
          break;
        case "checkpoint.record":
          node.disk.checkpointStep = { kind: "record", opNum: effect.opNum };
          break;
        case "blob.delete":
          // Checkpoint blobs are not kept here: nothing in this simulation fetches them.
          break;
        default: {
          const unreachable: never = effect;
          throw new Error(`unknown effect ${JSON.stringify(unreachable)}`);
        }
      }
    }
  }

  private enqueueDisk(node: SimulatedNode, operation: DiskOperation): void {
    const previous = node.disk.queue[node.disk.queue.length - 1]?.readyTick ?? this.tickNow;
    const delay = this.faultsOn ? this.integer(0, this.options.diskDelayTicksMax) : 0;
    node.disk.queue.push({ operation, readyTick: Math.max(previous, this.tickNow + delay) });
  }

  private completeDiskWork(): void {
    for (const node of this.nodes) {
      const disk = node.disk;
      while (disk.queue.length > 0 && disk.queue[0]!.readyTick <= this.tickNow) {
        const { operation } = disk.queue.shift()!;
        switch (operation.kind) {
          case "append": {
            this.appendDurably(
              disk,
              operation.notes.map((note) => ({ ...note })),
            );
            const last = operation.notes[operation.notes.length - 1];
            if (last !== undefined)
              node.replica?.onJournalDurable(last.opNum, operation.generation);
            break;
          }
          case "truncate":
            disk.journal = disk.journal.filter((note) => note.opNum <= operation.afterOpNum);
            break;
          case "release":
            disk.journal = disk.journal.filter((note) => note.opNum > operation.throughOpNum);
            break;
          default: {
            const unreachable: never = operation;
            throw new Error(`unknown disk operation ${JSON.stringify(unreachable)}`);
          }
        }
        this.execute(node);
      }
      const step = disk.checkpointStep;
      if (step !== undefined) {
        disk.checkpointStep = undefined;
        if (step.kind === "store") {
          node.replica?.onCheckpointStored(step.opNum, {
            opNum: step.opNum,
            blobKey: step.blobKey,
            sleds: ["sled-1", "sled-2"],
            bytes: step.bytes,
            createdAtMs: this.tickNow,
          });
        } else {
          node.replica?.onCheckpointRecorded(step.opNum);
        }
        this.execute(node);
      }
      const pending = disk.checkpointPending;
      if (pending !== undefined && pending.readyTick <= this.tickNow) {
        disk.checkpoint = pending.snapshot;
        disk.checkpointPending = undefined;
        node.replica?.onCheckpointDurable(pending.opNum);
        this.execute(node);
      }
    }
  }

  private completeChunkWrites(): void {
    for (let index = 0; index < this.chunkWrites.length; ) {
      const write = this.chunkWrites[index]!;
      if (write.readyTick > this.tickNow) {
        index++;
        continue;
      }
      this.chunkWrites.splice(index, 1);
      if (!write.fails) {
        const existing = this.sleds.get(write.sledChunkId);
        if (existing !== undefined && Buffer.compare(existing, write.data) !== 0) {
          this.checker.fail("sled", `chunk ${write.sledChunkId} written twice with different data`);
        }
        this.sleds.set(write.sledChunkId, write.data);
      }
      const node = this.nodes.find((candidate) => candidate.id === write.node)!;
      if (node.replica === undefined || node.incarnation !== write.incarnation) continue;
      if (write.fails) node.replica.onChunkFailed(write.chunkNumber);
      else node.replica.onChunkWritten(write.chunkNumber, ["sled-1", "sled-2"]);
      this.execute(node);
    }
  }

  // ---------------------------------------------------------------- network

  private sendOnNetwork(envelope: Envelope): void {
    if (this.faultsOn && this.chance(this.options.dropRate)) {
      this.stats.messagesDropped++;
      return;
    }
    const copies = this.faultsOn && this.chance(this.options.duplicateRate) ? 2 : 1;
    for (let copy = 0; copy < copies; copy++) {
      const delay = this.faultsOn ? this.integer(0, this.options.delayTicksMax) : 0;
      this.inFlight.push({ tick: this.tickNow + delay, envelope });
    }
  }

  private deliverMessages(): void {
    const due = this.inFlight.filter((entry) => entry.tick <= this.tickNow);
    if (due.length === 0) return;
    const remaining = this.inFlight.filter((entry) => entry.tick > this.tickNow);
    this.inFlight.length = 0;
    this.inFlight.push(...remaining);
    for (const { envelope } of due) {
      switch (envelope.kind) {
        case "replication": {
          const node = this.node(envelope.to);
          if (node.replica === undefined) break;
          node.replica.onReplicationMessage(envelope.message);
          this.execute(node);
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
    const sectors = this.options.partitionBytes / limits.sectorBytes;
    const pickRange = () => {
      const length = this.integer(1, 8) * limits.sectorBytes;
      const offset = this.integer(0, sectors - length / limits.sectorBytes) * limits.sectorBytes;
      return { offset, length };
    };
    const roll = this.integer(0, 99);
    let request: ClientRequest | ReadRequest;
    if (roll < 55) {
      const writes = Array.from({ length: this.integer(1, 3) }, () => {
        const { offset, length } = pickRange();
        const data = new Uint8Array(length);
        for (let index = 0; index < length; index += 512) {
          data.fill(this.integer(1, 255), index, index + 512);
        }
        return { offset, data };
      });
      request = { kind: "write", requestId, epoch, writes };
    } else if (roll < 62) {
      request = { kind: "trim", requestId, epoch, ranges: [pickRange()] };
    } else if (roll < 68) {
      request = { kind: "zeroes", requestId, epoch, ranges: [pickRange()] };
    } else if (roll < 70) {
      request = { kind: "flush", requestId, epoch };
    } else {
      request = { kind: "read", requestId, epoch, ...pickRange() };
    }
    this.outstanding.set(requestId, {
      request,
      issuedTick: this.tickNow,
      acknowledgedBefore: this.highestAcknowledgedOpNum,
    });
    this.sendOnNetwork({ kind: "request", to: this.nodes[0]!.id, request });
  }

  private deliverRequest(to: string, request: ClientRequest | ReadRequest): void {
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
    this.execute(node);
  }

  private resolveRead(read: ReadResult): Uint8Array {
    const range = read.ranges[0]!;
    const bytes = new Uint8Array(range.length);
    for (const part of range.parts) {
      const at = part.offset - range.offset;
      switch (part.kind) {
        case "zero":
          break;
        case "memory":
          bytes.set(part.data, at);
          break;
        case "chunk": {
          const chunk = this.sleds.get(part.chunk.sledChunkId);
          if (chunk === undefined) {
            this.checker.fail(
              "read",
              `chunk ${part.chunk.sledChunkId} is referenced but was never written`,
            );
            break;
          }
          bytes.set(chunk.subarray(part.chunkOffset, part.chunkOffset + part.length), at);
          break;
        }
        default: {
          const unreachable: never = part;
          throw new Error(`unknown part ${JSON.stringify(unreachable)}`);
        }
      }
    }
    return bytes;
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
    if (this.inFlight.length > 0 || this.chunkWrites.length > 0) return false;
    if (this.nodes.some((node) => node.disk.queue.length > 0)) return false;
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
