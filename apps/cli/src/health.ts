// The health of a volume at a glance, as a pure function of what `cluster.status.v1`
// (or `volume.describe.v1`) returned: no I/O, no clock. `ballast status` prints one
// line per volume from it, and `ballast status --check` exits non-zero unless every
// partition is at full strength and every chunk has its copies where they can be read.
//
// A partition is at full strength when it has as many voting members (primary and
// secondaries) as the volume's replica count, every one of them alive as far as the
// status says, and nothing rebuilding (learners) or joining. Otherwise it is:
// - rebuilding, while a learner or joiner is catching up (with the matched and target
//   op numbers the primary last reported), or
// - degraded, when members are missing and nothing is yet rebuilding to replace them, or
// - unavailable, when no voting member is alive, or the leader judges it so
//   (`unavailable`): it serves nothing until one returns.
// A member whose replica reported itself failed (`failed`: its journal failed, or its core
// threw) is alive as a service but serves nothing here: it counts as missing too.
// A member is alive only when the status lists its service healthy. One listed dead
// counts as missing: between a kill and the coordinator replacing the member (the
// heartbeat timeout), the partition still names it, and a health probe must not call
// that full strength. So does one the status does not list at all: a coordinator that
// restarted has never heard a node that died before it started, and one silent past the
// eviction time is forgotten; neither is alive.
//
// Copies: a volume whose partitions are all at full strength is still degraded while its
// primaries report chunks short of copies on sleds in service (a sled declared out,
// re-replication not done), and every volume is while a sled still in service is not
// alive (its copies count as copies until it is declared out, but none can be read) or
// a live sled holds objects a scrub found damaged and nothing has repaired yet. A volume
// is degraded too while a sled in service that came back on another data directory
// (wiped or replaced) is refilling: some of its partitions' primaries have not yet said
// they audited that sled, so copies their tables list there may be gone.
//
// Slow sleds are not part of a volume's health. A sled alive but answering late (a
// failing or throttled disk) is a gray failure that head nodes judge each for
// themselves (headnode slow-sleds.ts): each asks it last and hedges its reads, so every
// copy still counts and can be read, and nothing is missing. The cluster is degraded but
// serving: `slowSledsHeldOf` says which head node holds which sled slow, `ballast status`
// shows it in a section of its own, and `--check`, which is about partitions at full
// strength and copies that can be read, does not count it.

import type { ClusterStatus } from "./status.ts";
import type { VolumeState } from "./volume.ts";

type PartitionState = VolumeState["partitions"][number];

export type PartitionHealth =
  | { partition: number; state: "full" }
  | {
      partition: number;
      state: "unavailable" | "degraded" | "rebuilding";
      /** Voting members that are alive. */
      voting: number;
      replicaCount: number;
      /** Members named in the partition that the status does not show alive. */
      down: string[];
      /** Members alive as services whose replica here reported itself failed. */
      failed: string[];
      /** The leader judges the partition unavailable (no member can serve it). */
      unavailable?: true;
      /** Learners, each with its progress if the primary reported one. */
      learners: { node: string; matchOpNum?: number; targetOpNum?: number }[];
      joining: string[];
    };

export type VolumeHealthState = "full" | "unavailable" | "degraded" | "rebuilding";

/** Where the copies of a volume's chunks stand, when the partitions do not say it. */
export interface CopiesAtRisk {
  /** Chunks its primaries reported short of copies on sleds in service. */
  chunksShortOfCopies: number;
  /** Sleds in service whose service is not alive: copies there cannot be read. */
  unreachableSleds: string[];
  /** Live sleds holding objects a scrub found damaged, not yet repaired, and how many. */
  damagedSleds?: { sled: string; objects: number }[];
  /**
   * Sleds in service back on another data directory that some of this volume's
   * primaries have not yet audited.
   */
  refillingSleds?: string[];
}

export interface VolumeHealth {
  name: string;
  state: VolumeHealthState;
  partitions: PartitionHealth[];
  /** Present when some copies are missing or cannot be read (the volume is degraded). */
  copies?: CopiesAtRisk;
}

export function partitionHealth(
  partition: PartitionState,
  replicaCount: number,
  deadNodes: ReadonlySet<string>,
): PartitionHealth {
  const members = [partition.primary, ...partition.secondaries];
  // A replica that reported itself failed serves nothing, whatever its service's health.
  const failed = partition.failed ?? [];
  const down = members.filter((node) => deadNodes.has(node) && !failed.includes(node));
  const failedMembers = members.filter((node) => failed.includes(node));
  const voting = members.length - down.length - failedMembers.length;
  const joining = partition.joining ?? [];
  const learners = partition.learners.map((node) => {
    const progress = partition.rebuilds.find((entry) => entry.node === node);
    return progress === undefined
      ? { node }
      : { node, matchOpNum: progress.matchOpNum, targetOpNum: progress.targetOpNum };
  });
  const unavailable = partition.unavailable;
  if (
    voting >= replicaCount &&
    learners.length === 0 &&
    joining.length === 0 &&
    unavailable === undefined
  ) {
    return { partition: partition.partition, state: "full" };
  }
  return {
    partition: partition.partition,
    state:
      voting === 0 || unavailable !== undefined
        ? "unavailable"
        : learners.length > 0 || joining.length > 0
          ? "rebuilding"
          : "degraded",
    voting,
    replicaCount,
    down,
    failed: failedMembers,
    learners,
    joining,
    ...(unavailable === undefined ? {} : { unavailable }),
  };
}

/** The worse of two states: unavailable, then degraded, then rebuilding, then full. */
const stateRank: Record<VolumeHealthState, number> = {
  full: 0,
  rebuilding: 1,
  degraded: 2,
  unavailable: 3,
};

/**
 * The worst state wins: a volume with one degraded partition is degraded. `copies` at
 * risk make a volume degraded at least.
 */
export function volumeHealth(
  volume: VolumeState,
  deadNodes: ReadonlySet<string>,
  copies?: CopiesAtRisk,
): VolumeHealth {
  const partitions = volume.partitions.map((partition) =>
    partitionHealth(partition, volume.replicaCount, deadNodes),
  );
  let state: VolumeHealthState = "full";
  for (const entry of partitions) {
    if (stateRank[entry.state] > stateRank[state]) state = entry.state;
  }
  const atRisk =
    copies !== undefined &&
    (copies.chunksShortOfCopies > 0 ||
      copies.unreachableSleds.length > 0 ||
      (copies.damagedSleds ?? []).length > 0 ||
      (copies.refillingSleds ?? []).length > 0);
  if (atRisk && stateRank[state] < stateRank.degraded) state = "degraded";
  return { name: volume.name, state, partitions, ...(atRisk ? { copies } : {}) };
}

/**
 * The members named by the status's volumes that it does not show alive: services it
 * lists dead, and nodes it does not list at all (module header).
 */
export function deadNodesOf(status: Pick<ClusterStatus, "services" | "volumes">): Set<string> {
  const alive = new Set(
    status.services.filter((service) => service.healthy).map((service) => service.id),
  );
  const dead = new Set(
    status.services.filter((service) => !service.healthy).map((service) => service.id),
  );
  for (const volume of status.volumes) {
    for (const node of membersOf(volume as VolumeState)) {
      if (!alive.has(node)) dead.add(node);
    }
  }
  return dead;
}

/** Every node a volume's partitions name: voters, learners and joiners. */
export function membersOf(volume: Pick<VolumeState, "partitions">): string[] {
  return volume.partitions.flatMap((partition) => [
    partition.primary,
    ...partition.secondaries,
    ...partition.learners,
    ...(partition.joining ?? []),
  ]);
}

/**
 * Sleds still in service (their copies count) that the status does not show alive: a
 * sled service listed dead and not declared out, and a sled the leader's records hold in
 * service that no live service answers for (a coordinator that restarted never heard it).
 */
export function unreachableSledsOf(status: Pick<ClusterStatus, "services" | "sleds">): string[] {
  const out = new Set(
    (status.sleds ?? []).filter((sled) => sled.state === "out").map((sled) => sled.id),
  );
  const alive = new Set(
    status.services
      .filter((service) => service.kind === "sled" && service.healthy)
      .map((service) => service.id),
  );
  const unreachable = new Set<string>();
  for (const service of status.services) {
    if (service.kind === "sled" && !service.healthy && !out.has(service.id)) {
      unreachable.add(service.id);
    }
  }
  for (const sled of status.sleds ?? []) {
    if (sled.state === "in" && !alive.has(sled.id)) unreachable.add(sled.id);
  }
  return [...unreachable].sort();
}

/** Live sleds whose stat counts objects a scrub found damaged (status with probes). */
export function damagedSledsOf(
  status: Pick<ClusterStatus, "services">,
): { sled: string; objects: number }[] {
  return status.services
    .filter((service) => service.kind === "sled" && service.healthy)
    .flatMap((service) => {
      const objects = service.capacity?.damagedObjects ?? 0;
      return objects > 0 ? [{ sled: service.id, objects }] : [];
    });
}

/**
 * Sleds in service back on another data directory whose audit some of `volume`'s
 * partitions' primaries have not yet reported (the leader's sled records). An out sled
 * is left out: its copies count for nothing already.
 */
export function refillingSledsOf(status: Pick<ClusterStatus, "sleds">, volume: string): string[] {
  return (status.sleds ?? [])
    .filter((sled) => sled.state === "in" && sled.refilling?.volumes.includes(volume) === true)
    .map((sled) => sled.id);
}

/** What a volume's primaries reported short of copies (0 when nothing was reported). */
function chunksShortOf(volume: VolumeState): number {
  const reported = (volume as { reported?: { chunksShortOfCopies?: number } }).reported;
  return reported?.chunksShortOfCopies ?? 0;
}

export function clusterHealth(
  status: Pick<ClusterStatus, "services" | "volumes" | "sleds">,
): VolumeHealth[] {
  const dead = deadNodesOf(status);
  const unreachableSleds = unreachableSledsOf(status);
  const damagedSleds = damagedSledsOf(status);
  return status.volumes.map((volume) => {
    const state = volume as VolumeState;
    return volumeHealth(state, dead, {
      chunksShortOfCopies: chunksShortOf(state),
      unreachableSleds,
      damagedSleds,
      refillingSleds: refillingSledsOf(status, state.name),
    });
  });
}

/**
 * The decision of `status --check`: true only when every partition is at full strength
 * and no copy is short or unreadable.
 */
export function isFullStrength(
  status: Pick<ClusterStatus, "services" | "volumes" | "sleds">,
): boolean {
  return clusterHealth(status).every((volume) => volume.state === "full");
}

/** One line: `health: full strength`, or the state and what each partition lacks. */
export function healthLine(health: VolumeHealth): string {
  switch (health.state) {
    case "full":
      return `health: full strength (${health.partitions.length} partitions)`;
    case "unavailable":
    case "degraded":
    case "rebuilding": {
      const problems = health.partitions.flatMap((entry) =>
        entry.state === "full" ? [] : [`partition ${entry.partition}: ${partitionProblem(entry)}`],
      );
      const copies = health.copies;
      if (copies !== undefined && copies.chunksShortOfCopies > 0) {
        problems.push(`${copies.chunksShortOfCopies} chunks short of copies`);
      }
      if (copies !== undefined && copies.unreachableSleds.length > 0) {
        const sleds = copies.unreachableSleds;
        problems.push(
          `copies on ${sleds.join(", ")} cannot be read (${sleds.length === 1 ? "a sled" : "sleds"} in service but not alive)`,
        );
      }
      for (const { sled, objects } of copies?.damagedSleds ?? []) {
        problems.push(`${objects} damaged objects on ${sled} (found by scrub, not repaired)`);
      }
      for (const sled of copies?.refillingSleds ?? []) {
        problems.push(
          `copies on ${sled} not yet verified (back on a new disk; its audit is under way)`,
        );
      }
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
  if (entry.failed.length > 0) parts.push(`${entry.failed.join(", ")} failed`);
  for (const learner of entry.learners) {
    parts.push(
      learner.matchOpNum === undefined
        ? `rebuilding ${learner.node}`
        : `rebuilding ${learner.node} op ${learner.matchOpNum} of ${learner.targetOpNum}`,
    );
  }
  if (entry.joining.length > 0) parts.push(`joining ${entry.joining.join(", ")}`);
  if (entry.unavailable !== undefined) {
    parts.push("no member can serve it (the coordinator's log says why)");
  }
  return parts.join(", ");
}

/** A live head node that asks sleds last, having seen them slow lately (status `slowSleds`). */
export interface SlowSledsHeld {
  headNode: string;
  /** Each sled it holds slow, with its hold when the head node says it (newer ones do). */
  sleds: { sled: string; slowForMs?: number; holdLeftMs?: number; holdMs?: number }[];
  /** Reads it hedged since it started (not only those around these sleds). */
  hedgedReads: number;
  /** Chunk writes it hedged since it started; undefined from head nodes that predate it. */
  hedgedWrites?: number;
}

/**
 * The live head nodes that hold any sled slow, by id, each with its sleds in its own
 * order (module header: a gray failure, not a volume's health).
 */
export function slowSledsHeldOf(status: Pick<ClusterStatus, "services">): SlowSledsHeld[] {
  return status.services
    .filter((service) => service.kind === "headnode" && service.healthy)
    .flatMap((service) => {
      const slowSleds = service.slowSleds;
      if (slowSleds === undefined || slowSleds.slow.length === 0) return [];
      const holds = new Map((slowSleds.holds ?? []).map((hold) => [hold.sled, hold]));
      return [
        {
          headNode: service.id,
          sleds: slowSleds.slow.map((sled) => holds.get(sled) ?? { sled }),
          hedgedReads: slowSleds.hedgedReads,
          ...(slowSleds.hedgedWrites === undefined ? {} : { hedgedWrites: slowSleds.hedgedWrites }),
        },
      ];
    })
    .sort((a, b) => (a.headNode < b.headNode ? -1 : a.headNode > b.headNode ? 1 : 0));
}
