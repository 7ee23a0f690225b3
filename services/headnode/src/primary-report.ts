// What a head node's report (`headnode.report.v1`) says of one hosted replica: pure, a
// function of the core's state, the replica's address, whether its journal failed and
// the node's view of sleds out of service; no clock, no I/O. The head node's shell
// (partition-host.ts, headnode.ts) and the failover simulator (simulation/failover.ts)
// both build their reports here, so that the model cannot drift from the shell.
//
// The model: a replica is in at most one part of a report.
// - A primary that has not failed is an entry of `primaries`: its epoch, session, commit
//   point, whether its inherited tail is committed, its followers (stalls in ms, so that
//   the coordinator, which knows no ticks, can compare them with its limits), its space
//   on sleds, its chunks short of copies and the sled disks the coordinator asked audited
//   whose audit has covered its table.
// - A replica configured as primary whose journal failed is still an entry of
//   `primaries`, marked `failed`, with no followers: the partition must fail over
//   although its node is alive (it serves nothing and holds no lease).
// - Any other failed replica configured in some epoch is an entry of `failures`, at that
//   epoch, so that the coordinator drops it from the record at once.
// - A voter a configure could not open (its journal or checkpoint refused, an open that
//   failed: `unopenedReporter`) is reported as failed in the configure's epoch, as a
//   primary or among `failures` as the configure named it. Nothing of it is hosted, so
//   it serves nothing and holds no sound copy: before, it was in neither part, and the
//   coordinator could not tell it from a primary still restarting.
// - Anything else (a healthy secondary or learner, a replica never configured) is in
//   neither.
// The answer's lease renews, of each entry it grants, the very replica that reported it,
// and only while that one is still hosted there: a replica reopened after a failure,
// rebuilt as a learner or of a newer incarnation did not report it (`renewalsOf`).
//
// Failure model: none of its own (report-state.ts handles lost and overtaken answers).
// The state it reads is the core's at the time of the report; `followers` needs no held ticks caught up first (a follower short of an op
// keeps the core from being quiet, so no tick is held while a stall is counted).

import type { FollowerProgress, Replica } from "./replica/replica.ts";
import { chunksShortOfCopies, type DamagedCopies } from "./replicator.ts";
import { addressKey, type FailedReplica, type PrimaryReport } from "./report-state.ts";

/** Where a replica is, as reports name it (the volume's name and incarnation). */
export interface ReportAddress {
  volume: string;
  /** The volume's incarnation (the volume's name in static assignments). */
  volumeId: string;
  partition: number;
}

/** The part of the core a report reads. */
export type ReportedCore = Pick<
  Replica,
  | "identity"
  | "configuration"
  | "roleName"
  | "commitOpNum"
  | "tailCommitted"
  | "followers"
  | "ownStalledTicks"
  | "flushStalledTicks"
  | "spaceUsage"
  | "metadata"
>;

/** How the node sees time and sleds when it reports. */
export interface ReportContext {
  /** The length of one of the core's ticks: stalls go on the wire in ms. */
  tickMs: number;
  /** Sleds the coordinator declared out: copies there count as lost. */
  sledsOut: ReadonlySet<string>;
  /** Copies their sleds say a scrub found damaged: they count as none (replicator.ts). */
  damagedCopies?: DamagedCopies;
  /**
   * The new data directories of sleds the coordinator asked audited whose audit has
   * covered this replica's table (replicator.ts `auditedDisks`), sorted.
   */
  auditedDisks?: readonly string[];
}

/** A follower as status and reports carry it: stalls in ms (ticks × tickMs). */
export function followerOnTheWire(follower: FollowerProgress, tickMs: number) {
  // Built field by field, not spread: every report builds one per follower of every
  // primary (issue 14's idle cost), and the absent fields stay absent on the wire.
  const wire: {
    node: string;
    matchOpNum: number;
    learner: boolean;
    stalledMs?: number;
    needsRebuild?: true;
    unheard?: true;
  } = { node: follower.node, matchOpNum: follower.matchOpNum, learner: follower.learner };
  if (follower.stalledTicks !== undefined) wire.stalledMs = follower.stalledTicks * tickMs;
  if (follower.needsRebuild === true) wire.needsRebuild = true;
  if (follower.unheard === true) wire.unheard = true;
  return wire;
}

/**
 * The replica's entry of `primaries`: a primary's, or a failed one's that is configured
 * as primary; undefined for any other replica (see the module header).
 */
export function primaryReportOf(
  core: ReportedCore,
  address: ReportAddress,
  failed: boolean,
  context: ReportContext,
): PrimaryReport | undefined {
  const configuration = core.configuration;
  if (configuration === undefined) return undefined;
  // A failed replica plays no role: it is reported as primary if configured so. (A
  // healthy primary always has a configuration: configure sets it before the role.)
  const primary = failed
    ? configuration.primary === core.identity.nodeId
    : core.roleName === "primary";
  if (!primary) return undefined;
  const { volume, volumeId, partition } = address;
  // Built field by field, not from spreads: a node builds this for every primary it
  // holds every report (issue 14's idle cost); optional fields stay absent when unset.
  const entry: PrimaryReport = {
    volume,
    volumeId,
    partition,
    epoch: configuration.epoch,
    session: core.identity.session,
    commitOpNum: core.commitOpNum,
    tailCommitted: false,
    followers: [],
  };
  if (failed) {
    entry.failed = true;
    return entry;
  }
  entry.tailCommitted = core.tailCommitted;
  for (const follower of core.followers()) {
    entry.followers.push(followerOnTheWire(follower, context.tickMs));
  }
  const usage = core.spaceUsage();
  entry.chunkBytes = usage.chunkBytes;
  entry.liveBytes = usage.liveBytes;
  if (usage.snapshotBytes !== undefined) entry.snapshotBytes = usage.snapshotBytes;
  entry.chunksShortOfCopies = chunksShortOfCopies(
    core.metadata.chunks,
    context.sledsOut,
    context.damagedCopies,
  );
  if (context.auditedDisks !== undefined && context.auditedDisks.length > 0) {
    entry.auditedDisks = [...context.auditedDisks];
  }
  const stalledTicks = core.ownStalledTicks();
  if (stalledTicks !== 0) entry.stalledMs = stalledTicks * context.tickMs;
  const flushStalledTicks = core.flushStalledTicks();
  if (flushStalledTicks !== 0) entry.flushStalledMs = flushStalledTicks * context.tickMs;
  return entry;
}

/**
 * The replica's entry of `failures`: a failed replica not configured as primary (that
 * one is an entry of `primaries`), at the epoch it was configured in; undefined if it
 * has not failed or was never configured.
 */
export function failedReplicaOf(
  core: Pick<ReportedCore, "identity" | "configuration">,
  address: ReportAddress,
  failed: boolean,
): FailedReplica | undefined {
  const configuration = core.configuration;
  if (!failed || configuration === undefined) return undefined;
  if (configuration.primary === core.identity.nodeId) return undefined;
  const { volume, volumeId, partition } = address;
  return { volume, volumeId, partition, epoch: configuration.epoch };
}

/** A hosted replica as its node's report reads it (PartitionHost, the simulator's adapter). */
export interface Reporter {
  report(): PrimaryReport | undefined;
  failureReport(): FailedReplica | undefined;
}

/** A voter a configure could not open: nothing of it is hosted. */
export interface UnopenedReplica {
  address: ReportAddress;
  /** The epoch of the newest configure whose open failed. */
  epoch: number;
  /** Whether that configure named this node the primary. */
  primary: boolean;
  /** The node's session (no core holds one of its own). */
  session: number;
}

/**
 * What a report says of a voter that could not be opened: failed in the configure's
 * epoch, as the primary entry of a failed primary (no followers, nothing committed
 * here) or as a failed replica (see the module header).
 */
export function unopenedReporter(unopened: UnopenedReplica): Reporter {
  const { volume, volumeId, partition } = unopened.address;
  const { epoch } = unopened;
  return {
    report: () =>
      unopened.primary
        ? {
            volume,
            volumeId,
            partition,
            epoch,
            session: unopened.session,
            commitOpNum: 0,
            tailCommitted: false,
            followers: [],
            failed: true,
          }
        : undefined,
    failureReport: () =>
      unopened.primary ? undefined : { volume, volumeId, partition, epoch, unopened: true },
  };
}

/**
 * What a node's report says of its replicas: the two parts report-state.ts sends, by
 * address, and which replica each primary entry is of (the only ones the answer renews).
 * `unopened`: voters a configure could not open (`unopenedReporter`), reported failed
 * where no replica is hosted; they renew nothing, so they are not in `reported`.
 */
export function nodeEntriesOf<R extends Reporter>(
  replicas: Iterable<R>,
  unopened: Iterable<Reporter> = [],
): {
  primaries: Map<string, PrimaryReport>;
  failures: Map<string, FailedReplica>;
  reported: Map<string, R>;
} {
  const primaries = new Map<string, PrimaryReport>();
  const failures = new Map<string, FailedReplica>();
  const reported = new Map<string, R>();
  for (const replica of replicas) {
    const entry = replica.report();
    if (entry !== undefined) {
      const key = addressKey(entry.volume, entry.partition);
      primaries.set(key, entry);
      reported.set(key, replica);
      continue;
    }
    const failure = replica.failureReport();
    if (failure !== undefined) failures.set(addressKey(failure.volume, failure.partition), failure);
  }
  for (const replica of unopened) {
    const entry = replica.report();
    const failure = entry === undefined ? replica.failureReport() : undefined;
    const key =
      entry !== undefined
        ? addressKey(entry.volume, entry.partition)
        : failure !== undefined
          ? addressKey(failure.volume, failure.partition)
          : undefined;
    // A replica hosted there says what it is: it was opened since.
    if (key === undefined || primaries.has(key) || failures.has(key)) continue;
    if (entry !== undefined) primaries.set(key, entry);
    if (failure !== undefined) failures.set(key, failure);
  }
  return { primaries, failures, reported };
}

/**
 * The leases an answer renews: for each entry it grants (report-state.ts `onAnswer`),
 * the replica that reported it, if that is still the one hosted there (not reopened,
 * rebuilt or of a newer incarnation since: the grant was for what was reported), at the
 * epoch reported (the core ignores a renewal of another epoch).
 */
export function renewalsOf<R>(
  granted: Iterable<{ volume: string; partition: number; epoch: number }>,
  reported: ReadonlyMap<string, R>,
  hostedNow: (volume: string, partition: number) => R | undefined,
): { replica: R; epoch: number }[] {
  const renewals: { replica: R; epoch: number }[] = [];
  for (const { volume, partition, epoch } of granted) {
    const replica = reported.get(addressKey(volume, partition));
    if (replica === undefined || hostedNow(volume, partition) !== replica) continue;
    renewals.push({ replica, epoch });
  }
  return renewals;
}
