// The executor of decisions.ts: every reconcileIntervalMs the leader takes each
// partition on its own, with a fresh reading of the monotonic clock, asks
// decidePartition what to do, and does it. Nothing in that loop awaits: an `update` is
// applied by compare-and-set on the record's revision in the background, with at most
// one in flight per partition, and configuration is pushed by configurer.ts, also in
// the background. So a slow or frozen head node delays no decision: a node frozen by
// SIGSTOP and declared dead is replaced exactly as fast as a killed one.
//
// A decision to replace a primary marks the partition `replacing` in the same turn, so
// no read-lease grant (leases.ts) slips in between the decision and its compare-and-set.
//
// Failure model: a compare-and-set refused for a stale revision is decided again on a
// fresh read; one whose outcome is unclear (the store did not answer) leaves the
// partition `unsure` — no lease, no decision — until a read says what was written. A
// record carrying a later term means a later leader exists: this tenure stops deciding.
// Every catalogueRefreshMs the whole catalogue is read back as a safety net, unless a
// watch on it (catalogue-changes.ts) saw no change since the last read, and at least
// every catalogueRereadMsMax.
//
// Idle cost (issue 14): deciding is a pure function of the partition's inputs, so a
// partition whose last decision was `keep` — all members live and configured, no
// learners or joiners, no drops to avoid — is not decided again until one of those
// inputs changes: its record (revision), its volume, the live head nodes and sleds, the
// report from its primary (compared by content: an idle primary reports the same every
// time), the members its nodes report failed (a secondary's journal failure is heard
// from its own node, leases.ts), or its members' configuration (an acknowledgement, or a member restarted and
// must be configured again). None of those inputs moves with time alone for such a
// partition (see `settledCheck`). As a safety net, and for the slow configure refresh
// (configurer.ts), a settled partition is decided again anyway once `settledRecheckMs`
// has passed, each at its own point of that period (`spreadMs`), so no round decides
// every partition at once.
//
// Nor does a round look at every settled partition: the inputs above report their
// changes (tenure.ts: records, volumes and acknowledgements; leases.ts: reported
// entries and failed replicas, by address; a change of the live members, or of which
// nodes' reports are recent enough to act on, touches every partition), and the safety
// net points wait in a min-heap (`DueHeap`). A round looks at the partitions not
// settled, the settled ones touched since the last round (still compared by
// `settledCheck`, so a touch that changed nothing costs one comparison), and those whose
// point is due: an idle cluster's round costs nothing per partition, and one decision
// per partition a minute. `missed` is the scan it replaces, for tests.
//
// Slices (a volume of 16,384 partitions knocked its leader out): while many partitions
// are not settled — a new volume's, waiting for their first configure; every one after
// a head node died — a round decides them all, and one synchronous stretch over them
// took seconds on a loaded machine, long enough for the leader's own lease to lapse. So
// a round decides at most reconcileSliceMax partitions in one turn and goes on with the
// rest on the next turns of the event loop (`setImmediate`), so that lease renewals,
// heartbeats and requests run in between. A round's partitions are those pending when
// it began, and those changes add while it runs; each one decided and still pending
// goes to the back of the line, so the next round begins with those waiting longest.
// Ticks that come while a round runs start nothing. The load (placement.ts) is counted
// once per round, as before, not once per slice.

import { limits } from "@ballast/protocol";
import type { Logger } from "@ballast/runtime";
import {
  type Catalogue,
  idOfVolume,
  keys,
  termOf,
  type Versioned,
  type VolumeRecord,
} from "./catalogue.ts";
import type { CatalogueChanges } from "./catalogue-changes.ts";
import { now } from "./clock.ts";
import {
  type Configurer,
  noReplicaMembers,
  provenDisks,
  reopeningMembers,
  unprovenMembers,
} from "./configurer.ts";
import {
  catalogueRefreshMs,
  catalogueRereadMsMax,
  droppedNodeAvoidMs,
  flushStallFailover,
  learnerCatchUpMsMax,
  reconcileSliceMax,
  settledRecheckMs,
} from "./constants.ts";
import {
  decidePartition,
  flushStalledNodes,
  type Load,
  membersOf,
  type PartitionRecord,
  probeTargets,
  type Report,
  type Unconfirmed,
  unconfirmedSince,
  volumeIdOf,
} from "./decisions.ts";
import type { Heartbeats } from "./heartbeats.ts";
import { partitionKey } from "./leases.ts";
import { loadOf } from "./placement.ts";
import type { SledReach } from "./sled-reach.ts";
import { type Configured, forget, remember, type Tenure, type Tenures } from "./tenure.ts";

export interface ReconcilerOptions {
  logger: Logger;
  catalogue: Pick<
    Catalogue,
    "updatePartition" | "partition" | "volumes" | "allPartitions" | "unreadable"
  >;
  heartbeats: Pick<Heartbeats, "listening" | "aliveHeadNodes" | "aliveSleds" | "headNodeDisks">;
  configurer: Pick<Configurer, "configure" | "current">;
  tenures: Tenures;
  /** Changes to the catalogue, if watched: a re-read that would find none is skipped. */
  changes?: Pick<CatalogueChanges, "version">;
  /** Fail flush-stalled primaries over (constants.ts `flushStallFailover`, on by default). */
  flushStallFailover?: boolean;
  /**
   * Which head nodes have lately stored something on the sleds (sled-reach.ts): a
   * flush-stalled primary is failed over only to a secondary with such evidence, and its
   * secondaries' nodes are asked to probe. Absent: no evidence, no such failover.
   */
  sledReach?: Pick<SledReach, "get" | "askProbe">;
}

/** A member's acknowledged configuration, as the tenure holds it (`Tenure.configured`). */
export type Acknowledged = Configured;

/**
 * What a partition's last `keep` was decided on. While every part is unchanged, the
 * decision is keep again: none of its other inputs (time, load, lease) can change it.
 */
export interface Settled {
  revision: number;
  volume: VolumeRecord;
  /** The live head nodes and sleds (`membersKey`). */
  members: string;
  /** The primary's report it was decided on, and its content. */
  report: Report | undefined;
  reportText: string;
  /** Its members reported failed by their own nodes (`failedKey`). */
  failed: string;
  /**
   * The partition's configuration acknowledgements, by identity: the configurer and
   * `forgetConfigured` replace an entry on every change, never edit one in place.
   */
  acknowledged: ReadonlyMap<string, Acknowledged> | undefined;
  acks: readonly (readonly [string, Acknowledged])[];
  /** When it is decided again whatever changed: the safety net (`settledRecheckMs`). */
  dueAtMs: number;
}

/** A partition's inputs now, as `settledCheck` compares them. */
export interface SettledInputs {
  revision: number;
  volume: VolumeRecord;
  members: string;
  report: Report | undefined;
  /** Members reported failed (`failedKey`). */
  failed: string;
  acknowledged: ReadonlyMap<string, Acknowledged> | undefined;
}

/** Members reported failed as one comparable string ("" for none, the common case). */
export function failedKey(failed: ReadonlySet<string>): string {
  return failed.size === 0 ? "" : [...failed].sort().join(",");
}

/**
 * What deciding the partition again could change: `settled` (nothing), `same-report`
 * (nothing, and this report object is the remembered one's content: remember it to
 * compare the next by identity), or `decide` (an input moved, or the safety net is due).
 */
export type SettledCheck = "settled" | "same-report" | "decide";

/**
 * The live head nodes (with their data directory ids: a node back on another disk is a
 * change) and sleds as one comparable string.
 */
export function membersKey(
  alive: ReadonlySet<string>,
  sleds: readonly string[],
  disks?: ReadonlyMap<string, string>,
): string {
  const nodes = [...alive].sort().map((node) => {
    const disk = disks?.get(node);
    return disk === undefined ? node : `${node}@${disk}`;
  });
  return `${nodes.join(",")}|${[...sleds].sort().join(",")}`;
}

/**
 * A point in [periodMs / 2, periodMs] fixed by `key`: periodic work keyed by partition
 * or member is due at its own point of the period, not all in one round.
 */
export function spreadMs(key: string, periodMs: number): number {
  // FNV-1a: cheap, and spreads similar keys ("vol/1", "vol/2") apart.
  let hash = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    hash ^= key.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return periodMs / 2 + ((hash >>> 0) / 0x1_0000_0000) * (periodMs / 2);
}

/**
 * Whether a `keep` for this record may be remembered (see the module header): no
 * learners or joiners (their progress is judged against time), no recently dropped
 * nodes to avoid (they expire with time), no primary reporting an older epoch (whether
 * it must be configured again depends on time), and, over its count, no primary whose
 * node the leader remembers flush-stalled (such a partition keeps its stand-in until
 * that memory ends, decisions.ts decideSurplus, and must then be decided again).
 */
export function settleable(
  record: PartitionRecord,
  avoiding: boolean,
  report: Report | undefined,
  primaryFlushStalledLately = false,
): boolean {
  return (
    (record.learners ?? []).length === 0 &&
    (record.joining ?? []).length === 0 &&
    !avoiding &&
    !primaryFlushStalledLately &&
    // A primary that reports an older epoch than the record's is out of step until a
    // report says otherwise: configurer.ts pushes it again if that lasts (`outOfStep`).
    (report === undefined || report.epoch >= record.epoch)
  );
}

/** What a `keep` decided at `nowMs` on `inputs` remembers (see `settledCheck`). */
export function settle(key: string, inputs: SettledInputs, nowMs: number): Settled {
  return {
    revision: inputs.revision,
    volume: inputs.volume,
    members: inputs.members,
    report: inputs.report,
    reportText: reportText(inputs.report),
    failed: inputs.failed,
    acknowledged: inputs.acknowledged,
    acks: [...(inputs.acknowledged ?? [])],
    dueAtMs: nowMs + spreadMs(key, settledRecheckMs),
  };
}

/** Whether the partition must be decided again (pure: time is an argument). */
export function settledCheck(settled: Settled, now: SettledInputs, nowMs: number): SettledCheck {
  if (nowMs >= settled.dueAtMs) return "decide";
  if (settled.revision !== now.revision || settled.volume !== now.volume) return "decide";
  if (settled.members !== now.members) return "decide";
  if (settled.failed !== now.failed) return "decide";
  if (now.acknowledged !== settled.acknowledged) return "decide";
  if (now.acknowledged !== undefined) {
    if (now.acknowledged.size !== settled.acks.length) return "decide";
    for (const [node, ack] of settled.acks) {
      if (now.acknowledged.get(node) !== ack) return "decide";
    }
  }
  if (settled.report === now.report) return "settled";
  // A new report: the same content (an idle primary) leaves the decision as it was.
  return reportText(now.report) === settled.reportText ? "same-report" : "decide";
}

export function reportText(report: Report | undefined): string {
  return report === undefined ? "" : JSON.stringify(report);
}

/** Settled partitions by when their safety net is due: a binary min-heap. */
export class DueHeap {
  private readonly items: { dueAtMs: number; key: string; settled: Settled }[] = [];

  get size(): number {
    return this.items.length;
  }

  push(key: string, settled: Settled): void {
    const items = this.items;
    items.push({ dueAtMs: settled.dueAtMs, key, settled });
    let i = items.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (items[parent]!.dueAtMs <= items[i]!.dueAtMs) break;
      [items[parent], items[i]] = [items[i]!, items[parent]!];
      i = parent;
    }
  }

  /** Takes every item due at `nowMs`, earliest first. */
  *popDue(nowMs: number): Generator<{ key: string; settled: Settled }> {
    const items = this.items;
    while (items.length > 0 && items[0]!.dueAtMs <= nowMs) {
      const top = items[0]!;
      const last = items.pop()!;
      if (items.length > 0) {
        items[0] = last;
        let i = 0;
        for (;;) {
          const left = 2 * i + 1;
          const right = left + 1;
          let least = i;
          if (left < items.length && items[left]!.dueAtMs < items[least]!.dueAtMs) least = left;
          if (right < items.length && items[right]!.dueAtMs < items[least]!.dueAtMs) least = right;
          if (least === i) break;
          [items[least], items[i]] = [items[i]!, items[least]!];
          i = least;
        }
      }
      yield top;
    }
  }
}

export class Reconciler {
  /** Partitions whose last decision was keep, of `settledTenure`. */
  private settled = new Map<string, Settled>();
  private settledTenure: Tenure | undefined;
  /**
   * The partitions to look at next round: every one not settled, and settled ones whose
   * inputs changed (the tenure's and the lease book's change events) or whose safety
   * net is due (`due`). A settled partition nothing touched is not looked at.
   */
  private pending = new Set<string>();
  /** Settled partitions by the point of their safety net (stale items are skipped). */
  private due = new DueHeap();
  /** The inputs every partition shares, as last seen: a change touches them all. */
  private lastMembers = "";
  private lastReporting = "";
  /**
   * Per partition, since when its primary has not confirmed the record's epoch
   * (decisions.ts `unconfirmedSince`), of `settledTenure`: a new leader starts each clock
   * when it first decides the partition, never earlier; only unconfirmed ones are kept.
   * A partition whose primary is
   * unconfirmed is never settled (its configuration is not current), so it is decided,
   * and its clock kept, every round.
   */
  private unconfirmed = new Map<string, Unconfirmed>();
  /**
   * When each head node last reported a primary whose flushes all fail, within this
   * leadership (decisions.ts `flushStalledNodes`, flushStallNodesMemoryMs).
   */
  private flushStalls = new Map<string, number>();
  /** Partitions the round under way has still to decide: 0 when none is under way. */
  private roundLeft = 0;
  /** The load of the round under way, counted when a step first needs it. */
  private roundLoad: Map<string, Load> | undefined;

  constructor(private readonly options: ReconcilerOptions) {}

  /** How many partitions are remembered as settled (for tests). */
  settledCount(): number {
    return this.settled.size;
  }

  /**
   * Settled partitions that the scan this reconciler replaced would decide at `nowMs`
   * (their inputs moved) but that it will not look at next round: none, unless a
   * change event was missed. For tests; costs a scan.
   */
  missed(nowMs: number): string[] {
    const tenure = this.options.tenures.current();
    if (tenure === undefined || tenure !== this.settledTenure) return [];
    const { heartbeats } = this.options;
    const members = membersKey(
      heartbeats.aliveHeadNodes(),
      heartbeats.aliveSleds(),
      heartbeats.headNodeDisks(),
    );
    const changed = this.drain(tenure, members, nowMs, false);
    const missed: string[] = [];
    for (const [key, settled] of this.settled) {
      if (this.pending.has(key) || changed.has(key) || nowMs >= settled.dueAtMs) continue;
      const entry = tenure.records.get(key);
      const volume = entry === undefined ? undefined : tenure.volumes.get(entry.value.volume);
      if (entry === undefined || volume === undefined) {
        missed.push(key);
        continue;
      }
      const check = settledCheck(
        settled,
        this.inputsOf(tenure, entry, volume, members, nowMs),
        nowMs,
      );
      if (check === "decide") missed.push(key);
    }
    return missed;
  }

  /**
   * Leader only: every partition decided on its own; nothing here awaits. Decides the
   * first slice of a round at once and the rest on later turns (see "Slices"); does
   * nothing while a round is under way.
   */
  reconcile(): void {
    if (this.roundLeft > 0) return;
    try {
      this.slice(true);
    } catch (error) {
      // A round that failed is over: the next tick begins another.
      this.roundLeft = 0;
      throw error;
    }
  }

  /**
   * Drops what was kept of a tenure no longer current: this coordinator stopped leading
   * (or leads anew, and starts afresh at its first round anyway). Kept, a standby held
   * the ended tenure, with its copy of the catalogue, and a settled note per partition
   * until it next led, months later maybe.
   */
  private forgetTenure(): void {
    if (this.settledTenure === undefined) return;
    this.settledTenure = undefined;
    this.settled = new Map();
    this.unconfirmed = new Map();
    this.flushStalls = new Map();
    this.pending = new Set();
    this.due = new DueHeap();
    this.roundLoad = undefined;
  }

  /** Whether a round is under way, with partitions still to decide (for tests). */
  roundUnderWay(): boolean {
    return this.roundLeft > 0;
  }

  /** One slice of a round: at most reconcileSliceMax partitions, then the next turn. */
  private slice(starting: boolean): void {
    const { tenures, heartbeats } = this.options;
    const tenure = tenures.current();
    const startMs = now();
    if (tenure === undefined || !tenure.ready || heartbeats.listening(startMs)) {
      this.roundLeft = 0;
      if (tenure !== this.settledTenure) this.forgetTenure();
      return;
    }
    if (starting && startMs - tenure.refreshedAtMs >= catalogueRefreshMs && !tenure.refreshing) {
      const version = this.options.changes?.version();
      const unchanged =
        version !== undefined &&
        version === tenure.refreshedVersion &&
        startMs - tenure.refreshedAtMs < catalogueRereadMsMax;
      if (!unchanged) void this.refresh(tenure, version);
    }
    const alive = heartbeats.aliveHeadNodes();
    const sleds = heartbeats.aliveSleds();
    const disks = heartbeats.headNodeDisks();
    const members = membersKey(alive, sleds, disks);
    let fresh = starting;
    if (this.settledTenure !== tenure) {
      fresh = true;
      this.settled = new Map();
      this.unconfirmed = new Map();
      this.flushStalls = new Map();
      this.settledTenure = tenure;
      this.due = new DueHeap();
      this.pending = new Set(tenure.records.keys());
      this.lastMembers = members;
      this.lastReporting = tenure.leases.reportingKey(startMs);
      tenure.leases.takeChanged();
      tenure.changes.keys.clear();
      tenure.changes.all = false;
    }
    const before = this.pending.size;
    for (const key of this.drain(tenure, members, startMs, true)) this.pending.add(key);
    for (const { key, settled } of this.due.popDue(startMs)) {
      if (this.settled.get(key) === settled) this.pending.add(key);
    }
    if (fresh) {
      this.roundLeft = this.pending.size;
      this.roundLoad = undefined;
    } else {
      // Partitions changes added since the last slice are this round's too.
      this.roundLeft += this.pending.size - before;
    }
    const loadNow = () => {
      this.roundLoad ??= loadOf(
        [...tenure.records.values()].map((entry) => entry.value),
        [...alive],
      );
      return this.roundLoad;
    };
    // The slice: the partitions at the front of the line (a copy: the loop moves them).
    const batch: string[] = [];
    for (const key of this.pending) {
      if (batch.length >= Math.min(this.roundLeft, reconcileSliceMax)) break;
      batch.push(key);
    }
    this.roundLeft = batch.length < reconcileSliceMax ? 0 : this.roundLeft - batch.length;
    for (const key of batch) {
      const entry = tenure.records.get(key);
      if (entry === undefined) {
        // Deleted: nothing more to decide.
        this.settled.delete(key);
        this.unconfirmed.delete(key);
        this.pending.delete(key);
        continue;
      }
      const settled = this.settled.get(key);
      if (settled !== undefined) {
        const volume = tenure.volumes.get(entry.value.volume);
        if (volume !== undefined) {
          const inputs = this.inputsOf(tenure, entry, volume, members, startMs);
          const check = settledCheck(settled, inputs, startMs);
          if (check === "same-report") settled.report = inputs.report;
          if (check !== "decide") {
            this.pending.delete(key);
            continue;
          }
        }
        this.settled.delete(key);
      }
      this.step(tenure, entry, alive, sleds, loadNow, members, disks);
      // Settled: out of the line; else to its back, behind those not decided yet.
      this.pending.delete(key);
      if (!this.settled.has(key)) this.pending.add(key);
    }
    if (this.roundLeft > 0) {
      setImmediate(() => {
        try {
          this.slice(false);
        } catch (error) {
          this.roundLeft = 0;
          this.options.logger.error({ error: String(error) }, "reconcile failed");
        }
      });
    }
  }

  /**
   * The partition keys whose inputs changed since the last drain (all of them when an
   * input they share did). `consume`: forget the changes once returned.
   */
  private drain(tenure: Tenure, members: string, nowMs: number, consume: boolean): Set<string> {
    const reporting = tenure.leases.reportingKey(nowMs);
    const all =
      tenure.changes.all || members !== this.lastMembers || reporting !== this.lastReporting;
    const addresses = consume ? tenure.leases.takeChanged() : tenure.leases.peekChanged();
    let keys: Set<string>;
    if (all) {
      keys = new Set(tenure.records.keys());
    } else {
      keys = new Set(tenure.changes.keys);
      for (const address of addresses) {
        const slash = address.lastIndexOf("/");
        const volume = tenure.volumes.get(address.slice(0, slash));
        if (volume !== undefined) keys.add(`${idOfVolume(volume)}/${address.slice(slash + 1)}`);
      }
    }
    if (consume) {
      tenure.changes.keys.clear();
      tenure.changes.all = false;
      this.lastMembers = members;
      this.lastReporting = reporting;
    }
    return keys;
  }

  /** A partition's inputs now, as `settledCheck` compares them. */
  private inputsOf(
    tenure: Tenure,
    entry: Versioned<PartitionRecord>,
    volume: VolumeRecord,
    members: string,
    nowMs: number,
  ): SettledInputs {
    return {
      revision: entry.revision,
      volume,
      members,
      report: tenure.leases.reportOf(entry.value, nowMs),
      failed: failedKey(tenure.leases.failedMembers(entry.value)),
      acknowledged: tenure.configured.get(partitionKey(entry.value)),
    };
  }

  /** One partition: decide with a fresh time, then act without waiting. */
  private step(
    tenure: Tenure,
    entry: Versioned<PartitionRecord>,
    alive: ReadonlySet<string>,
    sleds: readonly string[],
    loadNow: () => Map<string, Load>,
    members: string,
    disks: ReadonlyMap<string, string>,
  ): void {
    const { configurer } = this.options;
    const record = entry.value;
    const key = partitionKey(record);
    if (tenure.inflight.has(key)) return;
    const volume = tenure.volumes.get(record.volume);
    // Partitions of no listed volume are a create still under way or a delete that
    // died halfway: not a volume's, not reconciled.
    if (volume === undefined || idOfVolume(volume) !== volumeIdOf(record)) return;
    if (tenure.unsure.has(key)) {
      void this.reread(tenure, record);
      return;
    }
    // A member holds the partition in a later epoch than this record: the catalogue is
    // older than the data (tenure.ts `behind`). Any decision would act on a stale replica
    // set (promote a replica that missed acknowledged writes, have the current ones
    // discard theirs to rebuild), so none is taken, nothing is configured, and the
    // primary's lease is not renewed, until a record at or past that epoch is read.
    const behind = tenure.behind.get(key);
    if (behind !== undefined && record.epoch >= behind.epoch) tenure.behind.delete(key);
    else if (behind !== undefined) {
      const reason = `${behind.node} holds ${record.volume}/${record.partition} in epoch ${behind.epoch}, past the catalogue's ${record.epoch}: the control store is older than the data (restored from an older copy?); nothing is decided or configured for the partition until the newer store is restored`;
      tenure.unavailable.set(key, reason);
      tenure.leases.setReplacing(record, true);
      this.note(tenure, record, "error", reason);
      return;
    }
    const nowMs = now();
    const report = tenure.leases.reportOf(record, nowMs);
    const avoid = avoided(tenure, record, nowMs);
    const failed = tenure.leases.failedMembers(record);
    // A primary not yet sent its epoch's configure (it waits behind the bounds on
    // configures in flight: a new volume's thousands) is asked nothing: its clock has
    // not started. It starts when the configure is sent.
    const about: Unconfirmed = { epoch: record.epoch, primary: record.primary };
    const asked = tenure.asked.get(key)?.get(record.primary);
    const previous = this.unconfirmed.get(key);
    const unconfirmed: Unconfirmed =
      asked?.epoch === record.epoch
        ? unconfirmedSince(
            record,
            previous?.epoch === record.epoch && previous.primary === record.primary
              ? previous
              : { ...about, sinceMs: asked.atMs },
            tenure.configured.get(key)?.get(record.primary),
            report,
            nowMs,
          )
        : about;
    // Confirmed: nothing to remember (the next lapse is timed from when it is seen).
    if (unconfirmed.sinceMs === undefined) this.unconfirmed.delete(key);
    else this.unconfirmed.set(key, unconfirmed);
    if ((report?.flushStalledMs ?? 0) >= limits.primaryStallMsMax) {
      this.flushStalls.set(record.primary, nowMs);
    }
    const stalledNodes = flushStalledNodes(this.flushStalls, nowMs);
    const failoverOnFlushStall = this.options.flushStallFailover ?? flushStallFailover;
    const reach = this.options.sledReach;
    // Only where a failover could follow: enough sleds alive, and no other node's flushes
    // failing lately (sleds failing everyone: probes would only add to their load).
    const flushStalled =
      failoverOnFlushStall &&
      reach !== undefined &&
      (report?.flushStalledMs ?? 0) > 0 &&
      sleds.length >= limits.chunkCopies &&
      stalledNodes <= 1;
    // Its secondaries' nodes are asked for evidence that they reach the sleds, which a
    // failover to one of them needs (sled-reach.ts); with none showing any, a few spares,
    // for a stand-in learner (decisions.ts `probeTargets`).
    const load = loadNow();
    if (flushStalled) {
      const targets = probeTargets(record, report?.flushStalledMs ?? 0, {
        nowMs,
        alive,
        load,
        replicaCount: volume.replicaCount,
        avoid,
        storedSinceMs: reach,
      });
      for (const node of targets) reach.askProbe(node, nowMs);
    }
    const decision = decidePartition(record, {
      failed,
      unopened: tenure.leases.unopenedMembers(record),
      reopening: reopeningMembers(tenure, record),
      unproven: unprovenMembers(tenure, record),
      nowMs,
      alive,
      disks,
      proven: provenDisks(tenure, record),
      noReplica: noReplicaMembers(tenure, record),
      load,
      replicaCount: volume.replicaCount,
      report,
      liveSleds: sleds.length,
      flushStalledNodes: stalledNodes,
      primaryFlushStalledLately: this.flushStalls.has(record.primary),
      flushStallFailover: failoverOnFlushStall,
      ...(flushStalled ? { sledStoredSinceMs: reach } : {}),
      leaseUntilMs: tenure.leases.leaseUntilMs(record),
      learnersSinceMs: firstSeen(tenure.learnersSince, record, record.learners ?? [], nowMs),
      joinersSinceMs: firstSeen(tenure.joinersSince, record, record.joining ?? [], nowMs),
      learnerCatchUpMsMax,
      avoid,
      ...(unconfirmed.sinceMs === undefined
        ? {}
        : { primaryUnconfirmedSinceMs: unconfirmed.sinceMs }),
    });
    if (decision.kind === "unavailable") tenure.unavailable.set(key, decision.reason);
    else tenure.unavailable.delete(key);
    switch (decision.kind) {
      case "keep":
        tenure.leases.setReplacing(record, false);
        tenure.reasons.delete(key);
        configurer.configure(tenure, record, alive, sleds, disks);
        // Remembered once every member has its configuration (sends still in flight or
        // failed leave it to be decided, and configured, again next round).
        if (
          settleable(
            record,
            avoid.size > 0,
            report,
            // Only a partition over its count waits on that memory (decideSurplus); the
            // others of the node settle as before.
            this.flushStalls.has(record.primary) && membersOf(record).length > volume.replicaCount,
          ) &&
          configurer.current(tenure, record, alive, sleds, disks)
        ) {
          const inputs = {
            revision: entry.revision,
            volume,
            members,
            report,
            failed: failedKey(failed),
            acknowledged: tenure.configured.get(key),
          };
          const settled = settle(key, inputs, nowMs);
          this.settled.set(key, settled);
          this.due.push(key, settled);
        }
        return;
      case "unavailable":
        tenure.leases.setReplacing(record, false);
        this.note(tenure, record, decision.level ?? "error", decision.reason);
        configurer.configure(tenure, record, alive, sleds, disks);
        return;
      case "wait":
        // Set in the same turn as the decision: no grant may extend the lease it read.
        tenure.leases.setReplacing(record, true);
        this.note(tenure, record, "info", decision.reason);
        configurer.configure(tenure, record, alive, sleds, disks);
        return;
      case "update":
        if (decision.record.primary !== record.primary) tenure.leases.setReplacing(record, true);
        tenure.inflight.add(key);
        tenure.reasons.delete(key);
        void this.apply(tenure, entry, decision.record, decision.reason);
        return;
      default: {
        const unreachable: never = decision;
        throw new Error(`unknown decision ${JSON.stringify(unreachable)}`);
      }
    }
  }

  /** Logs a decision that changes nothing, once per distinct reason. */
  private note(
    tenure: Tenure,
    record: PartitionRecord,
    level: "info" | "warn" | "error",
    reason: string,
  ): void {
    const key = partitionKey(record);
    // Waits count down: compare the reason without its numbers.
    const shape = reason.replace(/\d+/g, "#");
    if (tenure.reasons.get(key) === shape) return;
    tenure.reasons.set(key, shape);
    this.options.logger[level](
      { volume: record.volume, partition: record.partition, epoch: record.epoch },
      reason,
    );
  }

  /** Applies an update by compare-and-set, in the background of the decision loop. */
  private async apply(
    tenure: Tenure,
    current: Versioned<PartitionRecord>,
    next: PartitionRecord,
    reason: string,
  ): Promise<void> {
    const { logger, catalogue, heartbeats, configurer, tenures } = this.options;
    const key = partitionKey(next);
    let settled = true;
    try {
      if (tenures.current() !== tenure) return;
      const outcome = await catalogue.updatePartition(next, current, tenure.term);
      if (tenures.held() !== tenure) return;
      if (!outcome.applied) {
        if (outcome.reason === "deposed") {
          logger.warn(
            { volume: next.volume, partition: next.partition, term: tenure.term },
            "a later leader wrote this partition: this coordinator no longer decides",
          );
          tenure.ready = false;
          return;
        }
        // Someone moved it on (an earlier write whose answer was lost): decide again
        // on a fresh read.
        const fresh = await catalogue.partition(next.volume, next.partition);
        if (tenures.held() === tenure && fresh !== undefined) remember(tenure, fresh);
        return;
      }
      const stored = { value: { ...next, term: tenure.term }, revision: outcome.revision };
      tenure.records.set(key, stored);
      const alive = heartbeats.aliveHeadNodes();
      const remaining = membersOf(next);
      for (const node of membersOf(current.value)) {
        if (remaining.includes(node) || !alive.has(node)) continue;
        // Dropped while alive: stalled, or could not catch up. Not the next learner.
        const dropped = tenure.dropped.get(key) ?? new Map<string, number>();
        dropped.set(node, now() + droppedNodeAvoidMs);
        tenure.dropped.set(key, dropped);
      }
      logger.warn(
        {
          volume: next.volume,
          partition: next.partition,
          epoch: next.epoch,
          primary: next.primary,
          secondaries: next.secondaries,
          joining: next.joining ?? [],
          learners: next.learners ?? [],
        },
        reason,
      );
      configurer.configure(
        tenure,
        stored.value,
        alive,
        heartbeats.aliveSleds(),
        heartbeats.headNodeDisks(),
      );
    } catch (error) {
      // The write may or may not have landed: until a read says which, no lease is
      // granted on this partition (`replacing` stays) and nothing else is decided.
      settled = false;
      if (tenures.held() === tenure) tenure.unsure.add(key);
      logger.warn(
        { volume: next.volume, partition: next.partition, error: (error as Error).message },
        "could not record a partition decision; reading it again",
      );
    } finally {
      if (tenures.held() === tenure) {
        tenure.inflight.delete(key);
        if (settled) tenure.leases.setReplacing(next, false);
      }
    }
  }

  /** Reads back a partition whose last write is unclear, then lets it be decided again. */
  private async reread(tenure: Tenure, record: PartitionRecord): Promise<void> {
    const { logger, catalogue, tenures } = this.options;
    const key = partitionKey(record);
    tenure.inflight.add(key);
    try {
      const fresh = await catalogue.partition(record.volume, record.partition);
      if (tenures.held() !== tenure) return;
      if (fresh !== undefined && volumeIdOf(fresh.value) === volumeIdOf(record)) {
        remember(tenure, fresh);
      }
      tenure.unsure.delete(key);
      tenure.leases.setReplacing(record, false);
    } catch (error) {
      logger.warn(
        { volume: record.volume, partition: record.partition, error: (error as Error).message },
        "could not read a partition record back; will retry",
      );
    } finally {
      if (tenures.held() === tenure) tenure.inflight.delete(key);
    }
  }

  /**
   * Re-reads the whole catalogue into the leader's copy (a safety net, not a source).
   * `version` is the watch's count before the reads (catalogue-changes.ts): what it
   * counted is in what they return.
   */
  private async refresh(tenure: Tenure, version: number | undefined): Promise<void> {
    const { logger, catalogue, tenures } = this.options;
    tenure.refreshing = true;
    const generation = tenure.generation;
    try {
      // Records that do not decode are left out (reported) and are not taken for gone:
      // what the leader held of them it keeps (its writes over them fail by
      // compare-and-set), so a damaged record neither stops the re-read of every other
      // volume nor has its volume or partition forgotten.
      const [volumes, partitions] = await Promise.all([
        catalogue.volumes("skip"),
        catalogue.allPartitions("skip"),
      ]);
      if (tenures.held() !== tenure) return;
      // A create or delete landed while this listing was read: it may predate it, and
      // merging it could bring a deleted volume back. The next refresh reads again.
      if (generation !== tenure.generation) return;
      const names = new Set(volumes.map((volume) => volume.name));
      for (const volume of volumes) tenure.volumes.set(volume.name, volume);
      const listed = new Set<string>();
      for (const entry of partitions) {
        if (termOf(entry.value) > tenure.term) {
          logger.warn(
            { volume: entry.value.volume, partition: entry.value.partition, term: tenure.term },
            "a later leader wrote this partition: this coordinator no longer decides",
          );
          tenure.ready = false;
          return;
        }
        listed.add(partitionKey(entry.value));
        remember(tenure, entry);
      }
      // Nothing was created or deleted meanwhile: what is not listed is gone.
      const unreadable = catalogue.unreadable;
      for (const name of tenure.volumes.keys()) {
        if (!names.has(name) && !unreadable.has(keys.volume(name))) tenure.volumes.delete(name);
      }
      for (const [key, entry] of tenure.records) {
        if (listed.has(key) || tenure.inflight.has(key)) continue;
        if (unreadable.has(keys.partition(entry.value.volume, entry.value.partition))) continue;
        forget(tenure, entry.value);
      }
      tenure.refreshedAtMs = now();
      tenure.refreshedVersion = version;
    } catch (error) {
      logger.warn({ error: (error as Error).message }, "could not read the catalogue");
    } finally {
      tenure.refreshing = false;
    }
  }
}

/**
 * When this tenure first saw each of `nodes`, the record's learners or its joiners, in
 * `seen` (the tenure's map of them, forgetting former ones).
 */
function firstSeen(
  seen: Map<string, Map<string, number>>,
  record: PartitionRecord,
  nodes: readonly string[],
  nowMs: number,
): ReadonlyMap<string, number> {
  const key = partitionKey(record);
  if (nodes.length === 0) {
    seen.delete(key);
    return new Map();
  }
  const since = seen.get(key) ?? new Map<string, number>();
  for (const node of since.keys()) if (!nodes.includes(node)) since.delete(node);
  for (const node of nodes) if (!since.has(node)) since.set(node, nowMs);
  seen.set(key, since);
  return since;
}

/** Live nodes recently dropped from the partition (forgetting those whose time is up). */
function avoided(tenure: Tenure, record: PartitionRecord, nowMs: number): ReadonlySet<string> {
  const key = partitionKey(record);
  const dropped = tenure.dropped.get(key);
  if (dropped === undefined) return new Set();
  for (const [node, untilMs] of dropped) if (nowMs >= untilMs) dropped.delete(node);
  if (dropped.size === 0) tenure.dropped.delete(key);
  return new Set(dropped.keys());
}
