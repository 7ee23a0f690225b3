// The async shell around one partition replica core. It owns the replica's journal and
// checkpoint file, carries out the core's effects (see replica/effects.ts for the
// ordering contract), and turns NATS requests into core inputs and core replies into
// NATS replies. Time reaches the core as ticks and, for read leases, as this process's
// monotonic clock (performance.now()); a wall clock is never compared across machines.
//
// Ordering: journal effects are handed to the journal in the order the core produced
// them (the journal serializes and group-commits them), and the core hears of an
// append's durability only after its fsync. Sends and replies go out as they come.
//
// Files of a replica, under <data-dir>/partitions/<volume id>/<partition>/ (the volume's
// incarnation, so that a deleted and re-created volume never finds the old one's files):
//   journal/          the note journal (segment files)
//   checkpoint.bin    the last durable metadata snapshot (write to a temporary, fsync,
//                     rename, fsync the directory: a crash leaves the old or the new one)
//   rebuilt.bin       another replica's checkpoint this one was rebuilt from, until it
//                     writes its own (so a crash during the rebuild resumes it)
//
// Each checkpoint is also stored as a blob on two sleds (checkpoints/<volume id>/
// <partition>/<node>/<op>-<session>-<upload>, named by the core) and its pointer recorded
// with the coordinator, each step an effect of the core (replica/effects.ts); once it is
// recorded the core releases journal notes and has the blob it replaced deleted. A
// kill -9 between the local file and the record leaves a local checkpoint newer than
// the recorded one: the core then holds every note its journal still has (see
// replica.ts), so a learner rebuilt from the recorded pointer can still catch up. A
// replacement replica with no state of its own is rebuilt from the pointer its configure
// names: the first sled copy that is whole and sound (CRC32C of the blob, and the
// snapshot's own checksums) wins.

import { mkdir, open, readFile, rename, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import {
  BallastError,
  type CheckpointPointer,
  decodeValue,
  ErrorCode,
  encodeValue,
  type MessageOf,
  subjects,
} from "@ballast/protocol";
import type { Logger, Service } from "@ballast/runtime";
import type { z } from "zod";
import { type ReplicaLimits, tickMs } from "./constants.ts";
import { Journal } from "./journal/index.ts";
import type { Effect, ReadResult, ReplicationMessage, Reply } from "./replica/effects.ts";
import { PartitionMetadata } from "./replica/metadata.ts";
import type { Note } from "./replica/note.ts";
import {
  type ClientRequest,
  type Configuration,
  type FollowerProgress,
  Replica,
} from "./replica/replica.ts";
import type { SledClient } from "./sled-client.ts";

export interface PartitionAddress {
  volume: string;
  /** The volume's incarnation (the volume's name in static assignments). */
  volumeId: string;
  partition: number;
  partitionStart: number;
  partitionBytes: number;
}

type Pointer = z.infer<typeof CheckpointPointer>;

interface Waiting {
  resolve(reply: Reply): void;
  reject(error: BallastError): void;
}

export class PartitionHost {
  readonly address: PartitionAddress;
  readonly replica: Replica;
  private readonly journal: Journal;
  private readonly directory: string;
  private readonly service: Service;
  private readonly sleds: SledClient;
  private readonly logger: Logger;
  private readonly waiting = new Map<number, Waiting>();
  private nextRequestId = 1;
  private sledIds: string[] = [];
  private closed = false;
  /** The op of the checkpoint this replica was rebuilt from, until it writes its own. */
  private rebuiltFromOpNum: number | undefined;

  private constructor(
    address: PartitionAddress,
    replica: Replica,
    journal: Journal,
    directory: string,
    service: Service,
    sleds: SledClient,
  ) {
    this.address = address;
    this.replica = replica;
    this.journal = journal;
    this.directory = directory;
    this.service = service;
    this.sleds = sleds;
    this.logger = service.logger.child({ volume: address.volume, partition: address.partition });
  }

  /** Opens (recovering) the replica's journal and checkpoint and builds its core. */
  static async open(
    service: Service,
    dataDir: string,
    address: PartitionAddress,
    sleds: SledClient,
    session: number,
    rebuildFrom?: Pointer,
    limits: Partial<ReplicaLimits> = {},
    fresh = false,
  ): Promise<PartitionHost> {
    const directory = partitionDirectory(dataDir, address.volumeId, address.partition);
    if (fresh && rebuildFrom === undefined) await rm(directory, { recursive: true, force: true });
    if (rebuildFrom !== undefined) {
      // Rebuilt from scratch: fetch first, so that a failed fetch leaves the old state.
      const snapshot = await fetchSnapshot(sleds, rebuildFrom, service.logger);
      await rm(directory, { recursive: true, force: true });
      await mkdir(directory, { recursive: true });
      await writeDurably(join(directory, "rebuilt.bin"), snapshot.bytes);
      service.logger.info(
        {
          volume: address.volume,
          partition: address.partition,
          opNum: rebuildFrom.opNum,
          from: snapshot.sled,
        },
        "rebuilding from a checkpoint on sleds",
      );
    }
    await mkdir(directory, { recursive: true });
    let checkpoint = await readSnapshot(join(directory, "checkpoint.bin"));
    let rebuilt = false;
    const recovered = await Journal.open({ directory: join(directory, "journal") });
    if (checkpoint === undefined) {
      checkpoint = await readSnapshot(join(directory, "rebuilt.bin"));
      rebuilt = checkpoint !== undefined;
    }
    const notes = recovered.records.map((record) => decodeNote(record.payload));
    if (recovered.tornTailBytes > 0) {
      service.logger.warn(
        { volume: address.volume, partition: address.partition, bytes: recovered.tornTailBytes },
        "dropped a torn journal tail",
      );
    }
    const replica = new Replica(
      { nodeId: service.nodeId, ...address, session },
      { ...(checkpoint === undefined ? {} : { checkpoint }), notes, rebuilt },
      limits,
    );
    service.logger.info(
      {
        volume: address.volume,
        partition: address.partition,
        checkpointOpNum: checkpoint?.opNum ?? 0,
        journalNotes: notes.length,
        lastOpNum: replica.lastOpNum,
      },
      "replica recovered",
    );
    const host = new PartitionHost(address, replica, recovered.journal, directory, service, sleds);
    if (rebuilt) host.rebuiltFromOpNum = checkpoint?.opNum;
    return host;
  }

  /** A new replica set; `configuration.leased` makes a primary's reads need a lease. */
  configure(configuration: Configuration, sleds: readonly string[]): void {
    this.sledIds = [...sleds];
    this.replica.configure(configuration);
    this.run();
  }

  /** Renews the primary's read lease of `epoch` until `untilMs` (performance.now() time). */
  renewLease(epoch: number, untilMs: number): void {
    this.replica.renewLease(epoch, untilMs);
  }

  /**
   * What a primary tells the coordinator every report (undefined unless primary). The
   * core itself takes a fresh checkpoint when a learner needs one.
   */
  report(): MessageOf<"headnode.report.v1">["primaries"][number] | undefined {
    const replica = this.replica;
    if (replica.roleName !== "primary") return undefined;
    return {
      volume: this.address.volume,
      volumeId: this.address.volumeId,
      partition: this.address.partition,
      epoch: replica.configuration?.epoch ?? 0,
      session: replica.identity.session,
      commitOpNum: replica.commitOpNum,
      tailCommitted: replica.tailCommitted,
      followers: replica.followers().map(followerOnTheWire),
    };
  }

  tick(): void {
    this.replica.tick();
    this.run();
  }

  onReplication(message: ReplicationMessage): void {
    // Decoded data aliases the NATS message buffer: the core keeps notes, so copy.
    if (message.type === "replica.notes.v1") {
      message.notes = message.notes.map((note) =>
        note.data === undefined
          ? note
          : { ...note, data: Uint8Array.prototype.slice.call(note.data) },
      );
    }
    this.replica.onReplicationMessage(message);
    this.run();
  }

  /** Runs a write, trim, zeroes or flush request to its reply. */
  request(build: (requestId: number) => ClientRequest): Promise<Reply> {
    const requestId = this.nextRequestId++;
    const reply = new Promise<Reply>((resolve, reject) => {
      this.waiting.set(requestId, { resolve, reject });
    });
    this.replica.onClientRequest(build(requestId));
    this.run();
    return reply;
  }

  /** Plans a read in the core, then fetches chunk parts from sleds. */
  async read(message: MessageOf<"volume.read.v1">): Promise<{ data: Uint8Array[] }> {
    // The core checks the read lease against this monotonic clock: once it has run out,
    // another primary may exist, and serving could return data older than a write
    // acknowledged there.
    const plan: ReadResult = this.replica.read(message.epoch, message.reads, performance.now());
    const data = await Promise.all(plan.ranges.map((range) => this.assemble(range)));
    return { data };
  }

  private async assemble(range: ReadResult["ranges"][number]): Promise<Uint8Array> {
    const bytes = new Uint8Array(range.length);
    await Promise.all(
      range.parts.map(async (part) => {
        const at = part.offset - range.offset;
        switch (part.kind) {
          case "zero":
            return;
          case "memory":
            bytes.set(part.data, at);
            return;
          case "chunk": {
            const data = await this.sleds.readChunk(
              { volume: this.address.volume, partition: this.address.partition },
              part.chunk.sledChunkId,
              part.chunk.copies,
              part.chunkOffset,
              part.length,
            );
            bytes.set(data, at);
            return;
          }
          default: {
            const unreachable: never = part;
            throw new Error(`unknown read part ${JSON.stringify(unreachable)}`);
          }
        }
      }),
    );
    return bytes;
  }

  /** The metadata digest, recomputed only when the commit point has moved. */
  private digestCache: { commitOpNum: number; digest: string } | undefined;

  private digest(): string {
    const commitOpNum = this.replica.commitOpNum;
    if (this.digestCache?.commitOpNum !== commitOpNum) {
      this.digestCache = { commitOpNum, digest: this.replica.metadata.digest() };
    }
    return this.digestCache.digest;
  }

  /** A few numbers per replica, cheap enough for every node-info request. */
  summary() {
    const replica = this.replica;
    return {
      volume: this.address.volume,
      volumeId: this.address.volumeId,
      partition: this.address.partition,
      role: replica.roleName,
      epoch: replica.configuration?.epoch ?? 0,
      lastOpNum: replica.lastOpNum,
      commitOpNum: replica.commitOpNum,
    };
  }

  status() {
    const replica = this.replica;
    const primary = replica.roleName === "primary";
    return {
      volume: this.address.volume,
      volumeId: this.address.volumeId,
      partition: this.address.partition,
      role: replica.roleName,
      epoch: replica.configuration?.epoch ?? 0,
      lastOpNum: replica.lastOpNum,
      durableOpNum: replica.durableOpNum,
      commitOpNum: replica.commitOpNum,
      flushedThroughOpNum: replica.metadata.flushedThroughOpNum,
      chunks: replica.metadata.chunks.size,
      extents: replica.metadata.tree.extentCount,
      metadataDigest: this.digest(),
      followers: replica.followers().map(followerOnTheWire),
      ...(primary ? { tailCommitted: replica.tailCommitted } : {}),
      ...(replica.recordedCheckpoint === undefined
        ? {}
        : { checkpoint: replica.recordedCheckpoint }),
      ...(this.rebuiltFromOpNum === undefined ? {} : { rebuiltFromOpNum: this.rebuiltFromOpNum }),
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const waiting of this.waiting.values()) {
      waiting.reject(
        new BallastError(ErrorCode.ShuttingDown, `${this.service.nodeId} is shutting down`),
      );
    }
    this.waiting.clear();
    await this.journal.close();
  }

  /** Deletes the replica's files; only after `close`. */
  async remove(): Promise<void> {
    await rm(this.directory, { recursive: true, force: true });
  }

  /** Carries out every effect the core has produced. */
  private run(): void {
    for (const effect of this.replica.drainEffects()) this.execute(effect);
  }

  private execute(effect: Effect): void {
    switch (effect.type) {
      case "journal.append": {
        const last = effect.notes[effect.notes.length - 1];
        if (last === undefined) return;
        const records = effect.notes.map((note) => ({
          opNum: note.opNum,
          payload: encodeNote(note),
        }));
        this.journal.append(records).then(
          () => {
            if (this.closed) return;
            this.replica.onJournalDurable(last.opNum, effect.generation);
            this.run();
          },
          (error) => this.fatal("journal append failed", error),
        );
        return;
      }
      case "journal.truncate":
        this.journal
          .truncateAfter(effect.afterOpNum)
          .catch((error) => this.fatal("journal truncate failed", error));
        return;
      case "journal.release":
        this.journal
          .releaseThrough(effect.throughOpNum)
          .catch((error) => this.logger.error({ error: String(error) }, "journal release failed"));
        return;
      case "send":
        this.service.bus.publish(
          subjects.replica.build(this.address.volume, this.address.partition, effect.to),
          effect.message,
        );
        return;
      case "reply": {
        const waiting = this.waiting.get(effect.requestId);
        this.waiting.delete(effect.requestId);
        waiting?.resolve(effect.reply);
        return;
      }
      case "reply.error": {
        const waiting = this.waiting.get(effect.requestId);
        this.waiting.delete(effect.requestId);
        waiting?.reject(effect.error);
        return;
      }
      case "chunk.write":
        this.sleds
          .writeChunk(
            { volume: this.address.volume, partition: this.address.partition },
            effect.sledChunkId,
            effect.data,
            this.sledIds,
            effect.chunkNumber,
          )
          .then(
            (copies) => {
              this.replica.onChunkWritten(effect.chunkNumber, copies);
              this.run();
            },
            (error) => {
              this.logger.warn(
                { chunk: effect.sledChunkId, error: String(error) },
                "chunk write failed; will retry",
              );
              this.replica.onChunkFailed(effect.chunkNumber);
              this.run();
            },
          );
        return;
      case "checkpoint.write":
        this.writeCheckpoint(effect.snapshot).then(
          () => {
            if (this.closed) return;
            this.replica.onCheckpointDurable(effect.opNum);
            this.run();
          },
          (error) => {
            this.logger.error({ error: String(error) }, "checkpoint write failed");
            this.checkpointFailed(effect.opNum);
          },
        );
        return;
      case "checkpoint.store":
        this.storeCheckpoint(effect).then(
          (pointer) => {
            if (pointer === undefined) return this.checkpointFailed(effect.opNum);
            this.replica.onCheckpointStored(effect.opNum, pointer);
            this.run();
          },
          (error) => {
            this.logger.warn(
              { opNum: effect.opNum, error: (error as Error).message },
              "could not store a checkpoint on sleds; will with the next",
            );
            this.checkpointFailed(effect.opNum);
          },
        );
        return;
      case "checkpoint.record": {
        const { volume, volumeId, partition } = this.address;
        this.service.bus
          .request(subjects.coordinator.build(), {
            type: "checkpoint.record.v1",
            volume,
            volumeId,
            partition,
            node: this.service.nodeId,
            checkpoint: effect.pointer,
          })
          .then(
            ({ replaced }) => {
              if (this.closed) return;
              this.logger.info(
                { opNum: effect.opNum, key: effect.pointer.blobKey, sleds: effect.pointer.sleds },
                "checkpoint stored on sleds and recorded",
              );
              this.replica.onCheckpointRecorded(effect.opNum, replaced);
              this.run();
            },
            (error) => {
              this.logger.warn(
                { opNum: effect.opNum, error: (error as Error).message },
                "could not record a checkpoint; will with the next",
              );
              this.checkpointFailed(effect.opNum);
            },
          );
        return;
      }
      case "blob.delete":
        this.sleds
          .deleteBlob(effect.blobKey, [...effect.sleds])
          .catch((error) =>
            this.logger.warn(
              { blob: effect.blobKey, error: String(error) },
              "could not delete a replaced checkpoint; it stays on its sleds",
            ),
          );
        return;
      default: {
        const unreachable: never = effect;
        throw new Error(`unknown effect ${JSON.stringify(unreachable)}`);
      }
    }
  }

  private async writeCheckpoint(snapshot: Uint8Array): Promise<void> {
    await writeDurably(join(this.directory, "checkpoint.bin"), snapshot);
    if (this.rebuiltFromOpNum !== undefined) {
      // Its own checkpoint now covers everything the rebuilt one did.
      this.rebuiltFromOpNum = undefined;
      await rm(join(this.directory, "rebuilt.bin"), { force: true });
    }
  }

  /** Stores a checkpoint on two sleds; undefined if this host cannot (closed, no sleds). */
  private async storeCheckpoint(
    effect: Extract<Effect, { type: "checkpoint.store" }>,
  ): Promise<Pointer | undefined> {
    if (this.closed || this.sledIds.length === 0) return undefined;
    const sleds = await this.sleds.putBlob(
      effect.blobKey,
      effect.snapshot,
      this.sledIds,
      effect.opNum,
    );
    if (this.closed) {
      // Closed meanwhile (maybe dropped with its volume): a pointer recorded now could
      // outlive the incarnation it belongs to.
      await this.sleds.deleteBlob(effect.blobKey, sleds);
      return undefined;
    }
    return {
      opNum: effect.opNum,
      blobKey: effect.blobKey,
      sleds,
      bytes: effect.snapshot.byteLength,
      createdAtMs: Date.now(),
    };
  }

  private checkpointFailed(opNum: number): void {
    if (this.closed) return;
    this.replica.onCheckpointFailed(opNum);
    this.run();
  }

  /** A journal that cannot write cannot keep promises: stop this process loudly. */
  private fatal(what: string, error: unknown): void {
    this.logger.fatal(
      { error: String(error) },
      `${what}; stopping so that no acknowledgement is wrong`,
    );
    process.kill(process.pid, "SIGTERM");
  }
}

/** Where a replica's files live: per incarnation of the volume, then per partition. */
export function partitionDirectory(dataDir: string, volumeId: string, partition: number): string {
  return join(dataDir, "partitions", volumeId, String(partition));
}

/** A follower as status and reports carry it: stalls in ms (ticks × tickMs). */
function followerOnTheWire(follower: FollowerProgress) {
  return {
    node: follower.node,
    matchOpNum: follower.matchOpNum,
    learner: follower.learner,
    ...(follower.stalledTicks === undefined ? {} : { stalledMs: follower.stalledTicks * tickMs }),
    ...(follower.needsRebuild === true ? { needsRebuild: true } : {}),
  };
}

function encodeNote(note: Note): Uint8Array {
  return encodeValue(note);
}

/** The journal hands out payloads it owns copies of, so the note may keep views of it. */
function decodeNote(payload: Uint8Array): Note {
  return decodeValue(payload) as Note;
}

async function readSnapshot(path: string) {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
  return PartitionMetadata.restore(bytes);
}

/** Writes a file so that a crash leaves the old or the new one, never a mix. */
async function writeDurably(path: string, bytes: Uint8Array): Promise<void> {
  const temporary = `${path}.tmp`;
  const file = await open(temporary, "w");
  try {
    await file.writeFile(bytes);
    await file.sync();
  } finally {
    await file.close();
  }
  await rename(temporary, path);
  const directory = await open(dirname(path), "r");
  try {
    await directory.sync();
  } finally {
    await directory.close();
  }
}

/** The first copy of a checkpoint that is whole and sound, restored. */
async function fetchSnapshot(sleds: SledClient, pointer: Pointer, logger: Logger) {
  const problems: string[] = [];
  for (const sled of pointer.sleds) {
    try {
      const { data } = await sleds.getBlob(pointer.blobKey, pointer.bytes, [sled]);
      const restored = await PartitionMetadata.restore(data);
      if (restored.opNum !== pointer.opNum)
        throw new Error(`holds op ${restored.opNum}, not ${pointer.opNum}`);
      return { bytes: data, restored, sled };
    } catch (error) {
      logger.warn(
        { sled, blob: pointer.blobKey, error: (error as Error).message },
        "checkpoint copy unusable; trying another",
      );
      problems.push(`${sled}: ${(error as Error).message}`);
    }
  }
  throw new BallastError(
    ErrorCode.Unavailable,
    `no usable copy of checkpoint ${pointer.blobKey}: ${problems.join("; ")}`,
  );
}
