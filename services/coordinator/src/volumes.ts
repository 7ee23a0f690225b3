// The volume requests the leader answers: create, describe, list and delete, and the
// volume state they show. The catalogue (catalogue.ts) is the source of truth; the
// leader's copy in its tenure is kept in step so that reconcile sees a new volume, and
// stops seeing a deleted one, at once. Creates and deletes run one at a time (the
// shell serializes them).
//
// Incarnations: every create makes a new volume id, never reused, so a volume deleted
// and created again under the same name is another volume to every head node.
//
// Deletes: refused while a gateway has the volume attached, unless forced (attached.ts).
// A delete first records the incarnation to be purged (`purge.<volume id>`,
// see purge.ts and purger.ts), then removes the volume's records, then tells head
// nodes to drop the incarnation's replicas and journals. The leader's purger later
// deletes the incarnation's chunks and checkpoint blobs from every sled.
//
// Stored bytes: describe (and status, through list with `stored`) also counts what the
// incarnation's chunks occupy on sleds, by listing each live sled's chunks of the
// volume's name (`sled.chunk.list.v1`, paged, a bounded number of pages) and keeping
// those purge.ts's `isChunkOf` matches to the incarnation: an older incarnation of the
// name still being purged is never counted. Plain list does not count: it is called
// often and the listings are not free.
//
// Failure model: a create or delete that dies halfway leaves partition records of no
// listed volume, which nothing reconciles and the next create of the name overwrites;
// a sled that is dead, does not answer a listing in time, or holds more of the volume's
// chunks than the bounded listing reads makes the stored totals omitted, with a reason,
// never the describe fail;
// a delete that dies after its purge record is purged all the same. The purge record
// names the head nodes that may hold the incarnation's replicas (the live ones, its
// records' members, the nodes this leader has configured or heard report it): one that
// misses the delete's drop (down, frozen, cut off from the bus) is owed it, and the
// purger sends it again until it answers (purge.ts, "Drops owed"). Nothing else would:
// the incarnation's records are gone, so no configure reaches it, and as primary it
// would keep answering the volume's subject, a re-creation's clients included.

import { randomBytes } from "node:crypto";
import {
  BallastError,
  ErrorCode,
  formatVolumeId,
  isUnreadableRecord,
  limits,
  type MessageOf,
  type ResultOf,
  sledLimits,
  subjects,
  volumeIdNonceBytes,
} from "@ballast/protocol";
import type { Service } from "@ballast/runtime";
import { refuseWhileAttached, tellShrunk } from "./attached.ts";
import {
  type Catalogue,
  type CheckpointPointer,
  idOfVolume,
  mapLimited,
  type Versioned,
  type VolumeParentRecord,
  type VolumeRecord,
} from "./catalogue.ts";
import { now } from "./clock.ts";
import { livePins, pinParents, refuseWhilePinned, unpinDeleted } from "./clone-pins.ts";
import { cloneDepthMax, clonesOf, depthOf, refuseVolumeDelete, snapshotSizeOf } from "./clones.ts";
import type { Configurer } from "./configurer.ts";
import { dropDeadlineMs, shrinkResumePauseMs, shrinkResumePauseMsMax } from "./constants.ts";
import { membersOf, type PartitionRecord, type Report, volumeIdOf } from "./decisions.ts";
import type { HeadNodeFeatures } from "./head-node-features.ts";
import type { Heartbeats } from "./heartbeats.ts";
import { type LeaseBook, partitionKey } from "./leases.ts";
import { loadOf, placePartitions, placeRanges } from "./placement.ts";
import { type ChunkEntry, isChunkOf } from "./purge.ts";
import {
  type ByteRange,
  detachesFirst,
  finishShrinkPlan,
  type LimitChange,
  piecesOf,
  planResize,
  type ResizePlan,
  shrinkingOf,
  unenforcedEnds,
} from "./resize.ts";
import type { StoreMarks } from "./store-marks.ts";
import { forget, remember, type Tenure, type Tenures } from "./tenure.ts";

export type VolumeState = ResultOf<"volume.describe.v1">;
export type VolumeStored = NonNullable<VolumeState["stored"]>;

/**
 * The largest volume a create makes: `partitionsPerVolumeMax` partitions of at most
 * `partitionBytesMax` (256 TiB). `volumeBytesMax` (1 PiB) stays the bound of what the
 * protocol carries, for volumes made when partitions could be larger (and their clones
 * and grows).
 */
export const volumeBytesCreatableMax = limits.partitionsPerVolumeMax * limits.partitionBytesMax;

/**
 * The smallest partition size that keeps `sizeBytes` (at most `volumeBytesCreatableMax`) within
 * `partitionsPerVolumeMax` partitions: what a create refused for its count can use.
 */
export function partitionBytesLeast(sizeBytes: number): number {
  const sectors = Math.ceil(sizeBytes / limits.partitionsPerVolumeMax / limits.sectorBytes);
  return Math.max(limits.partitionBytesMin, sectors * limits.sectorBytes);
}

/**
 * How long one sled's whole chunk listing (all its pages) may take when describe counts
 * stored bytes: short, as status probes are, so that a silent sled costs a describe or a
 * status one deadline, well within the CLI's wait for the answer.
 */
export const storedListDeadlineMs = 2000;

/**
 * Pages of one sled's chunk listing (each up to `sledLimits.chunkListEntriesMax`)
 * read for one volume: past this the sled's share is not counted and the totals are
 * omitted, so a describe stays bounded whatever a sled holds.
 */
export const storedListPagesMax = 16;

/**
 * How long a resize may spend trimming one partition's part of the tail through its
 * primary, retrying across a failover (WrongEpoch, NotPrimary, no primary yet): longer
 * than a failover takes, short enough that the CLI's wait for the answer outlasts it.
 */
export const resizeTrimDeadlineMs = 20_000;
/** One trim request's deadline, and the pause before a retry. */
export const resizeTrimAttemptMs = 3000;
export const resizeTrimRetryPauseMs = 200;
/**
 * How long a resize may spend recording one partition's new served bytes (resize.ts,
 * "The end on the head nodes") and having its primary confirm them, retrying across a
 * failover and a concurrent decision on the record: as for a trim.
 */
export const resizeLimitDeadlineMs = resizeTrimDeadlineMs;
/** Partitions whose served bytes one resize changes at once. */
export const resizeLimitsInflightMax = 64;

/** A resize's write of the volume record refused: by a later leader, or a change since. */
function changedWhileResized(
  name: string,
  reason: "deposed" | "conflict" | undefined,
): BallastError {
  return new BallastError(
    ErrorCode.Unavailable,
    reason === "deposed"
      ? `cannot resize volume ${name}: a later leader wrote its record; retry`
      : `volume ${name} changed while it was being resized; retry`,
  );
}

/** One sled's listing of a volume name's chunks, or why it could not be had. */
export type SledListing =
  | { sled: string; chunks: readonly ChunkEntry[] }
  | { sled: string; error: string };

/**
 * What `volume`'s incarnation stores, from each sled's listing of its name. A chunk is
 * counted when it matches the incarnation exactly (purge.ts's `isChunkOf`); a hashed
 * prefix that another live incarnation shares is ambiguous and not counted. Totals are
 * given only when every sled was counted.
 */
export function storedOf(
  volume: { name: string; id: string },
  listings: readonly SledListing[],
  liveVolumeIds: ReadonlySet<string>,
): VolumeStored {
  // The volume's own id is live, and would make its own hashed prefix look ambiguous.
  const others = new Set([...liveVolumeIds].filter((id) => id !== volume.id));
  const record = { volume: volume.name, volumeId: volume.id };
  const sleds: VolumeStored["sleds"] = [];
  const failed: string[] = [];
  let bytes = 0;
  let chunks = 0;
  for (const listing of [...listings].sort((a, b) => a.sled.localeCompare(b.sled))) {
    if ("error" in listing) {
      sleds.push({ sled: listing.sled, error: listing.error });
      failed.push(`${listing.sled}: ${listing.error}`);
      continue;
    }
    let sledBytes = 0;
    let sledChunks = 0;
    for (const chunk of listing.chunks) {
      if (!isChunkOf(chunk, record, others)) continue;
      sledBytes += chunk.bytes;
      sledChunks++;
    }
    sleds.push({ sled: listing.sled, bytes: sledBytes, chunks: sledChunks });
    bytes += sledBytes;
    chunks += sledChunks;
  }
  if (failed.length > 0) return { reason: `not counted on ${failed.join("; ")}`, sleds };
  return { bytes, chunks, sleds };
}

export interface VolumesOptions {
  service: Pick<Service, "bus" | "logger">;
  catalogue: Pick<
    Catalogue,
    | "volume"
    | "volumes"
    | "partitions"
    | "allPartitions"
    | "checkpoints"
    | "createVolume"
    | "nextIncarnation"
    | "deleteVolume"
    | "recordPurge"
    | "forgetPurge"
    | "partition"
    | "addPartitions"
    | "updatePartition"
    | "resizeVolume"
    | "markShrinking"
    | "snapshot"
    | "snapshotIncludingDeleting"
    | "pinSnapshot"
    | "pinVolume"
    | "volumeEntry"
    | "abandonCreate"
  >;
  heartbeats: Pick<Heartbeats, "aliveHeadNodes" | "aliveSleds" | "headNodeDisks" | "list">;
  configurer: Pick<Configurer, "configure">;
  tenures: Tenures;
  /** Witnesses each create on the sleds before its first record (store-marks.ts). */
  marks: Pick<StoreMarks, "witnessCreate">;
  /** Whether each head node enforces volume ends (a shrink waits for all that serve it). */
  features: Pick<HeadNodeFeatures, "enforcesServedBytes">;
  /** The partition size of a volume whose create request names none. */
  partitionBytesDefault: number;
  /**
   * Waits between a resize's attempts (a record changed meanwhile, a primary that did not
   * confirm, a trim that failed): a timer by default. The two-leader properties pass one
   * that returns at once, since they step leaders only at their store calls.
   */
  retryPause?: (ms: number) => Promise<void>;
}

/** A new volume incarnation id: never reused, within the alphabet and length of ids. */
/** `<incarnation>-<nonce>` (see @ballast/protocol incarnation.ts): ordered per name, unique. */
function newVolumeId(incarnation: number): string {
  return formatVolumeId(incarnation, randomBytes(volumeIdNonceBytes).toString("hex"));
}

export class Volumes {
  private readonly retryPause: (ms: number) => Promise<void>;
  /** Shrinks begun whose finish failed, by volume name: when to try again, and the pause. */
  private readonly shrinkRetries = new Map<string, { atMs: number; pauseMs: number }>();
  /** A `resumeShrinks` is running: the next waits for its turn. */
  private resuming = false;

  constructor(private readonly options: VolumesOptions) {
    this.retryPause =
      options.retryPause ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
  }

  /**
   * Creates volume `message.name`, a clone of snapshot `message.snapshot` of volume
   * `message.volume` (clones.ts has the model): a volume of the snapshot's size and the
   * parent's partition size, empty, whose record names its parent. The checks here are
   * a first answer; what keeps the parent from going meanwhile, whoever leads, is the
   * clone's pins on the parent's records before it is listed (clone-pins.ts).
   */
  async clone(tenure: Tenure, message: MessageOf<"volume.clone.v1">): Promise<VolumeState> {
    const { catalogue } = this.options;
    const parent = (await catalogue.volume(message.volume))?.value;
    if (parent === undefined) {
      throw new BallastError(ErrorCode.NotFound, `no volume named ${message.volume}`, {
        details: { volume: message.volume },
      });
    }
    const snapshot = (await catalogue.snapshot(message.volume, message.snapshot))?.value;
    if (snapshot === undefined || snapshot.volumeId !== idOfVolume(parent)) {
      throw new BallastError(
        ErrorCode.NotFound,
        `volume ${message.volume} has no snapshot named ${message.snapshot}`,
        { details: { volume: message.volume, name: message.snapshot } },
      );
    }
    // A volume record that does not decode is left out (reported): the depth is a limit
    // on reads through parents, not a safety check.
    const byName = new Map(
      (await catalogue.volumes("skip")).map((volume) => [volume.name, volume]),
    );
    if (depthOf(parent, byName) >= cloneDepthMax) {
      throw new BallastError(
        ErrorCode.InvalidArgument,
        `cannot clone ${message.volume}@${message.snapshot}: it is a clone ${cloneDepthMax} levels deep, the most a clone's parents may be`,
      );
    }
    const overlap = snapshotSizeOf(snapshot, parent);
    return this.create(
      tenure,
      {
        type: "volume.create.v1",
        name: message.name,
        sizeBytes: overlap,
        replicaCount: message.replicaCount ?? parent.replicaCount,
        partitionBytes: parent.partitionBytes,
      },
      {
        volume: parent.name,
        volumeId: idOfVolume(parent),
        snapshot: snapshot.name,
        snapshotId: snapshot.id,
        overlap,
      },
    );
  }

  async create(
    tenure: Tenure,
    message: MessageOf<"volume.create.v1">,
    parent?: VolumeParentRecord,
  ): Promise<VolumeState> {
    const { service, catalogue, heartbeats, configurer, tenures } = this.options;
    const replicaCount = message.replicaCount ?? limits.replicaCountMin;
    const partitionBytes = message.partitionBytes ?? this.options.partitionBytesDefault;
    const problems: string[] = [];
    if (replicaCount < limits.replicaCountMin || replicaCount > limits.replicaCountMax) {
      problems.push(
        `replica count must be ${limits.replicaCountMin} or ${limits.replicaCountMax}, got ${replicaCount}`,
      );
    }
    if (message.sizeBytes === 0 || message.sizeBytes % limits.sectorBytes !== 0) {
      problems.push(
        `size must be a positive multiple of ${limits.sectorBytes} bytes, got ${message.sizeBytes}`,
      );
    }
    if (message.sizeBytes > volumeBytesCreatableMax) {
      problems.push(
        `size must be at most ${volumeBytesCreatableMax} bytes (${limits.partitionsPerVolumeMax} partitions of at most ${limits.partitionBytesMax} bytes), got ${message.sizeBytes}`,
      );
    }
    if (
      partitionBytes % limits.sectorBytes !== 0 ||
      partitionBytes < limits.partitionBytesMin ||
      // A clone keeps its parent's partition size, which may predate the present bound.
      (partitionBytes > limits.partitionBytesMax && parent === undefined)
    ) {
      problems.push(
        `partition size must be a multiple of ${limits.sectorBytes} from ${limits.partitionBytesMin} to ${limits.partitionBytesMax} bytes, got ${partitionBytes}`,
      );
    }
    if (
      problems.length === 0 &&
      Math.ceil(message.sizeBytes / partitionBytes) > limits.partitionsPerVolumeMax
    ) {
      problems.push(
        `${Math.ceil(message.sizeBytes / partitionBytes)} partitions is over the limit of ${limits.partitionsPerVolumeMax}: use partitions of at least ${partitionBytesLeast(message.sizeBytes)} bytes`,
      );
    }
    if (problems.length > 0) {
      throw new BallastError(
        ErrorCode.InvalidArgument,
        `cannot create volume ${message.name}: ${problems.join("; ")}`,
      );
    }
    // Before any record of the volume: should the control store come back from an older
    // copy, the sleds prove it older than this volume (store-marks.ts).
    await this.options.marks.witnessCreate(`volume ${message.name}`);
    const alive = [...heartbeats.aliveHeadNodes()];
    // Placement's load: a partition record that does not decode only goes uncounted.
    const existing = await catalogue.allPartitions("skip");
    const load = loadOf(
      existing.map((entry) => entry.value),
      alive,
    );
    const id = newVolumeId(await catalogue.nextIncarnation(message.name));
    const partitions = placePartitions(
      message.name,
      id,
      message.sizeBytes,
      partitionBytes,
      replicaCount,
      alive,
      load,
      heartbeats.headNodeDisks(),
    );
    const volume: VolumeRecord = {
      name: message.name,
      id,
      sizeBytes: message.sizeBytes,
      replicaCount,
      partitionBytes,
      createdAtMs: Date.now(),
      ...(parent === undefined ? {} : { parent }),
    };
    // A clone pins its parents between its creating record and its partitions.
    const stored = await catalogue.createVolume(
      volume,
      partitions,
      tenure.term,
      parent === undefined ? undefined : (creating) => pinParents(catalogue, parent, creating),
    );
    service.logger.info(
      { volume: volume.name, id, partitions: stored.length, replicaCount, parent },
      parent === undefined ? "volume created" : "volume cloned",
    );
    if (tenures.held() === tenure) {
      tenure.generation++;
      tenure.volumes.set(volume.name, volume);
      for (const entry of stored) remember(tenure, entry);
      // Configured before the answer, so the volume serves I/O as soon as it is listed.
      const aliveSet = heartbeats.aliveHeadNodes();
      const sleds = heartbeats.aliveSleds();
      await Promise.all(
        stored.map((entry) =>
          configurer.configure(tenure, entry.value, aliveSet, sleds, heartbeats.headNodeDisks()),
        ),
      );
    }
    return this.stateOf(
      volume,
      stored.map((entry) => entry.value),
    );
  }

  /**
   * Changes the volume's size (resize.ts has the model): a grow trims what it reveals of
   * existing partitions, adds and configures the partitions it needs, then raises the
   * size; a shrink (only with `allowShrink`, while every node serving the volume enforces
   * ends, and while no gateway has the volume attached unless `force`: attached.ts)
   * records itself, lowers the ends, trims the tail, lowers the size, then tells the
   * gateways. A shrink begun and not finished is finished first. Runs one at a time with
   * creates and deletes.
   */
  async resize(tenure: Tenure, message: MessageOf<"volume.resize.v1">): Promise<VolumeState> {
    const { service, catalogue, heartbeats, configurer, tenures } = this.options;
    let current = await catalogue.volume(message.name);
    if (current === undefined) {
      throw new BallastError(ErrorCode.NotFound, `no volume named ${message.name}`);
    }
    if (shrinkingOf(current.value) !== undefined) {
      // Recorded, so going ahead (resize.ts, "A shrink begun"): finished before anything
      // else, whatever this request's size; a retry of that shrink ends here.
      await this.finishShrink(tenure, message.name);
      current = await catalogue.volume(message.name);
      if (current === undefined) {
        throw new BallastError(ErrorCode.NotFound, `no volume named ${message.name}`);
      }
    }
    const id = idOfVolume(current.value);
    const partitions = (await catalogue.partitions(message.name))
      .map((entry) => entry.value)
      .filter((record) => volumeIdOf(record) === id);
    const plan = planResize(current.value, partitions, message);
    if (plan.kind === "unchanged") {
      // A resize that failed halfway, or records from before served bytes: put right.
      await this.setLimits(tenure, current.value, plan.limits);
      return this.describe(message.name);
    }
    if (plan.kind === "shrink") {
      this.refuseUnenforcedEnds(message.name, plan.sizeBytes, partitions);
    }
    if (detachesFirst(plan)) {
      await refuseWhileAttached(
        service.bus,
        heartbeats,
        message.name,
        `shrink volume ${message.name} to ${plan.sizeBytes} bytes`,
        message.force,
      );
    }
    if (plan.kind === "shrink") {
      const marked = await catalogue.markShrinking(current, plan.sizeBytes, tenure.term);
      if (!marked.applied) throw changedWhileResized(message.name, marked.reason);
      current = { value: marked.record!, revision: marked.revision! };
      if (tenures.held() === tenure) tenure.volumes.set(message.name, marked.record!);
      await this.shrink(tenure, current, plan);
      return this.describe(message.name);
    }
    // Raised only once what it reveals is trimmed, and before the size, so that no
    // client is refused inside the size it is told.
    await this.setLimits(tenure, current.value, plan.lowerFirst);
    if (plan.trim !== undefined) await this.trimTail(current.value, plan.trim);
    await this.setLimits(tenure, current.value, plan.limits);
    let added: Awaited<ReturnType<typeof catalogue.addPartitions>> = [];
    if (plan.added.length > 0) {
      const alive = [...heartbeats.aliveHeadNodes()];
      const load = loadOf(
        (await catalogue.allPartitions("skip")).map((entry) => entry.value),
        alive,
      );
      const placed = placeRanges(
        message.name,
        id,
        plan.added,
        current.value.replicaCount,
        alive,
        load,
        heartbeats.headNodeDisks(),
      );
      added = await catalogue.addPartitions(current, placed, tenure.term);
    }
    const outcome = await catalogue.resizeVolume(current, plan.sizeBytes, tenure.term);
    if (!outcome.applied) throw changedWhileResized(message.name, outcome.reason);
    service.logger.info(
      {
        volume: message.name,
        id,
        from: current.value.sizeBytes,
        to: plan.sizeBytes,
        added: added.length,
      },
      "volume resized",
    );
    if (tenures.held() === tenure) {
      tenure.generation++;
      tenure.volumes.set(message.name, outcome.record!);
      for (const entry of added) remember(tenure, entry);
      // Configured before the answer, as at create, so the new bytes serve I/O at once.
      const aliveSet = heartbeats.aliveHeadNodes();
      const sleds = heartbeats.aliveSleds();
      await Promise.all(
        added.map((entry) =>
          configurer.configure(tenure, entry.value, aliveSet, sleds, heartbeats.headNodeDisks()),
        ),
      );
    }
    return this.describe(message.name);
  }

  /**
   * Finishes the shrink begun on volume `name` and not finished (resize.ts, "A shrink
   * begun"), if one is: the ends not yet lowered, the whole tail trimmed again, the size
   * written. The checks of the request that began it (attached gateways, head nodes
   * enforcing ends) are not made again: its ends are lowered, or being lowered, already.
   */
  async finishShrink(tenure: Tenure, name: string): Promise<void> {
    const { catalogue, service } = this.options;
    const current = await catalogue.volume(name);
    if (current === undefined) return;
    const id = idOfVolume(current.value);
    const partitions = (await catalogue.partitions(name))
      .map((entry) => entry.value)
      .filter((record) => volumeIdOf(record) === id);
    const plan = finishShrinkPlan(current.value, partitions);
    if (plan === undefined) return;
    service.logger.info(
      { volume: name, id, from: current.value.sizeBytes, to: plan.sizeBytes },
      "finishing a shrink begun earlier",
    );
    await this.shrink(tenure, current, plan);
  }

  /**
   * Finishes the shrinks begun and not finished of the volumes this tenure knows (a
   * resize that failed after recording one, or a leader that died in it), each through
   * `run` (the catalogue queue, so one at a time with every other change). One that
   * fails is tried again after a pause that doubles from `shrinkResumePauseMs` up to
   * `shrinkResumePauseMsMax`, so that a partition unavailable for long does not hold the
   * queue (its attempts last up to the resize deadlines) most of the time. Throws, once
   * every volume due was tried, what failed: the shell logs it at a bounded rate.
   */
  async resumeShrinks(
    tenure: Tenure,
    run: (work: () => Promise<void>) => Promise<void>,
  ): Promise<void> {
    if (!tenure.ready || this.resuming) return;
    this.resuming = true;
    try {
      const failed: string[] = [];
      const shrinking = [...tenure.volumes.values()].filter(
        (volume) => shrinkingOf(volume) !== undefined,
      );
      const names = new Set(shrinking.map((volume) => volume.name));
      for (const name of [...this.shrinkRetries.keys()]) {
        if (!names.has(name)) this.shrinkRetries.delete(name);
      }
      for (const volume of shrinking) {
        const retry = this.shrinkRetries.get(volume.name);
        if (retry !== undefined && now() < retry.atMs) continue;
        try {
          await run(() => this.finishShrink(tenure, volume.name));
          this.shrinkRetries.delete(volume.name);
        } catch (error) {
          const pauseMs = Math.min(
            shrinkResumePauseMsMax,
            retry === undefined ? shrinkResumePauseMs : retry.pauseMs * 2,
          );
          this.shrinkRetries.set(volume.name, { atMs: now() + pauseMs, pauseMs });
          failed.push(`${volume.name} (next try in ${pauseMs}ms): ${(error as Error).message}`);
        }
      }
      if (failed.length > 0) {
        throw new Error(`could not finish a shrink begun earlier: ${failed.join("; ")}`);
      }
    } finally {
      this.resuming = false;
    }
  }

  /**
   * A shrink recorded in `current` (`shrinkingTo`, or one this request is about to
   * finish): ends lowered and confirmed, then the tail trimmed, so that no write past the
   * new end is acknowledged after the trim, from a client that has not heard of the
   * shrink included (resize.ts); then the size written (which removes the mark), and the
   * gateways told.
   */
  private async shrink(
    tenure: Tenure,
    current: Versioned<VolumeRecord>,
    plan: Extract<ResizePlan, { kind: "shrink" }>,
  ): Promise<void> {
    const { service, catalogue, heartbeats, tenures } = this.options;
    const name = current.value.name;
    await this.setLimits(tenure, current.value, plan.limits);
    await this.trimTail(current.value, plan.trim);
    const outcome = await catalogue.resizeVolume(current, plan.sizeBytes, tenure.term);
    if (!outcome.applied) throw changedWhileResized(name, outcome.reason);
    service.logger.info(
      {
        volume: name,
        id: idOfVolume(current.value),
        from: current.value.sizeBytes,
        to: plan.sizeBytes,
      },
      "volume resized",
    );
    if (tenures.held() === tenure) {
      tenure.generation++;
      tenure.volumes.set(name, outcome.record!);
    }
    // The record says the new size: gateways with the volume open learn it now, so that
    // a connection opened at the old size has its writes past the new end refused.
    await tellShrunk(service.bus, heartbeats, service.logger, name);
  }

  /**
   * Refuses a shrink of `name` while a node serving it would not enforce the new end
   * (resize.ts, "Rolling upgrades"), naming each such node and why.
   */
  private refuseUnenforcedEnds(
    name: string,
    sizeBytes: number,
    partitions: readonly PartitionRecord[],
  ): void {
    const { features } = this.options;
    const nodes = unenforcedEnds(partitions, (node) => features.enforcesServedBytes(node));
    if (nodes.length === 0) return;
    throw new BallastError(
      ErrorCode.InvalidArgument,
      `cannot shrink volume ${name} to ${sizeBytes} bytes: the new end would not be enforced on ${nodes.map(({ node, why }) => `${node} (${why})`).join(", ")}; upgrade those head nodes (or wait for their reports) and retry`,
      { details: { volume: name, nodes: nodes.map(({ node }) => node) } },
    );
  }

  /**
   * Tries `attempt` until it succeeds (answers undefined) or `deadlineMs` passes,
   * pausing `resizeTrimRetryPauseMs` between tries. An attempt answers what failed, to be
   * tried again, and throws what must not be (`retriedOrThrown`). Past the deadline,
   * throws what `givenUp` makes of the last failure's message.
   */
  private async retriedUntil(
    deadlineMs: number,
    attempt: () => Promise<{ failed: unknown } | undefined>,
    givenUp: (why: string) => BallastError,
  ): Promise<void> {
    const endsAtMs = now() + deadlineMs;
    let lastError: unknown;
    while (now() < endsAtMs) {
      const outcome = await attempt();
      if (outcome === undefined) return;
      lastError = outcome.failed;
      await this.retryPause(resizeTrimRetryPauseMs);
    }
    throw givenUp((lastError as Error | undefined)?.message ?? "no answer");
  }

  /**
   * Records each partition's new served bytes (resize.ts, "The end on the head nodes") in
   * a new epoch of its record, with the same members, and has the partition's primary
   * confirm an epoch that carries them: a flush sent in an epoch succeeds only on the
   * primary configured in it, and every later record carries the value (decisions spread
   * the record they replace). A concurrent decision on the record, or a failover, is
   * retried on the newest record until `resizeLimitDeadlineMs`; past that the resize
   * fails and changes nothing more (the next resize of the volume puts the rest right).
   */
  private async setLimits(
    tenure: Tenure,
    volume: VolumeRecord,
    changes: readonly LimitChange[],
  ): Promise<void> {
    const { catalogue, service, heartbeats, configurer, tenures } = this.options;
    const id = idOfVolume(volume);
    await mapLimited(changes, resizeLimitsInflightMax, (change) =>
      this.retriedUntil(
        resizeLimitDeadlineMs,
        async () => {
          const entry = await catalogue.partition(volume.name, change.partition);
          if (entry === undefined || volumeIdOf(entry.value) !== id) {
            throw new BallastError(
              ErrorCode.NotFound,
              `volume ${volume.name} was deleted while being resized`,
            );
          }
          let record = entry.value;
          if ((record.servedBytes ?? record.partitionBytes) !== change.servedBytes) {
            const next = { ...record, epoch: record.epoch + 1, servedBytes: change.servedBytes };
            const outcome = await catalogue.updatePartition(next, entry, tenure.term);
            if (!outcome.applied) {
              if (outcome.reason === "deposed") {
                throw new BallastError(
                  ErrorCode.Unavailable,
                  `cannot resize volume ${volume.name}: a later leader wrote partition ${change.partition}; retry`,
                );
              }
              // A decision moved the record on meanwhile: again, on the newest.
              return {
                failed: new Error(`partition ${change.partition} changed while it was written`),
              };
            }
            const stored = { value: { ...next, term: tenure.term }, revision: outcome.revision };
            record = stored.value;
            if (tenures.held() === tenure) {
              remember(tenure, stored);
              // Awaited (its sends settle, answered or not): the flush below then mostly
              // finds the epoch in force at its first attempt.
              await configurer.configure(
                tenure,
                record,
                heartbeats.aliveHeadNodes(),
                heartbeats.aliveSleds(),
                heartbeats.headNodeDisks(),
              );
            }
            service.logger.info(
              {
                volume: volume.name,
                partition: change.partition,
                epoch: record.epoch,
                servedBytes: change.servedBytes,
              },
              "partition's served bytes recorded for a resize",
            );
          }
          return this.requested(subjects.volume.build(volume.name, change.partition), {
            type: "volume.flush.v1",
            volume: volume.name,
            partition: change.partition,
            epoch: record.epoch,
            volumeId: id,
          });
        },
        (why) =>
          new BallastError(
            ErrorCode.Unavailable,
            `cannot resize volume ${volume.name}: partition ${change.partition}'s primary did not confirm its new end (${change.servedBytes} of its bytes) within ${resizeLimitDeadlineMs}ms (${why}); retry`,
          ),
      ),
    );
  }

  /**
   * Trims `range` of the volume through each partition's primary, so that no byte of it
   * can be read again. A partition that is failing over is retried on its newest record
   * until `resizeTrimDeadlineMs`; past that the resize fails and changes nothing more.
   */
  private async trimTail(volume: VolumeRecord, range: ByteRange): Promise<void> {
    const { catalogue } = this.options;
    const id = idOfVolume(volume);
    const partitions = (await catalogue.partitions(volume.name))
      .map((entry) => entry.value)
      .filter((record) => volumeIdOf(record) === id);
    await Promise.all(
      piecesOf(partitions, range).map((piece) =>
        this.retriedUntil(
          resizeTrimDeadlineMs,
          async () => {
            const record = (await catalogue.partition(volume.name, piece.partition))?.value;
            if (record === undefined || volumeIdOf(record) !== id) {
              throw new BallastError(
                ErrorCode.NotFound,
                `volume ${volume.name} was deleted while being resized`,
              );
            }
            return this.requested(subjects.volume.build(volume.name, piece.partition), {
              type: "volume.trim.v1",
              volume: volume.name,
              partition: piece.partition,
              epoch: record.epoch,
              volumeId: id,
              ranges: [{ offset: piece.offset, length: piece.length }],
              // Past the served bytes, which a shrink has lowered by now.
              pastEnd: true,
            });
          },
          (why) =>
            new BallastError(
              ErrorCode.Unavailable,
              `cannot resize volume ${volume.name}: trimming [${piece.offset}, ${piece.offset + piece.length}) of partition ${piece.partition} did not succeed within ${resizeTrimDeadlineMs}ms (${why}); retry`,
            ),
        ),
      ),
    );
  }

  /**
   * One request of a resize to a partition's primary: undefined once answered, what
   * failed if it may be tried again (a failover, no answer), thrown if not.
   */
  private async requested(
    subject: string,
    message: MessageOf<"volume.flush.v1"> | MessageOf<"volume.trim.v1">,
  ): Promise<{ failed: unknown } | undefined> {
    try {
      await this.options.service.bus.request(subject, message, {
        deadlineMs: resizeTrimAttemptMs,
      });
      return undefined;
    } catch (error) {
      if (error instanceof BallastError && !error.retryable) throw error;
      return { failed: error };
    }
  }

  /**
   * The volume's state, one page of its partitions from `partitionsFrom` (0 by default),
   * or all of them with `whole` (status, which bounds what it sends itself); with
   * `stored`, what it stores on sleds too (a listing of each sled).
   */
  async describe(
    name: string,
    options: { stored?: boolean; partitionsFrom?: number; whole?: boolean } = {},
  ): Promise<VolumeState> {
    const { catalogue } = this.options;
    const volume = await catalogue.volume(name);
    if (volume === undefined) throw new BallastError(ErrorCode.NotFound, `no volume named ${name}`);
    const id = idOfVolume(volume.value);
    const [partitions, checkpoints, stored] = await Promise.all([
      catalogue.partitions(name),
      catalogue.checkpoints(name),
      options.stored === true ? this.storedOn(volume.value) : undefined,
    ]);
    const state = this.stateOf(
      volume.value,
      partitions.map((entry) => entry.value).filter((record) => volumeIdOf(record) === id),
      checkpoints,
      options.whole === true ? undefined : (options.partitionsFrom ?? 0),
    );
    return stored === undefined ? state : { ...state, stored };
  }

  /**
   * Every volume, without its partitions: one answer of the most volumes it names fits a
   * message whatever their sizes (describe gives one volume's partitions).
   */
  async list(): Promise<ResultOf<"volume.list.v1">> {
    // Records that do not decode are left out (reported): every other volume is listed.
    const volumes = await this.options.catalogue.volumes("skip");
    return {
      volumes: await Promise.all(
        volumes.map(async (value) => {
          const id = idOfVolume(value);
          const count = (await this.options.catalogue.partitions(value.name, "skip")).filter(
            (entry) => volumeIdOf(entry.value) === id,
          ).length;
          const { term: _term, shrinkingTo: _shrinking, shrinkingFrom: _from, ...shown } = value;
          return { ...shown, id, partitionCount: count, ...shrinkingField(value) };
        }),
      ),
    };
  }

  /** Every volume's state; with `stored`, what each stores on sleds (status asks). */
  async states(options: { stored?: boolean } = {}): Promise<VolumeState[]> {
    // A volume whose records do not all decode is left out (reported), so that status
    // still shows every other one; describing it names the record.
    const volumes = await this.options.catalogue.volumes("skip");
    const stored = options.stored === true;
    const states = await Promise.all(
      volumes.map((volume) =>
        this.describe(volume.name, { stored, whole: true }).catch((error: unknown) => {
          if (isUnreadableRecord(error)) return undefined;
          throw error;
        }),
      ),
    );
    return states.filter((state) => state !== undefined);
  }

  /** Lists the volume's chunks on every sled, in parallel, and sums its incarnation's. */
  private async storedOn(volume: VolumeRecord): Promise<VolumeStored> {
    const { heartbeats } = this.options;
    const sleds = heartbeats.list().filter((member) => member.kind === "sled");
    const listings = await Promise.all(
      sleds.map(
        async (member): Promise<SledListing> =>
          member.alive
            ? this.listChunks(member.id, volume.name)
            : { sled: member.id, error: "not alive" },
      ),
    );
    // Only chunks owned by this name count, and this incarnation is the name's only live
    // one: no other live id can make one of them ambiguous.
    return storedOf({ name: volume.name, id: idOfVolume(volume) }, listings, new Set());
  }

  private async listChunks(sled: string, volume: string): Promise<SledListing> {
    const { bus } = this.options.service;
    const chunks: ChunkEntry[] = [];
    const endsAtMs = now() + storedListDeadlineMs;
    let startAfter: string | undefined;
    try {
      for (let page = 0; page < storedListPagesMax; page++) {
        const deadlineMs = Math.round(endsAtMs - now());
        if (deadlineMs <= 0) return { sled, error: `listing took over ${storedListDeadlineMs}ms` };
        const listed = await bus.request(
          subjects.node.build("sled", sled),
          { type: "sled.chunk.list.v1", volume, startAfter, limit: sledLimits.chunkListEntriesMax },
          { deadlineMs },
        );
        chunks.push(...listed.chunks);
        if (!listed.truncated || listed.chunks.length === 0) return { sled, chunks };
        startAfter = listed.chunks.at(-1)!.chunkId;
      }
    } catch (error) {
      return { sled, error: (error as Error).message };
    }
    return {
      sled,
      error: `more than ${storedListPagesMax * sledLimits.chunkListEntriesMax} chunks of ${volume}`,
    };
  }

  /**
   * The head nodes that may hold replicas of incarnation `volumeId` of volume `name`:
   * every live one, every member of its records, and every node this leader has
   * configured or heard report a replica of it (a deposed primary among them). A node
   * outside these holds none this coordinator could know of.
   */
  private async holdersOf(tenure: Tenure, name: string, volumeId: string): Promise<string[]> {
    const { catalogue, heartbeats, tenures } = this.options;
    const nodes = new Set(heartbeats.aliveHeadNodes());
    const records = (await catalogue.partitions(name))
      .map((entry) => entry.value)
      .filter((record) => volumeIdOf(record) === volumeId);
    for (const record of records) for (const node of membersOf(record)) nodes.add(node);
    if (tenures.held() === tenure) {
      for (const record of records) {
        for (const node of tenure.configured.get(partitionKey(record))?.keys() ?? []) {
          nodes.add(node);
        }
      }
      for (const node of tenure.leases.holdersOf(new Set([volumeId])).get(volumeId) ?? []) {
        nodes.add(node);
      }
    }
    return [...nodes].sort();
  }

  /**
   * Removes the volume's records, then tells every live head node to drop the
   * incarnation's replicas; the purge record keeps the drop owed to every head node
   * that may hold them, and the purger tells those that missed it. `id`: only that
   * incarnation (a retry's, whose earlier attempt may have deleted it); another of the
   * name is refused NotFound and kept.
   */
  async delete(
    tenure: Tenure,
    name: string,
    id?: string,
    force?: boolean,
  ): Promise<ResultOf<"volume.delete.v1">> {
    const { service, catalogue, heartbeats, tenures } = this.options;
    const current = await catalogue.volume(name);
    if (current === undefined)
      throw new BallastError(ErrorCode.NotFound, `no volume named ${name}`);
    if (id !== undefined && idOfVolume(current.value) !== id) {
      // Deleted (perhaps by this request's earlier attempt) and created again since the
      // client read it: not the volume the client means. The delete below is by the
      // revision read, so a re-create after this read fails it too.
      throw new BallastError(
        ErrorCode.NotFound,
        `no volume named ${name} with id ${id}: ${name} is now incarnation ${idOfVolume(current.value)}, created since; it is kept`,
        { details: { name, id, current: idOfVolume(current.value) } },
      );
    }
    // A clone reads its parent's snapshot, which goes with the volume: not while one exists.
    // Clones made before pins are found by their records; the others by their pins on
    // this record, which the compare-and-set below deletes only at the revision read
    // (clone-pins.ts: a clone pinned since fails it).
    refuseVolumeDelete(name, clonesOf(await catalogue.volumes(), idOfVolume(current.value)));
    refuseWhilePinned(
      `volume ${name}`,
      await livePins(catalogue, current.value.clonePins ?? [], Date.now()),
    );
    // An attached client would see its volume vanish under it (its flushes even succeed:
    // they send nothing); like a disk in use, it is detached first, or the delete forced.
    await refuseWhileAttached(service.bus, heartbeats, name, `delete volume ${name}`, force);
    // The purge record goes first, so that a leader that dies right after the delete
    // leaves its successor a record of what to purge; the purger never touches an
    // incarnation that is still live, so a delete that then fails deletes nothing.
    const volumeId = idOfVolume(current.value);
    await catalogue.recordPurge({
      volume: name,
      volumeId,
      deletedAtMs: Date.now(),
      headNodes: await this.holdersOf(tenure, name, volumeId),
    });
    const deleted = await catalogue.deleteVolume(name, current);
    if (deleted === undefined || idOfVolume(deleted) !== volumeId) {
      // Another writer (an ex-leader) got there first. The record read above is purged
      // only if it is gone: a record still live drops its purge record again.
      const still = await catalogue.volume(name);
      if (still !== undefined && idOfVolume(still.value) === volumeId) {
        await catalogue.forgetPurge(volumeId);
        throw new BallastError(
          ErrorCode.Unavailable,
          `volume ${name} changed while it was being deleted; retry`,
        );
      }
      throw new BallastError(ErrorCode.NotFound, `no volume named ${name}`);
    }
    service.logger.info({ volume: name, id: volumeId }, "volume deleted from the catalogue");
    if (deleted.parent !== undefined) {
      // A clone: its pins on its parents hold nothing now; they go, so that neither
      // record carries them (clone-pins.ts; any left behind are read as gone).
      const unpinned = await unpinDeleted(catalogue, {
        name,
        volumeId,
        parent: deleted.parent,
      }).catch((error: Error) => {
        service.logger.warn(
          { volume: name, id: volumeId, error: error.message },
          "could not remove a deleted clone's pins from its parents; they are read as gone",
        );
        return true;
      });
      if (!unpinned) {
        service.logger.info(
          { volume: name, id: volumeId },
          "a deleted clone's parent kept changing: its pin stays, read as gone",
        );
      }
    }
    if (tenures.held() === tenure) {
      tenure.generation++;
      if (
        tenure.volumes.get(name) !== undefined &&
        idOfVolume(tenure.volumes.get(name)!) === volumeId
      ) {
        tenure.volumes.delete(name);
      }
      for (const entry of [...tenure.records.values()]) {
        if (entry.value.volume === name && volumeIdOf(entry.value) === volumeId) {
          forget(tenure, entry.value);
        }
      }
    }
    const nodes = [...heartbeats.aliveHeadNodes()];
    await Promise.all(
      nodes.map(async (node) => {
        try {
          const { dropped } = await service.bus.request(
            subjects.node.build("headnode", node),
            { type: "headnode.drop.v1", volume: name, volumeId },
            { deadlineMs: dropDeadlineMs },
          );
          service.logger.info({ node, volume: name, id: volumeId, dropped }, "replicas dropped");
        } catch (error) {
          service.logger.warn(
            { node, volume: name, id: volumeId, error: (error as Error).message },
            "could not tell a head node to drop a deleted volume's replicas; the purger tells it again",
          );
        }
      }),
    );
    return { name, deleted: true };
  }

  /**
   * What describe shows: the records, with rebuild progress and checkpoint ages; from
   * partition `from` on, a page of at most `describePartitionsMax` of them (and where
   * the next page starts), or all of them when `from` is undefined.
   */
  private stateOf(
    volume: VolumeRecord,
    partitions: PartitionRecord[],
    checkpoints: Map<number, Map<string, CheckpointPointer>> = new Map(),
    from: number | undefined = 0,
  ): VolumeState {
    const nowMs = Date.now();
    const tenure = this.options.tenures.current();
    const leases = tenure?.leases;
    // The record's term fences its writers; it is not part of the volume's state. A
    // shrink's mark is shown only while it means one (resize.ts `shrinkingOf`).
    const { term: _term, shrinkingTo: _shrinking, shrinkingFrom: _from, ...shown } = volume;
    // Records come in partition order; a page is cut by index, so a gap cannot shift it.
    const after = from === undefined ? partitions : partitions.filter((r) => r.partition >= from);
    const page = from === undefined ? after : after.slice(0, limits.describePartitionsMax);
    const next = page.length < after.length ? { partitionsNext: page.at(-1)!.partition + 1 } : {};
    return {
      ...shown,
      id: idOfVolume(volume),
      partitionCount: partitions.length,
      ...shrinkingField(volume),
      ...next,
      partitions: page.map((record) => {
        const learners = record.learners ?? [];
        const report = leases?.lastReportOf(record);
        return {
          partition: record.partition,
          partitionStart: record.partitionStart,
          partitionBytes: record.partitionBytes,
          epoch: record.epoch,
          primary: record.primary,
          secondaries: record.secondaries,
          // Commit waits for every voting member, so each holds every acknowledged
          // write; joiners are not counted until they are secondaries.
          inSync: [record.primary, ...record.secondaries],
          learners,
          joining: record.joining ?? [],
          rebuilds: (report?.epoch === record.epoch ? report.followers : [])
            .filter((follower) => learners.includes(follower.node))
            .map((follower) => ({
              node: follower.node,
              matchOpNum: follower.matchOpNum,
              targetOpNum: report!.commitOpNum,
            })),
          checkpoints: [
            ...(checkpoints.get(record.partition) ?? new Map<string, CheckpointPointer>()),
          ].map(([node, pointer]) => ({
            node,
            opNum: pointer.opNum,
            ageMs: Math.max(0, nowMs - pointer.createdAtMs),
          })),
          ...failedField(record, report, leases, tenure?.failedJournals.get(partitionKey(record))),
          ...(tenure?.unavailable.has(partitionKey(record)) === true
            ? { unavailable: true as const }
            : {}),
          // Its end inside the volume, when not the partition's own (resize.ts).
          ...(record.servedBytes !== undefined && record.servedBytes < record.partitionBytes
            ? { servedBytes: record.servedBytes }
            : {}),
        };
      }),
    };
  }
}

/** `shrinkingTo` as describe and list show it: only while a shrink is begun and not finished. */
function shrinkingField(volume: VolumeRecord): { shrinkingTo?: number } {
  const target = shrinkingOf(volume);
  return target === undefined ? {} : { shrinkingTo: target };
}

/**
 * The voting members of `record` whose replica failed in the record's epoch: the primary by its
 * own report, the others as the lease book holds their node's failures, and any member
 * that refused the epoch's configure because its journal failed in this boot (a failed
 * replica closed to be reopened, whose node then reports nothing of it). Shown so that a
 * partition whose members are all alive as services but failed as replicas is not taken
 * for a healthy one.
 */
export function failedField(
  record: PartitionRecord,
  report: Report | undefined,
  leases: Pick<LeaseBook, "failedMembers"> | undefined,
  failedJournals: ReadonlyMap<string, number> | undefined,
): { failed?: string[] } {
  // Voters only: a failed learner or joiner is dropped at once, and counts for nothing.
  const members = [record.primary, ...record.secondaries];
  const failed: string[] = [];
  const add = (node: string) => {
    if (members.includes(node) && !failed.includes(node)) failed.push(node);
  };
  if (report?.failed === true && report.epoch === record.epoch) add(record.primary);
  for (const node of leases?.failedMembers(record) ?? []) add(node);
  for (const [node, epoch] of failedJournals ?? []) if (epoch === record.epoch) add(node);
  return failed.length === 0 ? {} : { failed };
}
