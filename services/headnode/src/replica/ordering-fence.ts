// The primary's side of the ordering fence (protocol messages/volume.ts, MutationFence):
// per partition, the highest attempt sequence taken from each client session. A pure
// table: the replica core asks it about every fenced mutation, with its tick count, in
// the order the core takes requests, which is the order it assigns op numbers in (a
// request that waits for room waits in a FIFO queue). So an attempt it admits gets an
// op number above that of every attempt its session had admitted before, and one it
// refuses gets none.
//
// Why a stale copy exists at all: a request that timed out at its client is not out of
// flight. Over a link its frame may sit unread in the primary's socket (a link server
// stops reading a connection at `linkUnansweredMax` unanswered requests; the sender
// buffers up to 64 MiB), while the client's retry and its next write go over NATS and
// are acknowledged. The epoch check catches a stale copy only if the epoch changed
// meanwhile; a slow primary that keeps its epoch would give it an op above theirs.
//
// What the table does not cover, and why that is safe or accepted:
// - A new epoch starts with an empty table (the core clears it on every configure of a
//   new epoch and when deposed): every attempt that could be stale against an attempt admitted in
//   this epoch was sent to this core in this epoch, and one sent in an earlier epoch
//   names that epoch and is refused WrongEpoch. A new primary on another node is the
//   same case. A restarted head node starts empty too, but a stale frame does not
//   survive a restart: it lived in a socket of the process that ended.
// - A new core in the same epoch and the same process does not start empty: a primary
//   whose journal failed, with no secondary to take over, is configured again in its
//   epoch (coordinator decisions.ts, `outOfStep`), and the head node closes it and opens
//   a new core from its files, while a stale frame may still sit in one of its sockets.
//   The closed core's table (`kept`, a KeptFence) is held by the head node
//   (kept-fences.ts) and carried into the new core, whose first configure takes it back
//   if of the same epoch (Replica `carryFence`). Ages, not ticks, cross over: the new
//   core counts ticks from 0. The ticks between the close and the reopen are not
//   counted, so a kept session lives that much longer, within the same bound.
// - A session evicted (past `fenceSessionsMax`, the one that has gone longest without
//   an attempt admitted) or expired (`fenceExpiryTicks` after its last) is forgotten:
//   a stale copy of one of its attempts arriving later is admitted as an unfenced
//   request would be. Both take that session being quiet on this partition for long:
//   more sessions than the bound wrote here since, or half an hour passed, while the
//   copy stayed unread. Every request is answered within two `requestDeadlineTicks`
//   (waiting for room, then once assigned), so a link whose server stopped reading is
//   read again within that per `linkUnansweredMax` requests ahead of the copy; the
//   expiry is kept well above it (constants.ts).
// - Requests without a fence (older clients, plain NATS clients) are not fenced.
// - A client process that ends and starts again is a new session: a stale copy its old
//   process left in a socket's send buffer (the kernel still delivers it) is not
//   fenced against the new one's writes.

import type { MutationFence } from "@ballast/protocol";
import type { ReplicaLimits } from "../constants.ts";

/** What the fence says of an attempt: admitted, or stale behind `highestSequence`. */
export type FenceDecision = { admitted: true } | { admitted: false; highestSequence: number };

/**
 * A fence table handed from a closed core to the one that reopens the same replica in
 * the same process (Replica `fenceToKeep`, `carryFence`): plain data, each session with
 * the ticks since its last admission rather than a tick of the old core (a new core
 * counts its ticks from 0). Oldest first.
 */
export interface KeptFence {
  /** The epoch it was built in: only a core configured in that epoch takes it back. */
  epoch: number;
  sessions: { session: string; sequence: number; ageTicks: number }[];
}

interface SessionEntry {
  /** The highest sequence admitted from the session. */
  sequence: number;
  /** The tick it was admitted at. */
  tick: number;
}

export class OrderingFence {
  /** By session; in order of their last admission, oldest first (eviction and expiry). */
  private readonly sessions = new Map<string, SessionEntry>();

  constructor(
    private readonly limits: Pick<ReplicaLimits, "fenceSessionsMax" | "fenceExpiryTicks">,
  ) {}

  /**
   * Decides on an attempt at tick `tick` (never less than at the last call): refused
   * when its session had an attempt with a higher sequence admitted (and not forgotten);
   * admitted otherwise, and then remembered. An equal sequence is the same attempt
   * delivered twice: nothing later of its session was admitted, so it overtakes nothing.
   */
  admit(fence: MutationFence, tick: number): FenceDecision {
    this.expire(tick);
    const known = this.sessions.get(fence.session);
    if (known !== undefined && fence.sequence < known.sequence) {
      return { admitted: false, highestSequence: known.sequence };
    }
    // Moved to the end: the map stays in order of admission.
    this.sessions.delete(fence.session);
    this.sessions.set(fence.session, { sequence: fence.sequence, tick });
    if (this.sessions.size > this.limits.fenceSessionsMax) {
      const oldest = this.sessions.keys().next();
      if (oldest.done !== true) this.sessions.delete(oldest.value);
    }
    return { admitted: true };
  }

  /** Forgets every session (a new epoch, or no longer primary). */
  clear(): void {
    this.sessions.clear();
  }

  /** The sessions remembered at tick `tick`, oldest first, with their ages (KeptFence). */
  kept(tick: number): KeptFence["sessions"] {
    this.expire(tick);
    return [...this.sessions].map(([session, entry]) => ({
      session,
      sequence: entry.sequence,
      ageTicks: tick - entry.tick,
    }));
  }

  /**
   * Takes back sessions `kept` by another table at tick `tick` of this one, as if each had
   * been admitted `ageTicks` ago, replacing what this table holds (called on an empty
   * one: a reopened core, when its first configure clears it).
   */
  restore(kept: KeptFence["sessions"], tick: number): void {
    this.sessions.clear();
    for (const entry of kept.slice(-this.limits.fenceSessionsMax)) {
      this.sessions.set(entry.session, { sequence: entry.sequence, tick: tick - entry.ageTicks });
    }
    this.expire(tick);
  }

  /** Sessions remembered now. */
  get size(): number {
    return this.sessions.size;
  }

  /** Forgets the sessions with nothing admitted for `fenceExpiryTicks` (oldest first). */
  private expire(tick: number): void {
    for (const [session, entry] of this.sessions) {
      if (tick - entry.tick < this.limits.fenceExpiryTicks) return;
      this.sessions.delete(session);
    }
  }
}
