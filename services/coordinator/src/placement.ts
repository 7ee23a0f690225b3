// Placement and failover decisions: pure functions of the catalogue and of who is
// alive. They never read a clock or the KV store; the shell applies what they return
// by compare-and-set, so a decision based on a stale view is refused, not applied.
//
// Placement puts each partition's replicas on distinct head nodes, choosing the least
// loaded ones (fewest replicas, then fewest primaries, then id), and makes the least
// loaded chosen node the primary, so that both replicas and primaries spread evenly.
//
// Failover: every member of an epoch holds every acknowledged write (a write commits
// only once all of them hold it), so any live member can be promoted. A dead primary is
// replaced by the live secondary with the fewest primaries; a dead secondary is dropped.
// Either way the epoch goes up by one. A partition with no live member is left as it is
// (nothing can serve it) and reported. A dead learner is dropped too.
//
// Back to full strength: a partition with fewer members than its replica count gets a
// learner, the least loaded live head node not already in it; the learner rebuilds from
// the primary's checkpoint and counts for nothing until the primary reports it has
// caught up, when a new epoch makes it a secondary.

import { BallastError, ErrorCode } from "@ballast/protocol";

export interface PartitionRecord {
  volume: string;
  partition: number;
  partitionStart: number;
  partitionBytes: number;
  epoch: number;
  primary: string;
  secondaries: string[];
  /** Replicas being rebuilt from a checkpoint (absent in records written before them). */
  learners?: string[];
}

export interface Load {
  replicas: number;
  primaries: number;
}

/** Replicas and primaries per head node, over every partition given. */
export function loadOf(partitions: Iterable<PartitionRecord>, headNodes: readonly string[]) {
  const load = new Map<string, Load>(headNodes.map((id) => [id, { replicas: 0, primaries: 0 }]));
  for (const record of partitions) {
    for (const member of [record.primary, ...record.secondaries]) {
      const entry = load.get(member);
      if (entry !== undefined) entry.replicas++;
    }
    const primary = load.get(record.primary);
    if (primary !== undefined) primary.primaries++;
  }
  return load;
}

function byLoad(load: Map<string, Load>) {
  return (a: string, b: string) => {
    const left = load.get(a)!;
    const right = load.get(b)!;
    return left.replicas - right.replicas || left.primaries - right.primaries || a.localeCompare(b);
  };
}

/** Chooses replica sets for `count` new partitions; updates `load` as it goes. */
export function placePartitions(
  volume: string,
  sizeBytes: number,
  partitionBytes: number,
  replicaCount: number,
  headNodes: readonly string[],
  load: Map<string, Load>,
): PartitionRecord[] {
  if (headNodes.length < replicaCount) {
    throw new BallastError(
      ErrorCode.Unavailable,
      `volume ${volume} needs ${replicaCount} live head nodes for its replicas, but ${headNodes.length} are alive (${headNodes.join(", ") || "none"})`,
      { details: { replicaCount, headNodes: headNodes.length } },
    );
  }
  const count = Math.ceil(sizeBytes / partitionBytes);
  const records: PartitionRecord[] = [];
  for (let partition = 0; partition < count; partition++) {
    const chosen = [...headNodes].sort(byLoad(load)).slice(0, replicaCount);
    const primary = [...chosen].sort(
      (a, b) => load.get(a)!.primaries - load.get(b)!.primaries || a.localeCompare(b),
    )[0]!;
    for (const member of chosen) load.get(member)!.replicas++;
    load.get(primary)!.primaries++;
    const partitionStart = partition * partitionBytes;
    records.push({
      volume,
      partition,
      partitionStart,
      partitionBytes: Math.min(partitionBytes, sizeBytes - partitionStart),
      epoch: 1,
      primary,
      secondaries: chosen.filter((member) => member !== primary),
    });
  }
  return records;
}

export type FailoverDecision =
  | { kind: "keep" }
  | { kind: "unavailable"; reason: string }
  | { kind: "change"; record: PartitionRecord; reason: string };

/** What to do with a partition given the live head nodes. */
export function decideFailover(
  record: PartitionRecord,
  alive: ReadonlySet<string>,
  load: Map<string, Load>,
): FailoverDecision {
  const liveSecondaries = record.secondaries.filter((member) => alive.has(member));
  const learners = record.learners ?? [];
  const liveLearners = learners.filter((member) => alive.has(member));
  if (alive.has(record.primary)) {
    if (liveSecondaries.length === record.secondaries.length) {
      if (liveLearners.length === learners.length) return { kind: "keep" };
      return {
        kind: "change",
        record: { ...record, epoch: record.epoch + 1, learners: liveLearners },
        reason: `learner ${learners.filter((member) => !alive.has(member)).join(", ")} is dead: dropping it`,
      };
    }
    const dropped = record.secondaries.filter((member) => !alive.has(member));
    return {
      kind: "change",
      record: {
        ...record,
        epoch: record.epoch + 1,
        secondaries: liveSecondaries,
        learners: liveLearners,
      },
      reason: `secondary ${dropped.join(", ")} is dead: continuing degraded`,
    };
  }
  if (liveSecondaries.length === 0) {
    return {
      kind: "unavailable",
      reason: `primary ${record.primary} and every secondary are dead; waiting for one to return`,
    };
  }
  const primary = [...liveSecondaries].sort(
    (a, b) => (load.get(a)?.primaries ?? 0) - (load.get(b)?.primaries ?? 0) || a.localeCompare(b),
  )[0]!;
  return {
    kind: "change",
    record: {
      ...record,
      epoch: record.epoch + 1,
      primary,
      secondaries: liveSecondaries.filter((member) => member !== primary),
      learners: liveLearners,
    },
    reason: `primary ${record.primary} is dead: promoting ${primary}`,
  };
}

/** A degraded partition with no learner gets one: the least loaded live spare. */
export function decideRebuild(
  record: PartitionRecord,
  replicaCount: number,
  alive: ReadonlySet<string>,
  load: Map<string, Load>,
): PartitionRecord | undefined {
  const members = [record.primary, ...record.secondaries];
  if (members.length >= replicaCount || (record.learners ?? []).length > 0) return undefined;
  const spares = [...alive].filter((node) => !members.includes(node) && load.has(node));
  if (spares.length === 0) return undefined;
  const learner = spares.sort(byLoad(load))[0]!;
  load.get(learner)!.replicas++;
  return { ...record, epoch: record.epoch + 1, learners: [learner] };
}

/** A learner that has matched the primary's commit point becomes a secondary. */
export function promoteLearner(record: PartitionRecord, learner: string): PartitionRecord {
  return {
    ...record,
    epoch: record.epoch + 1,
    secondaries: [...record.secondaries, learner],
    learners: (record.learners ?? []).filter((member) => member !== learner),
  };
}
