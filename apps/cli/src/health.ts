// The health of a volume at a glance, as a pure function of what `cluster.status.v1`
// (or `volume.describe.v1`) returned: no I/O, no clock. `ballast status` prints one
// line per volume from it, and `ballast status --check` exits non-zero unless every
// partition is at full strength.
//
// A partition is at full strength when it has as many voting members (primary and
// secondaries) as the volume's replica count, every one of them alive as far as the
// status says, and nothing rebuilding (learners) or joining. Otherwise it is:
// - rebuilding, while a learner or joiner is catching up (with the matched and target
//   op numbers the primary last reported), or
// - degraded, when members are missing and nothing is yet rebuilding to replace them.
// A member the status lists as a dead service counts as missing: between a kill and the
// coordinator replacing the member (the heartbeat timeout), the partition still names
// it, and a health probe must not call that full strength.

import type { ClusterStatus } from "./status.ts";
import type { VolumeState } from "./volume.ts";

type PartitionState = VolumeState["partitions"][number];

export type PartitionHealth =
  | { partition: number; state: "full" }
  | {
      partition: number;
      state: "degraded" | "rebuilding";
      /** Voting members that are alive. */
      voting: number;
      replicaCount: number;
      /** Members still named in the partition whose service the status says is dead. */
      down: string[];
      /** Learners, each with its progress if the primary reported one. */
      learners: { node: string; matchOpNum?: number; targetOpNum?: number }[];
      joining: string[];
    };

export type VolumeHealthState = "full" | "degraded" | "rebuilding";

export interface VolumeHealth {
  name: string;
  state: VolumeHealthState;
  partitions: PartitionHealth[];
}

export function partitionHealth(
  partition: PartitionState,
  replicaCount: number,
  deadNodes: ReadonlySet<string>,
): PartitionHealth {
  const members = [partition.primary, ...partition.secondaries];
  const down = members.filter((node) => deadNodes.has(node));
  const voting = members.length - down.length;
  const joining = partition.joining ?? [];
  const learners = partition.learners.map((node) => {
    const progress = partition.rebuilds.find((entry) => entry.node === node);
    return progress === undefined
      ? { node }
      : { node, matchOpNum: progress.matchOpNum, targetOpNum: progress.targetOpNum };
  });
  if (voting >= replicaCount && learners.length === 0 && joining.length === 0) {
    return { partition: partition.partition, state: "full" };
  }
  return {
    partition: partition.partition,
    state: learners.length > 0 || joining.length > 0 ? "rebuilding" : "degraded",
    voting,
    replicaCount,
    down,
    learners,
    joining,
  };
}

/** The worst state wins: a volume with one degraded partition is degraded. */
export function volumeHealth(volume: VolumeState, deadNodes: ReadonlySet<string>): VolumeHealth {
  const partitions = volume.partitions.map((partition) =>
    partitionHealth(partition, volume.replicaCount, deadNodes),
  );
  const state: VolumeHealthState = partitions.some((entry) => entry.state === "degraded")
    ? "degraded"
    : partitions.some((entry) => entry.state === "rebuilding")
      ? "rebuilding"
      : "full";
  return { name: volume.name, state, partitions };
}

/** Services the status reports as dead: their members are not counted as voting. */
export function deadNodesOf(status: Pick<ClusterStatus, "services">): Set<string> {
  return new Set(
    status.services.filter((service) => !service.healthy).map((service) => service.id),
  );
}

export function clusterHealth(status: Pick<ClusterStatus, "services" | "volumes">): VolumeHealth[] {
  const dead = deadNodesOf(status);
  return status.volumes.map((volume) => volumeHealth(volume as VolumeState, dead));
}

/** The decision of `status --check`: true only when every partition is at full strength. */
export function isFullStrength(status: Pick<ClusterStatus, "services" | "volumes">): boolean {
  return clusterHealth(status).every((volume) => volume.state === "full");
}

/** One line: `health: full strength`, or the state and what each partition lacks. */
export function healthLine(health: VolumeHealth): string {
  switch (health.state) {
    case "full":
      return `health: full strength (${health.partitions.length} partitions)`;
    case "degraded":
    case "rebuilding": {
      const problems = health.partitions.flatMap((entry) =>
        entry.state === "full" ? [] : [`partition ${entry.partition}: ${partitionProblem(entry)}`],
      );
      return `health: ${health.state.toUpperCase()}: ${problems.join("; ")}`;
    }
    default: {
      const never: never = health.state;
      throw new Error(`unknown health state ${String(never)}`);
    }
  }
}

function partitionProblem(entry: Exclude<PartitionHealth, { state: "full" }>): string {
  const parts = [`${entry.voting} of ${entry.replicaCount} members`];
  if (entry.down.length > 0) parts.push(`${entry.down.join(", ")} down`);
  for (const learner of entry.learners) {
    parts.push(
      learner.matchOpNum === undefined
        ? `rebuilding ${learner.node}`
        : `rebuilding ${learner.node} op ${learner.matchOpNum} of ${learner.targetOpNum}`,
    );
  }
  if (entry.joining.length > 0) parts.push(`joining ${entry.joining.join(", ")}`);
  return parts.join(", ");
}
