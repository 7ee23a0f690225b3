// Placement and load: pure functions of the catalogue and of who is alive. They never
// read a clock or the KV store.
//
// Placement puts each partition's replicas on distinct head nodes, choosing the least
// loaded ones (fewest replicas, then fewest primaries, then id), and makes the least
// loaded chosen node the primary, so that both replicas and primaries spread evenly.
// What happens to a partition after it is placed (failover, rebuild, promotion) is
// decisions.ts.

import { BallastError, ErrorCode } from "@ballast/protocol";
import { type Load, membersOf, type PartitionRecord } from "./decisions.ts";

/**
 * Replicas and primaries per head node, over every partition given. Every member
 * counts as a replica, learners and joiners too: each holds a journal and a B-tree.
 */
export function loadOf(partitions: Iterable<PartitionRecord>, headNodes: readonly string[]) {
  const load = new Map<string, Load>(headNodes.map((id) => [id, { replicas: 0, primaries: 0 }]));
  for (const record of partitions) {
    for (const member of membersOf(record)) {
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

/** A partition's place in its volume, before replicas are chosen for it. */
export interface PartitionRange {
  partition: number;
  partitionStart: number;
  partitionBytes: number;
  /** Its bytes inside the volume, where fewer than all (resize.ts, `servedBytesOf`). */
  servedBytes?: number;
}

/**
 * Chooses replica sets for the partitions of a new volume incarnation `volumeId`;
 * updates `load` as it goes.
 */
export function placePartitions(
  volume: string,
  volumeId: string,
  sizeBytes: number,
  partitionBytes: number,
  replicaCount: number,
  headNodes: readonly string[],
  load: Map<string, Load>,
  disks?: ReadonlyMap<string, string>,
): PartitionRecord[] {
  const count = Math.ceil(sizeBytes / partitionBytes);
  const ranges: PartitionRange[] = [];
  for (let partition = 0; partition < count; partition++) {
    const partitionStart = partition * partitionBytes;
    ranges.push({
      partition,
      partitionStart,
      partitionBytes: Math.min(partitionBytes, sizeBytes - partitionStart),
    });
  }
  return placeRanges(volume, volumeId, ranges, replicaCount, headNodes, load, disks);
}

/**
 * Chooses replica sets for the given partitions of incarnation `volumeId`, at epoch 1:
 * a create's partitions, or those a grow adds (resize.ts). Updates `load` as it goes.
 */
export function placeRanges(
  volume: string,
  volumeId: string,
  ranges: readonly PartitionRange[],
  replicaCount: number,
  headNodes: readonly string[],
  load: Map<string, Load>,
  /** Each head node's data directory id, recorded per member (decisions.ts, "Lost disks"). */
  disks?: ReadonlyMap<string, string>,
): PartitionRecord[] {
  if (headNodes.length < replicaCount) {
    throw new BallastError(
      ErrorCode.Unavailable,
      `volume ${volume} needs ${replicaCount} live head nodes for its replicas, but ${headNodes.length} are alive (${headNodes.join(", ") || "none"})`,
      { details: { replicaCount, headNodes: headNodes.length } },
    );
  }
  const records: PartitionRecord[] = [];
  for (const range of ranges) {
    const chosen = [...headNodes].sort(byLoad(load)).slice(0, replicaCount);
    const primary = [...chosen].sort(
      (a, b) => load.get(a)!.primaries - load.get(b)!.primaries || a.localeCompare(b),
    )[0]!;
    for (const member of chosen) load.get(member)!.replicas++;
    load.get(primary)!.primaries++;
    const onDisks = chosen.flatMap((member) => {
      const disk = disks?.get(member);
      return disk === undefined ? [] : [[member, disk] as const];
    });
    records.push({
      volume,
      volumeId,
      ...range,
      epoch: 1,
      primary,
      secondaries: chosen.filter((member) => member !== primary),
      ...(onDisks.length === 0 ? {} : { disks: Object.fromEntries(onDisks) }),
    });
  }
  return records;
}
