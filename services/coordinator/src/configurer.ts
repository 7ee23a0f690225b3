// Pushes partition records to head nodes as `headnode.configure.v1`, in the background
// of whoever decided: at most one request in flight per replica,
// configuresPerNodeInflightMax per head node and configuresInflightMax in all, so a
// slow or frozen head node delays nothing but its own configure requests, and a head
// node sent thousands at once (a new volume's) is never sent more than it answers in
// time. What waits is queued per head node (`Tenure.configureQueue`) and goes out as
// soon as one of that node's requests is answered or fails, not on the next reconcile
// round: 1,000 partitions over 3 head nodes waited about 21 rounds of 500 ms for their
// first configure. A queued configure is sent only if its record is still the leader's
// (no update or re-read of the partition under way: the decision that follows
// configures the successor), and if the node, alive by the heartbeats then, is still
// owed it (`owesConfigure`); else it is dropped, and any round that finds it owed
// queues it again. As ever, the failover clock of a primary starts when its configure
// is sent (`Tenure.asked`), not when it is queued.
//
// Each member is sent the record (secondaries = votingSecondaries, learners with the
// checkpoint `learnerCheckpoint` chooses, the volume's incarnation, `leased` for the
// primary) when its epoch changed and, as a safety net, once its configuration is older than its
// own point of the configureRefreshMs period (`refreshDue`: spread, so the refreshes of
// members configured together are not due together). A node that has left the
// partition is sent the new replica set until it answers once (or answers that it holds
// nothing, NotFound), then never again unless it restarts (tenure.ts, forgetConfigured);
// one evicted from membership is still told if it comes back, unless many head nodes
// were evicted since (tenure.ts, noteEvicted).
//
// The primary's reports show the epoch its replica is configured in: a primary that
// acknowledged the record's epoch and still reports an older one configureVerifyMs
// later (`outOfStep`) has lost its configuration and is pushed again at once; so is one
// that reports itself failed that long after (a configure reopens a failed replica in
// place) if no secondary can take over. While one can (`failingOver`), a failed primary
// is sent nothing at all, not even the refresh: the decisions fail the partition over,
// and a reopen would call that off (decisions.ts). Other members report nothing of
// their own; a restart or a return from silence is seen by membership (tenure.ts,
// forgetConfigured), and a secondary that cannot follow shows as a stall in its
// primary's report (decisions.ts).
//
// Members placed before disk ids have no disk in the record (decisions.ts, "Lost
// disks"): the answer of a head node that opened or holds the replica names the disk
// holding it, kept with the acknowledgement for the decision to record; a refusal for
// holding nothing on its disk (`no-replica`) is kept per partition and epoch, and the
// decision counts the member's replica lost.
//
// Failure model: a request that fails or times out is retried on a later round; its
// failure is logged once per replica and epoch. One refusal is not retried every round:
// a member on another disk than the record's (`other-disk`, its replica was on a
// directory it no longer has) refuses the epoch until it has that disk back, and while
// no secondary can replace it (a primary) it stays in the record; it was sent the
// configure every round for as long. It is sent it again once configureOtherDiskRetryMs
// has passed, or at once when its heartbeats name the record's disk or it restarts
// (decisions.ts `otherDiskBackoff`, tenure.ts `forgetConfigured`). An answer that arrives after the
// tenure ended is dropped. A learner's configure waits for a read of the primary's
// checkpoint pointer first, and goes out only if the tenure still leads and holds no
// later epoch of the partition once it is read: a leader frozen inside the read must not
// wake and name a learner a node that a newer leader has since made a voter (it would
// be rebuilt, its journal removed; the head node refuses such a configure too,
// configure-decision.ts).

import { BallastError, ErrorCode, subjects } from "@ballast/protocol";
import type { Service } from "@ballast/runtime";
import type { Catalogue } from "./catalogue.ts";
import { now } from "./clock.ts";
import {
  configureDeadlineMs,
  configureRefreshMs,
  configuresInflightMax,
  configuresPerNodeInflightMax,
  configureVerifyMs,
} from "./constants.ts";
import {
  type FailoverView,
  failingOver,
  knowsSleds,
  learnerCheckpoint,
  membersOf,
  otherDiskBackoff,
  outOfStep,
  type PartitionRecord,
  type Report,
  volumeIdOf,
  votingSecondaries,
} from "./decisions.ts";
import type { Heartbeats } from "./heartbeats.ts";
import { partitionKey } from "./leases.ts";
import { spreadMs } from "./reconciler.ts";
import { type Configured, type Tenure, type Tenures, touch } from "./tenure.ts";

export class Configurer {
  constructor(
    private readonly service: Pick<Service, "bus" | "logger">,
    private readonly catalogue: Pick<Catalogue, "checkpoint" | "newestCheckpoint">,
    private readonly tenures: Pick<Tenures, "held" | "current">,
    /** The live head nodes and sleds when a queued configure goes out. */
    private readonly members: Pick<Heartbeats, "aliveHeadNodes" | "aliveSleds" | "headNodeDisks">,
    /** How long a primary may report an older epoch than it acknowledged (`outOfStep`). */
    private readonly verifyMs = configureVerifyMs,
  ) {}

  /**
   * Pushes the record to every live member whose configuration is out of date or due
   * for a refresh, and to live former members that have not heard they are out; not to a
   * failed primary being failed over. `disks`: the live head nodes' data directories (a
   * secondary on another disk than the record's cannot take over); the reconciler
   * passes them every round, and a caller without them (a volume's creation) counts no
   * disk as lost until that round. Returns once those requests settle; the decision
   * loop never waits for it.
   */
  configure(
    tenure: Tenure,
    record: PartitionRecord,
    alive: ReadonlySet<string>,
    sleds: readonly string[],
    disks?: ReadonlyMap<string, string>,
  ): Promise<void> {
    if (sleds.length === 0) return Promise.resolve();
    const key = partitionKey(record);
    const members = membersOf(record);
    let nodes = tenure.configured.get(key);
    if (nodes === undefined) {
      nodes = new Map();
      tenure.configured.set(key, nodes);
    }
    const nowMs = now();
    const report = tenure.leases.reportOf(record, nowMs);
    const view = {
      alive,
      ...(disks === undefined ? {} : { disks }),
      noReplica: noReplicaMembers(tenure, record),
      unopened: tenure.leases.unopenedMembers(record),
      reopening: reopeningMembers(tenure, record),
      unproven: unprovenMembers(tenure, record),
    };
    const sending: Promise<void>[] = [];
    const otherDisk = tenure.otherDisk.get(key);
    for (const node of new Set([...members, ...nodes.keys()])) {
      if (tenure.configuring.has(`${key}@${node}`)) continue;
      const last = nodes.get(node);
      if (!owesConfigure(record, node, last, { report, view, sleds, nowMs }, this.verifyMs)) {
        continue;
      }
      if (otherDiskBackoff(record, node, otherDisk?.get(node), disks, nowMs)) continue;
      if (!roomFor(tenure, node)) {
        // Sent as soon as one of the node's requests settles (`sendQueued`).
        let queue = tenure.configureQueue.get(node);
        if (queue === undefined) {
          queue = new Map();
          tenure.configureQueue.set(node, queue);
        }
        queue.set(key, record);
        continue;
      }
      sending.push(this.send(tenure, record, node, members.includes(node), sleds));
    }
    return Promise.all(sending).then(() => undefined);
  }

  /**
   * Sends the configures queued for `node` while there is room (and this tenure leads
   * and decides, as for a round): each only if its record
   * is still the leader's, with no update or re-read of it under way, and the node, by
   * the heartbeats now, is still owed it (see the module header).
   */
  private sendQueued(tenure: Tenure, node: string): void {
    const queue = tenure.configureQueue.get(node);
    if (queue === undefined) return;
    // As the rounds: only while this tenure leads, and decides.
    if (this.tenures.current() !== tenure || !tenure.ready || tenure.failed) return;
    const alive = this.members.aliveHeadNodes();
    if (!alive.has(node)) {
      // Dead: the rounds queue what it is owed again once it is back.
      tenure.configureQueue.delete(node);
      return;
    }
    const sleds = this.members.aliveSleds();
    const disks = this.members.headNodeDisks();
    const nowMs = now();
    for (const [key, record] of queue) {
      if (!roomFor(tenure, node) || sleds.length === 0) break;
      queue.delete(key);
      if (
        tenure.records.get(key)?.value !== record ||
        tenure.inflight.has(key) ||
        tenure.unsure.has(key) ||
        tenure.configuring.has(`${key}@${node}`)
      ) {
        continue;
      }
      const view = {
        alive,
        disks,
        noReplica: noReplicaMembers(tenure, record),
        unopened: tenure.leases.unopenedMembers(record),
        reopening: reopeningMembers(tenure, record),
        unproven: unprovenMembers(tenure, record),
      };
      const last = tenure.configured.get(key)?.get(node);
      const report = tenure.leases.reportOf(record, nowMs);
      if (!owesConfigure(record, node, last, { report, view, sleds, nowMs }, this.verifyMs)) {
        continue;
      }
      if (otherDiskBackoff(record, node, tenure.otherDisk.get(key)?.get(node), disks, nowMs)) {
        continue;
      }
      if (!tenure.configured.has(key)) tenure.configured.set(key, new Map());
      void this.send(tenure, record, node, membersOf(record).includes(node), sleds);
    }
    if (queue.size === 0) tenure.configureQueue.delete(node);
  }

  /**
   * Whether every live member holds this record's epoch (configured, none in flight) and
   * no live former member still has to hear it is out: nothing for configure to send
   * but the periodic refresh.
   */
  current(
    tenure: Tenure,
    record: PartitionRecord,
    alive: ReadonlySet<string>,
    sleds: readonly string[],
    disks?: ReadonlyMap<string, string>,
  ): boolean {
    const key = partitionKey(record);
    const nodes = tenure.configured.get(key);
    if (nodes === undefined) return false;
    const members = membersOf(record);
    for (const node of members) {
      if (!alive.has(node)) continue;
      const last = nodes.get(node);
      if (last?.epoch !== record.epoch || !knowsSleds(last.sleds, sleds)) return false;
      if (tenure.configuring.has(`${key}@${node}`)) return false;
    }
    const nowMs = now();
    const primary = nodes.get(record.primary);
    if (
      alive.has(record.primary) &&
      primary !== undefined &&
      outOfStep(
        record,
        tenure.leases.reportOf(record, nowMs),
        primary,
        nowMs,
        {
          alive,
          ...(disks === undefined ? {} : { disks }),
          noReplica: noReplicaMembers(tenure, record),
          unopened: tenure.leases.unopenedMembers(record),
          reopening: reopeningMembers(tenure, record),
          unproven: unprovenMembers(tenure, record),
        },
        this.verifyMs,
      )
    ) {
      return false;
    }
    for (const [node, last] of nodes) {
      if (members.includes(node) || !alive.has(node)) continue;
      if (last.epoch !== record.epoch) return false;
    }
    return true;
  }

  private async send(
    tenure: Tenure,
    record: PartitionRecord,
    node: string,
    member: boolean,
    sleds: readonly string[],
  ): Promise<void> {
    const key = partitionKey(record);
    const inflightKey = `${key}@${node}`;
    tenure.configuring.add(inflightKey);
    tenure.configuringPerNode.set(node, (tenure.configuringPerNode.get(node) ?? 0) + 1);
    const asked = tenure.asked.get(key) ?? new Map<string, { epoch: number; atMs: number }>();
    asked.set(node, { epoch: record.epoch, atMs: now() });
    tenure.asked.set(key, asked);
    const told = [...sleds];
    try {
      const learners = record.learners ?? [];
      let checkpoint: Awaited<ReturnType<Catalogue["checkpoint"]>>;
      if (learners.includes(node)) {
        const own = await this.catalogue.checkpoint(
          record.volume,
          record.partition,
          record.primary,
        );
        const newest = await this.catalogue.newestCheckpoint(
          record.volume,
          record.partition,
          volumeIdOf(record),
        );
        // The newer of the two, of this incarnation, on a live sled (decisions.ts).
        checkpoint = learnerCheckpoint(
          own,
          newest,
          volumeIdOf(record),
          record.partition,
          new Set(sleds),
          tenure.unusableCheckpoints.get(key),
        );
        // Asked again after the read (tenure.ts): a leader frozen inside it may wake after
        // a newer one promoted this learner, which then acknowledged writes and restarted;
        // a late learner configure would have it rebuilt, its journal removed.
        if (this.stale(tenure, record)) {
          this.service.logger.debug(
            { node, volume: record.volume, partition: record.partition, epoch: record.epoch },
            "not sending a learner configure: its record is no longer this tenure's to send",
          );
          return;
        }
      }
      const answer = await this.service.bus.request(
        subjects.node.build("headnode", node),
        {
          type: "headnode.configure.v1",
          volume: record.volume,
          volumeId: volumeIdOf(record),
          partition: record.partition,
          partitionStart: record.partitionStart,
          partitionBytes: record.partitionBytes,
          epoch: record.epoch,
          primary: record.primary,
          secondaries: votingSecondaries(record),
          learners,
          ...(node === record.primary ? { leased: true } : {}),
          ...(checkpoint === undefined ? {} : { checkpoint }),
          sleds: told,
          // The disk this member joined on: a node on another one refuses (decisions.ts).
          ...(record.disks?.[node] === undefined ? {} : { disk: record.disks[node] }),
          // Without one, a voter with nothing stored refuses (configure-decision.ts).
          disksRecorded: true,
          // The volume's end within it: a primary refuses I/O past it (resize.ts).
          ...(record.servedBytes === undefined ? {} : { servedBytes: record.servedBytes }),
        },
        { deadlineMs: configureDeadlineMs },
      );
      if (this.tenures.held() !== tenure) return;
      tenure.configured.get(key)?.set(node, {
        epoch: record.epoch,
        atMs: now(),
        sleds: told,
        ...(answer.disk === undefined ? {} : { disk: answer.disk }),
      });
      tenure.noReplica.get(key)?.delete(node);
      forgetNote(tenure.failedJournals, key, node);
      forgetNote(tenure.otherDisk, key, node);
      touch(tenure, key);
      const logged = tenure.failuresLogged.get(key);
      if (logged?.delete(node) === true && logged.size === 0) tenure.failuresLogged.delete(key);
    } catch (error) {
      if (this.tenures.held() !== tenure) return;
      // The partition was forgotten meanwhile (its volume deleted): nothing to note of it.
      // Noted, a refusal or failure answered after the delete stayed for the tenure.
      if (!tenure.configured.has(key)) return;
      const code = error instanceof BallastError ? error.code : undefined;
      const context = {
        node,
        volume: record.volume,
        partition: record.partition,
        epoch: record.epoch,
        error: (error as Error).message,
      };
      if (!member && (code === ErrorCode.NotFound || code === ErrorCode.InvalidArgument)) {
        // A former member that holds nothing of the partition: nothing to tell it.
        tenure.configured.get(key)?.delete(node);
        touch(tenure, key);
        this.service.logger.debug(context, "a former member holds nothing of the partition");
        return;
      }
      if (member && code === ErrorCode.NotFound && noReplica(error)) {
        // Back on an empty disk under its old id: its replica is lost (decisions.ts).
        const refused = tenure.noReplica.get(key) ?? new Map<string, number>();
        refused.set(node, record.epoch);
        tenure.noReplica.set(key, refused);
        touch(tenure, key);
      }
      if (member && onOtherDisk(error)) {
        // It refuses this epoch until it has the record's disk back: not every round.
        const refused = tenure.otherDisk.get(key) ?? new Map<string, OtherDiskRefusal>();
        refused.set(node, { epoch: record.epoch, atMs: now() });
        tenure.otherDisk.set(key, refused);
      }
      const laterEpoch = laterEpochOf(error);
      const current = tenure.records.get(key)?.value.epoch ?? record.epoch;
      if (member && laterEpoch !== undefined && laterEpoch > current) {
        // The member holds the partition in an epoch this catalogue never reached: the
        // catalogue is older than the data (tenure.ts `behind`).
        const known = tenure.behind.get(key);
        if (known === undefined || known.epoch < laterEpoch) {
          tenure.behind.set(key, { node, epoch: laterEpoch });
          touch(tenure, key);
          this.service.logger.error(
            { ...context, currentEpoch: laterEpoch },
            "a replica is in a later epoch than the catalogue's record: the control store is older than the data (restored from an older copy?); the partition is left alone until the newer store is restored",
          );
        }
      }
      const unusable = unusableCheckpoint(error);
      if (member && unusable !== undefined) {
        // A learner found no usable copy of the checkpoint it was sent: the next gets
        // another where there is one (learnerCheckpoint).
        const known = tenure.unusableCheckpoints.get(key) ?? new Set<string>();
        known.add(unusable);
        tenure.unusableCheckpoints.set(key, known);
      }
      if (member && failedJournal(error)) {
        // Alive, but its replica's journal failed in this boot: it serves nothing here.
        const refused = tenure.failedJournals.get(key) ?? new Map<string, number>();
        refused.set(node, record.epoch);
        tenure.failedJournals.set(key, refused);
      }
      const logged = tenure.failuresLogged.get(key) ?? new Map<string, number>();
      if (logged.get(node) === record.epoch) {
        this.service.logger.debug(context, "could not configure a replica; will retry");
      } else {
        logged.set(node, record.epoch);
        tenure.failuresLogged.set(key, logged);
        this.service.logger.warn(context, "could not configure a replica; will retry");
      }
    } finally {
      // The tenure's own counts, whoever leads now: a later tenure has its own.
      tenure.configuring.delete(inflightKey);
      const inflight = (tenure.configuringPerNode.get(node) ?? 1) - 1;
      if (inflight > 0) tenure.configuringPerNode.set(node, inflight);
      else tenure.configuringPerNode.delete(node);
      // Room for the next configure owed to this node: at once, not next round (in a
      // microtask: a request that fails at once must not recurse through the queue).
      queueMicrotask(() => this.sendQueued(tenure, node));
    }
  }

  /**
   * Whether a configure of `record` must not go out now: this tenure no longer leads and
   * decides (as for `sendQueued`), or it holds a later epoch of the partition.
   */
  private stale(tenure: Tenure, record: PartitionRecord): boolean {
    if (this.tenures.current() !== tenure || !tenure.ready || tenure.failed) return true;
    const held = tenure.records.get(partitionKey(record))?.value;
    return held !== undefined && held.epoch > record.epoch;
  }
}

/** Whether the bounds on configures in flight leave room for one more to `node`. */
function roomFor(tenure: Tenure, node: string): boolean {
  return (
    tenure.configuring.size < configuresInflightMax &&
    (tenure.configuringPerNode.get(node) ?? 0) < configuresPerNodeInflightMax
  );
}

/**
 * Whether `node` is owed the record's configure at `nowMs` (pure; requests in flight
 * and the bounds are the caller's): a live member whose acknowledged epoch or sleds are
 * out of date, a primary out of step with its acknowledgement, a member due for the
 * refresh, or a live former member not yet told it is out. Never a failed primary being
 * failed over. `verifyMs`: as for `outOfStep`.
 */
export function owesConfigure(
  record: PartitionRecord,
  node: string,
  last: Configured | undefined,
  input: {
    report: Report | undefined;
    view: FailoverView;
    sleds: readonly string[];
    nowMs: number;
  },
  verifyMs = configureVerifyMs,
): boolean {
  const { report, view, sleds, nowMs } = input;
  if (!view.alive.has(node)) return false;
  if (node === record.primary && failingOver(record, report, view)) return false;
  const member = membersOf(record).includes(node);
  if (last === undefined) return member;
  const current =
    last.epoch === record.epoch &&
    (!member || knowsSleds(last.sleds, sleds)) &&
    !(node === record.primary && outOfStep(record, report, last, nowMs, view, verifyMs));
  if (!current) return true;
  return member && refreshDue(`${partitionKey(record)}@${node}`, last.atMs, nowMs);
}

/**
 * Whether a configure's refusal says the replica's journal failed in this boot of the
 * head node's machine (partition-host.ts `openJournal`): it cannot be reopened there.
 */
/** The epoch a configure's `older-epoch` refusal says the replica is in, if it is one. */
export function laterEpochOf(error: unknown): number | undefined {
  if (!(error instanceof BallastError) || error.code !== ErrorCode.WrongEpoch) return undefined;
  const epoch = error.details?.currentEpoch;
  return typeof epoch === "number" && Number.isSafeInteger(epoch) ? epoch : undefined;
}

export function failedJournal(error: unknown): boolean {
  return error instanceof BallastError && error.details?.refusal === "journal-failed-this-boot";
}

/**
 * Whether a configure's refusal says the head node is on another disk than the one the
 * record has its replica on (configure-decision.ts `other-disk`).
 */
export function onOtherDisk(error: unknown): boolean {
  return error instanceof BallastError && error.details?.refusal === "other-disk";
}

type OtherDiskRefusal = { epoch: number; atMs: number };

/** Drops a node's note of a partition, and the partition's map once empty. */
function forgetNote(notes: Map<string, Map<string, unknown>>, key: string, node: string): void {
  const nodes = notes.get(key);
  if (nodes?.delete(node) === true && nodes.size === 0) notes.delete(key);
}

/** The checkpoint blob a learner's configure found no usable copy of, if it says so. */
export function unusableCheckpoint(error: unknown): string | undefined {
  if (!(error instanceof BallastError) || error.details?.refusal !== "checkpoint-unusable")
    return undefined;
  const blobKey = error.details.blobKey;
  return typeof blobKey === "string" ? blobKey : undefined;
}

/** Whether a configure's refusal says the head node's disk holds nothing of the partition. */
export function noReplica(error: unknown): boolean {
  return error instanceof BallastError && error.details?.refusal === "no-replica";
}

/**
 * Members of the record whose acknowledgement of its epoch named the disk holding their
 * replica, where the record has none for them: `PartitionView.proven`.
 */
export function provenDisks(
  tenure: Pick<Tenure, "configured">,
  record: PartitionRecord,
): Map<string, string> {
  const proven = new Map<string, string>();
  const nodes = tenure.configured.get(partitionKey(record));
  if (nodes === undefined) return proven;
  for (const node of membersOf(record)) {
    const last = nodes.get(node);
    if (last?.disk === undefined || last.epoch !== record.epoch) continue;
    if (record.disks?.[node] === undefined) proven.set(node, last.disk);
  }
  return proven;
}

/**
 * Members of the record that refused its epoch's configure for holding nothing of the
 * partition on their disk: `PartitionView.noReplica`.
 */
export function noReplicaMembers(
  tenure: Pick<Tenure, "noReplica">,
  record: PartitionRecord,
): Set<string> {
  const refused = tenure.noReplica.get(partitionKey(record));
  if (refused === undefined) return new Set();
  const members = membersOf(record);
  return new Set(
    [...refused]
      .filter(([node, epoch]) => epoch === record.epoch && members.includes(node))
      .map(([node]) => node),
  );
}

/**
 * Members of the record whose acknowledgement of the partition is marked out of date by
 * their node's restart or return from silence (epoch −1, tenure.ts `forgetConfigured`)
 * and that have acknowledged nothing since: `PartitionView.reopening`.
 */
export function reopeningMembers(
  tenure: Pick<Tenure, "configured">,
  record: PartitionRecord,
): Set<string> {
  const nodes = tenure.configured.get(partitionKey(record));
  if (nodes === undefined) return new Set();
  return new Set(membersOf(record).filter((node) => nodes.get(node)?.epoch === -1));
}

/**
 * Members of the record it has no disk for (placed before disk ids) that have not
 * acknowledged the configure of its epoch, and members this tenure has heard answer no
 * configure of the partition at all: `PartitionView.unproven`. One that has answered
 * holds its replica on the disk its answer named (`provenDisks`), or comes from a head
 * node that names none (older than the `no-replica` refusal), which opens what it
 * stores. A disk the record has for a member never heard is only what a heartbeat said
 * at placement: the node may be back on another since, unheard (simulator seed 9781027,
 * decisions.ts "Lost disks"). A restart's mark (epoch −1) is an answer heard; such a
 * member is `reopening` instead.
 */
export function unprovenMembers(
  tenure: Pick<Tenure, "configured">,
  record: PartitionRecord,
): Set<string> {
  const nodes = tenure.configured.get(partitionKey(record));
  return new Set(
    membersOf(record).filter(
      (node) =>
        nodes?.get(node) === undefined ||
        (record.disks?.[node] === undefined && nodes.get(node)?.epoch !== record.epoch),
    ),
  );
}

/**
 * Whether a member configured at `atMs` is due for the safety-net refresh at `nowMs`:
 * after its own point of the configureRefreshMs period (`spreadMs` of `member`, the
 * partition key and node), so members acknowledged in one burst (a new leader's first
 * pass) are refreshed over half a period, not in one round.
 */
export function refreshDue(member: string, atMs: number, nowMs: number): boolean {
  return nowMs - atMs >= spreadMs(member, configureRefreshMs);
}

// Pure, in decisions.ts (the failover simulator uses them too).
export { failingOver, knowsSleds, outOfStep };
