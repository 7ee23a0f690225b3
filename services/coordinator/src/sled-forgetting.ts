// When an out sled may be forgotten: its record deleted from the sled book and the
// catalogue (sleds.ts), so that it leaves the out set every report answer carries, each
// head node's replicator and status. Pure: what the orphan sweep read (`censusOf`), the
// out sleds and the time come in as arguments; the shells (sweeper.ts, which reads the
// checkpoints, and sled-records.ts, which owns the book) move the rest.
//
// Why: a sled retired or replaced under a new id stayed out for good, one record per id
// ever seen, and its id rode on every report answer (at most `reportSledsMax` of them).
//
// Why it needs care: an id in the out set is what makes a head node count a copy there
// as lost. A chunk copy list or a checkpoint pointer that still names the sled once it
// has left the set would count that copy as live again: a chunk with copies on the
// forgotten sled and on one other would read as whole, and never be copied again, while
// one sled holds it. So a sled is forgotten only once nothing names it:
//   - it has been out for `sledForgetAfterMs` and membership no longer lists it
//     (evicted, memberEvictAfterMsDefault: so it is not dead-but-not-out to the purger
//     either);
//   - no recorded checkpoint pointer of a partition of a listed volume names it, as a
//     blob location or in its chunk table's copy lists (read by one complete sweep
//     pass: every listed volume, every pointer's header read);
//   - and the replicas' state since their newest checkpoint cannot name it. That state
//     is a recorded checkpoint's plus later ops, and a later op names a sled only by a
//     new copy the sled acknowledged: a flush's chunk written to the sleds a configure
//     names (live ones), or a re-replication's copy (to a live sled; the copies it keeps
//     are those not out, and a head node not yet told a sled is out keeps only what the
//     list held already). So once some recorded checkpoint of the partition is at or past
//     an op that was not yet committed when the sled was long dead, what follows it names
//     the sled only if that checkpoint does. The anchor gives such an op: the commit op
//     each partition's primary reported (leases.ts `reportOf`, received within
//     `reportAgeMsMax`) at a pass when the sled had already been out for
//     `sledForgetAfterMs`; the decision waits for a later pass where every partition has
//     a recorded checkpoint at or past its anchored op (`caught up`), and forgets the
//     sleds that pass found named by nothing. A replica behind its primary (a lagging
//     secondary, a learner rebuilding from an older pointer) may name the sled for a
//     while, but it catches up through the same ops, and only the caught-up state is
//     served or re-replicated from.
//
// Objects the sled still holds are not references: they are what it would bring back.
// A forgotten sled heard again is a new, empty sled to every table (none names it);
// what it holds is freed the ways a returning sled's extras are: chunks and blobs of live
// volumes that no recorded checkpoint needs by the orphan sweep (sweep.ts), those of
// deleted incarnations by the purger or the leftover sweep (leftovers.ts). The catalogue
// it carries marks of (store-marks.ts) is this one, so they refuse nothing.
//
// Failure model: every doubt keeps the sled. A pass that did not read everything (a
// header unread, a pointer of another incarnation, the marks refusing, the tenure
// ending, a partition record being written) decides nothing; a partition whose primary
// has not reported lately takes no anchor; one that never checkpoints past its anchor
// keeps every out sled. The anchor is per tenure (a new leader counts every out sled's
// time from its own start, sleds.ts), and a partition new since the anchor (a create,
// a grow) takes a new one rather than count as caught up. Volumes still being created
// are not read: no write reaches a volume before it is listed, and a create past its
// grace is removed (sweeper.ts), long before any sled has been out for the bound.

import type { PartitionCheckpoints } from "./sweep.ts";

/** What one partition's recorded checkpoints and its primary said, at one pass. */
export interface PartitionCensus {
  /** The op of its newest recorded checkpoint; -1 if it has none. */
  checkpointOpNumMax: number;
  /** The commit op its primary reported lately; undefined if none did. */
  commitOpNum: number | undefined;
}

/** What a complete sweep pass found naming sleds, over every listed volume. */
export interface ReferenceCensus {
  /** Sleds a recorded pointer names: its blob's locations, its chunk table's copies. */
  named: ReadonlySet<string>;
  /** By `<volume id>/<partition>`. */
  partitions: ReadonlyMap<string, PartitionCensus>;
  /** Leader's monotonic time from which every commit op above was reported. */
  reportedSinceMs: number;
}

/** One partition's recorded checkpoints as far as the census needs them. */
export interface CheckpointsNamed {
  /** The op of the newest; -1 if there is none. */
  opNumMax: number;
  /** Every sled they name, sorted. */
  sleds: readonly string[];
}

/**
 * What a partition's recorded checkpoints name, as the sweep read them; undefined if not
 * all were read (the pass cannot vouch for the partition).
 */
export function checkpointsNamedOf(state: PartitionCheckpoints): CheckpointsNamed | undefined {
  if (state.kind !== "read") return undefined;
  let opNumMax = -1;
  const sleds = new Set<string>();
  for (const checkpoint of state.checkpoints) {
    opNumMax = Math.max(opNumMax, checkpoint.opNum);
    for (const sled of checkpoint.sleds) sleds.add(sled);
  }
  return { opNumMax, sleds: [...sleds].sort() };
}

/**
 * A listed volume as the pass read it: what each partition's recorded checkpoints name
 * (a partition with none recorded may be absent), and the commit op its primary
 * reported lately, by partition.
 */
export interface CensusVolume {
  volumeId: string;
  checkpoints: ReadonlyMap<number, CheckpointsNamed | undefined>;
  commitOpNums: ReadonlyMap<number, number | undefined>;
}

/**
 * The census of one pass, or undefined if the pass cannot vouch for every reference: a
 * partition whose checkpoints were not all read.
 */
export function censusOf(
  volumes: readonly CensusVolume[],
  reportedSinceMs: number,
): ReferenceCensus | undefined {
  const named = new Set<string>();
  const partitions = new Map<string, PartitionCensus>();
  const none: CheckpointsNamed = { opNumMax: -1, sleds: [] };
  for (const volume of volumes) {
    const indexes = new Set([...volume.checkpoints.keys(), ...volume.commitOpNums.keys()]);
    for (const partition of indexes) {
      const checkpoints = volume.checkpoints.has(partition)
        ? volume.checkpoints.get(partition)
        : none;
      if (checkpoints === undefined) return undefined;
      for (const sled of checkpoints.sleds) named.add(sled);
      partitions.set(`${volume.volumeId}/${partition}`, {
        checkpointOpNumMax: checkpoints.opNumMax,
        commitOpNum: volume.commitOpNums.get(partition),
      });
    }
  }
  return { named, partitions, reportedSinceMs };
}

/** An out sled that membership no longer lists, and since when it is out (monotonic). */
export interface ForgetCandidate {
  id: string;
  outAtMs: number;
}

/** The decision across passes of one tenure: the anchor, and which sleds go. */
export class SledForgetting {
  /** The commit ops anchored, by partition, and since when they were reported. */
  private anchor: { sinceMs: number; commitOpNums: Map<string, number> } | undefined;

  constructor(private readonly sledForgetAfterMs: number) {
    if (!(sledForgetAfterMs > 0)) throw new Error(`sledForgetAfterMs must be positive`);
  }

  /**
   * One sweep pass's census (undefined: incomplete) and the candidates now. Returns the
   * ids to forget, sorted; an empty list while the anchor waits or there is none.
   */
  pass(census: ReferenceCensus | undefined, candidates: readonly ForgetCandidate[]): string[] {
    if (census === undefined) return [];
    const dueAt = (sinceMs: number) =>
      candidates.filter((candidate) => candidate.outAtMs + this.sledForgetAfterMs <= sinceMs);
    let forget: string[] = [];
    const anchor = this.anchor;
    if (anchor !== undefined) {
      let caughtUp = true;
      for (const [key, partition] of census.partitions) {
        const anchored = anchor.commitOpNums.get(key);
        if (anchored === undefined) {
          // New since the anchor: anchored afresh below, never taken as caught up.
          this.anchor = undefined;
          caughtUp = false;
          break;
        }
        if (partition.checkpointOpNumMax < anchored) caughtUp = false;
      }
      if (caughtUp) {
        forget = dueAt(anchor.sinceMs)
          .filter((candidate) => !census.named.has(candidate.id))
          .map((candidate) => candidate.id);
        this.anchor = undefined;
      } else if (this.anchor !== undefined) {
        return [];
      }
    }
    const forgotten = new Set(forget);
    const waiting = dueAt(census.reportedSinceMs).filter(
      (candidate) => !forgotten.has(candidate.id),
    );
    if (waiting.length > 0) {
      const commitOpNums = new Map<string, number>();
      for (const [key, partition] of census.partitions) {
        if (partition.commitOpNum === undefined) return forget.sort();
        commitOpNums.set(key, partition.commitOpNum);
      }
      this.anchor = { sinceMs: census.reportedSinceMs, commitOpNums };
    }
    return forget.sort();
  }

  /** Whether an anchor waits for checkpoints to catch up (for tests and status). */
  get anchored(): boolean {
    return this.anchor !== undefined;
  }
}
