// What head nodes tell the leader: their primaries' reports, which renew read leases
// (leases.ts), and the checkpoint pointers their replicas record, which seed learners.
//
// Read leases: head nodes report their primaries in `headnode.report.v1` every
// headnodeReportIntervalMs, as changes to the state the leader holds of them; the
// answer is one lease for the node, covering its primaries but those it excludes
// (leases.ts). A report is only heard once the tenure has fenced the catalogue (before
// that it knows no records, grants nothing, and asks for the whole state).
//
// A report may also list the node's failed replicas that are not primary (a secondary
// or learner whose journal failed; leases.ts keeps them). A report with such a failure,
// a failed primary or a stalled follower is `urgent`: the shell reconciles at once
// (coordinator.ts), so a drop waits for no reconcile round.
//
// The answer also carries the sleds declared out of service (sled-records.ts; a sled out
// for good that nothing names any more is forgotten and leaves it, sled-forgetting.ts),
// so that primaries re-replicate the copies those held, and the sleds back on another data
// directory not yet verified (`sledsToAudit`), so that each primary audits them now
// rather than at its daily scrub, and says so in its entry (`auditedDisks`).
//
// Each report's `sledStores` (the node's stores to the sleds that got their copies) feeds
// the evidence that the node reaches the sleds (sled-reach.ts), which the failover of a
// primary that cannot flush needs; an answer asks the node to probe them (`probeSleds`)
// while the reconciler wants such evidence from it.
//
// Every answer names the leader's term: a head node renews nothing on an answer in a
// term below one that has answered it lately (report-state.ts, exLeaderFenceMs). The leader itself
// answers only while it leads by both its clocks (leadership.ts); this fences, without
// any clock, an ex-leader whose wall clock was not set right after a freeze, once its
// successor has answered the node.
//
// Failure model: a report from a deposed primary (woken from a pause, say) is granted
// nothing, and the next configure round tells that node it is out. A checkpoint pointer
// is kept only from a current member of the partition's current incarnation, so one
// from a node that has left, or a late one from a deleted incarnation whose name was
// created again, can never seed a learner.

import { BallastError, ErrorCode, limits, type MessageOf, type ResultOf } from "@ballast/protocol";
import { type Catalogue, idOfVolume } from "./catalogue.ts";
import { now } from "./clock.ts";
import { membersOf, volumeIdOf } from "./decisions.ts";
import { HeadNodeFeatures } from "./head-node-features.ts";
import type { Heartbeats } from "./heartbeats.ts";
import { partitionKey } from "./leases.ts";
import { SledReach } from "./sled-reach.ts";
import type { SledRecords } from "./sled-records.ts";
import { type Tenure, touch } from "./tenure.ts";

export class Reports {
  constructor(
    private readonly catalogue: Pick<Catalogue, "volume" | "partition" | "recordCheckpoint">,
    private readonly heartbeats: Pick<Heartbeats, "aliveHeadNodes" | "aliveSleds">,
    private readonly sleds: Pick<SledRecords, "out" | "toAudit">,
    /**
     * Called when a report says something to act on at once (a failed replica, a stall):
     * the shell decides then rather than at the next reconcile round.
     */
    private readonly onUrgent: () => void = () => undefined,
    /** What each node's reports say it does (head-node-features.ts). */
    private readonly features: Pick<HeadNodeFeatures, "heard"> = new HeadNodeFeatures(),
    /** Which nodes reach the sleds, and which are asked to probe them (sled-reach.ts). */
    private readonly sledReach: Pick<SledReach, "heard" | "probeWanted"> = new SledReach(),
  ) {}

  /** A head node's report: keep what its primaries say, renew the node's lease. */
  onReport(
    tenure: Tenure,
    message: MessageOf<"headnode.report.v1">,
  ): ResultOf<"headnode.report.v1"> {
    this.features.heard(message);
    const nowMs = now();
    this.sledReach.heard(message.node, message, nowMs);
    // The sleds out of service, once this leader knows them: a head node keeps the set
    // it last heard while an answer says nothing.
    const sledsOut = this.sleds.out(tenure);
    const sledsToAudit = this.sleds.toAudit(tenure)?.slice(0, limits.reportSledsMax);
    const common = {
      leaseMs: limits.primaryLeaseMs,
      term: tenure.term,
      ...(sledsOut === undefined ? {} : { sledsOut }),
      ...(sledsToAudit === undefined ? {} : { sledsToAudit }),
      ...(this.sledReach.probeWanted(message.node, nowMs)
        ? {
            probeSleds: true as const,
            probeOn: this.heartbeats.aliveSleds().slice(0, limits.reportSledsMax),
          }
        : {}),
    };
    // Before the tenure has fenced the catalogue it knows no records: nothing is held,
    // and the node is asked for its whole state once it is.
    if (!tenure.ready) return { ...common, granted: [], full: true };
    const outcome = tenure.leases.onNodeReport(
      message,
      (volumeName, partition) => {
        const volume = tenure.volumes.get(volumeName);
        if (volume === undefined) return undefined;
        const entry = tenure.records.get(`${idOfVolume(volume)}/${partition}`);
        return entry?.value.volume === volumeName ? entry.value : undefined;
      },
      this.heartbeats.aliveHeadNodes(),
      nowMs,
    );
    if (outcome.urgent === true) this.onUrgent();
    for (const record of outcome.deposed) {
      // A deposed primary (woken from a pause, say), perhaps unknown to this tenure:
      // make sure the next configure round tells it it is out.
      const nodes = tenure.configured.get(partitionKey(record)) ?? new Map();
      if (!nodes.has(message.node)) {
        nodes.set(message.node, { epoch: -1, atMs: 0 });
        touch(tenure, partitionKey(record));
      }
      tenure.configured.set(partitionKey(record), nodes);
    }
    return {
      ...common,
      granted: outcome.granted,
      ...(outcome.accepted === undefined
        ? {}
        : {
            accepted: outcome.accepted,
            held: outcome.held ?? 0,
            heldFailures: outcome.heldFailures ?? 0,
          }),
      ...(outcome.excluded.length === 0 || outcome.accepted === undefined
        ? {}
        : { excluded: outcome.excluded }),
      ...(outcome.full === true ? { full: true } : {}),
    };
  }

  async onCheckpointRecord(
    message: MessageOf<"checkpoint.record.v1">,
  ): Promise<ResultOf<"checkpoint.record.v1">> {
    // Only a member's pointer is kept: one from a replica of a deleted incarnation, or
    // from a node that has left, must never seed a learner. Pointers are keyed by the
    // volume's name, so a record that names its incarnation is checked against both the
    // volume and the partition record: either may already be a re-creation's.
    const { volume, partition, node, volumeId } = message;
    const [current, record] = await Promise.all([
      volumeId === undefined ? undefined : this.catalogue.volume(volume),
      this.catalogue.partition(volume, partition),
    ]);
    if (volumeId !== undefined) {
      const currentId = current === undefined ? undefined : idOfVolume(current.value);
      const recordId = record === undefined ? undefined : volumeIdOf(record.value);
      const gone =
        currentId === undefined
          ? "the volume is deleted"
          : currentId !== volumeId
            ? `the volume is now incarnation ${currentId}`
            : recordId !== volumeId
              ? `its partition record is ${recordId === undefined ? "gone" : `of incarnation ${recordId}`}`
              : undefined;
      if (gone !== undefined) {
        throw new BallastError(
          ErrorCode.NotFound,
          `${volume}/${partition} of incarnation ${volumeId} is gone (${gone}): checkpoint from ${node} not recorded`,
        );
      }
    }
    if (record === undefined || !membersOf(record.value).includes(node)) {
      throw new BallastError(
        ErrorCode.NotFound,
        `${node} is not a member of ${volume}/${partition}: checkpoint not recorded`,
      );
    }
    const { replaced } = await this.catalogue.recordCheckpoint(
      message.volume,
      message.partition,
      message.node,
      message.checkpoint,
    );
    return replaced === undefined ? {} : { replaced };
  }
}
