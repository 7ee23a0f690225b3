// Which head nodes reach the sleds, as positive evidence: the failover of a primary that
// cannot flush (decisions.ts, `flushStalledMs`) goes only to a secondary whose node has
// stored something on the sleds since that primary's stall began.
//
// Without it the leader could not tell a node cut from the sleds from sleds that fail
// writes for everyone (hung, read-only, shedding load) when only one node has data to
// flush: each failover then dropped a replica of acknowledged writes that could not be
// flushed anyway (review-diff19 D1), so the failover was off by default. Evidence is the
// growth of a node's `sledStores` (headnode.report.v1: chunk writes and blob stores that
// got their copies, counted per process) between two of its reports heard here: the
// stores happened after the earlier of the two was built, and that one named as its
// `base` a report whose answer the node had received, so which this leader had heard.
// Kept: when that base was heard, on this coordinator's monotonic clock; nothing is
// compared across machines, and a report heard late (past its sender's deadline, when the
// node has sent the next) dates nothing wrongly. Growth whose base this leader never
// heard (a whole-state report, another leader's answer) dates nothing new.
//
// A node that stores nothing (a secondary follows a primary that flushes nothing) is
// asked to probe (`probeSleds` in its answers, the head node's sled-probe.ts) for
// sledProbeAskMs after the leader last wanted it.
//
// Bounded: one entry per head node heard, the longest silent forgotten past membersMax
// (it reads as never heard: no evidence, and a stall waits for it to report again).

import { membersMax, sledProbeAskMs } from "./constants.ts";

interface Heard {
  session: number | undefined;
  stores: number;
  /** The report's `base` (undefined: a whole state). */
  base: number | undefined;
  /** When each of its recent reports was heard, by `seq` (at most heardSeqsMax). */
  heardAt: Map<number, number>;
  /** The earliest its newest observed store can have happened; undefined: none seen. */
  storedSinceMs: number | undefined;
}

/** Reports' hearing times kept per node: a base is the last answered, a report or two back. */
const heardSeqsMax = 8;

export class SledReach {
  private readonly nodes = new Map<string, Heard>();
  /** Nodes asked to probe, until when. */
  private readonly asked = new Map<string, number>();

  constructor(private readonly nodesMax: number = membersMax) {}

  /**
   * A report of `node` heard at `nowMs`: its session, `seq` and `base`, and its
   * `sledStores` (undefined from a head node that predates it: it gives no evidence).
   */
  heard(
    node: string,
    report: { session?: number; seq?: number; base?: number; sledStores?: number },
    nowMs: number,
  ): void {
    const { session, seq, base, sledStores: stores } = report;
    const before = this.nodes.get(node);
    this.nodes.delete(node);
    if (stores === undefined) return;
    if (before === undefined && this.nodes.size >= this.nodesMax) {
      const oldest = this.nodes.keys().next().value;
      if (oldest !== undefined) this.nodes.delete(oldest);
    }
    // Another session (a restart) counts from zero: what it stored is of unknown time,
    // so it starts over as a node never heard. So does a count that went down.
    const same = before !== undefined && before.session === session && stores >= before.stores;
    const heardAt = same ? before.heardAt : new Map<number, number>();
    // Stores new since the report before were made after it was built, so after its base
    // was heard; with that base unknown here, the newest store is at least as new as the
    // one dated before.
    const datedBy = same && before.base !== undefined ? heardAt.get(before.base) : undefined;
    const storedSinceMs = !same
      ? undefined
      : stores > before.stores
        ? Math.max(
            datedBy ?? Number.NEGATIVE_INFINITY,
            before.storedSinceMs ?? Number.NEGATIVE_INFINITY,
          )
        : before.storedSinceMs;
    if (seq !== undefined) {
      heardAt.set(seq, nowMs);
      if (heardAt.size > heardSeqsMax) heardAt.delete(heardAt.keys().next().value!);
    }
    this.nodes.set(node, {
      session,
      stores,
      base,
      heardAt,
      storedSinceMs: storedSinceMs === Number.NEGATIVE_INFINITY ? undefined : storedSinceMs,
    });
  }

  /**
   * The earliest `node`'s newest observed store can have happened; undefined when none
   * was observed: what decisions.ts reads from `sledStoredSinceMs`, with nothing copied.
   */
  get(node: string): number | undefined {
    return this.nodes.get(node)?.storedSinceMs;
  }

  /**
   * Per node heard, the earliest its newest observed store can have happened (nodes with
   * none observed are absent), as a copy (tests, the simulator's sabotage).
   */
  storedSince(): Map<string, number> {
    const since = new Map<string, number>();
    for (const [node, heard] of this.nodes) {
      if (heard.storedSinceMs !== undefined) since.set(node, heard.storedSinceMs);
    }
    return since;
  }

  /** The leader wants fresh evidence from `node`: its answers ask for a probe a while. */
  askProbe(node: string, nowMs: number): void {
    this.asked.delete(node);
    if (this.asked.size >= this.nodesMax) {
      const oldest = this.asked.keys().next().value;
      if (oldest !== undefined) this.asked.delete(oldest);
    }
    this.asked.set(node, nowMs + sledProbeAskMs);
  }

  /** Whether an answer to `node` now asks it to probe the sleds. */
  probeWanted(node: string, nowMs: number): boolean {
    const untilMs = this.asked.get(node);
    if (untilMs === undefined) return false;
    if (nowMs <= untilMs) return true;
    this.asked.delete(node);
    return false;
  }
}
