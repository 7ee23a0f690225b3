// Membership: who is alive, as heard through heartbeats. A pure state machine: it takes
// heartbeats and ticks with the time as an argument and returns events; it never reads
// a clock. The shell logs each event and acts on deaths.
//
// A node is healthy while its last heartbeat is at most `heartbeatTimeoutMs` old. It is
// declared dead once, on the first tick after that, and comes back (with a `rejoined`
// event) on its next heartbeat. A heartbeat whose start time or sequence goes backwards
// means the process restarted; that is reported too, because a restarted head node has
// lost its volatile state even if it never went silent long enough to be declared dead.
//
// A heartbeat that says its sender beats less often than `heartbeatsPerTimeoutMin`
// times a timeout is taken as any other, and reported (`too-slow`) when the member
// joins, restarts or changes its interval: the two settings live in different
// processes, and only here are both known.
//
// A dead member silent for `evictAfterMs` is forgotten (an `evicted` event), so that ids
// that never come back — a decommissioned sled, gateways named after pods — neither
// count towards `membersMax` for good (past it every new node would be refused) nor
// stay listed as dead, which readers such as the purger took to mean "may come back
// with data". One heard again after its eviction simply joins afresh.

import type { MessageOf, ServiceKind } from "@ballast/protocol";
import { heartbeatsPerTimeoutMin, memberEvictAfterMsDefault, membersMax } from "./constants.ts";

export type Heartbeat = MessageOf<"heartbeat.v1">;

export interface Member {
  kind: ServiceKind;
  id: string;
  pid: number;
  version: string;
  startedAtMs: number;
  lastSequence: number;
  lastHeartbeatAtMs: number;
  alive: boolean;
  /** Its data directory's id, from its newest heartbeat (absent from older services). */
  disk?: string;
  /** How often it says it beats, from its newest heartbeat (absent from older services). */
  intervalMs?: number;
}

export type MembershipEvent =
  | { type: "joined"; member: Member }
  | { type: "restarted"; member: Member; previousPid: number }
  | { type: "rejoined"; member: Member; silentMs: number }
  | { type: "died"; member: Member; silentMs: number; timeoutMs: number }
  | { type: "evicted"; member: Member; silentMs: number }
  | { type: "refused"; nodeId: string; reason: string }
  /** It beats too seldom for the timeout (fewer than `heartbeatsPerTimeoutMin` a timeout). */
  | { type: "too-slow"; member: Member; intervalMs: number; timeoutMs: number };

export class Membership {
  private readonly members = new Map<string, Member>();
  private readonly heartbeatTimeoutMs: number;
  private readonly evictAfterMs: number;

  /** `evictAfterMs`: silence after which a dead member is forgotten (at least the timeout). */
  constructor(options: { heartbeatTimeoutMs: number; evictAfterMs?: number }) {
    if (!(options.heartbeatTimeoutMs > 0)) {
      throw new Error(`heartbeatTimeoutMs must be positive, got ${options.heartbeatTimeoutMs}`);
    }
    const evictAfterMs = options.evictAfterMs ?? memberEvictAfterMsDefault;
    if (!(evictAfterMs >= options.heartbeatTimeoutMs)) {
      throw new Error(
        `evictAfterMs must be at least heartbeatTimeoutMs (${options.heartbeatTimeoutMs}), got ${evictAfterMs}`,
      );
    }
    this.heartbeatTimeoutMs = options.heartbeatTimeoutMs;
    this.evictAfterMs = evictAfterMs;
  }

  /** Records a heartbeat received at `nowMs` (the receiver's clock, not the sender's). */
  onHeartbeat(heartbeat: Heartbeat, nowMs: number): MembershipEvent[] {
    const known = this.members.get(heartbeat.nodeId);
    if (known === undefined) {
      if (this.members.size >= membersMax) {
        return [
          { type: "refused", nodeId: heartbeat.nodeId, reason: `over ${membersMax} members` },
        ];
      }
      const member = fromHeartbeat(heartbeat, nowMs);
      this.members.set(member.id, member);
      return [{ type: "joined", member: { ...member } }, ...this.tooSlow(member)];
    }
    if (known.kind !== heartbeat.kind) {
      return [
        {
          type: "refused",
          nodeId: heartbeat.nodeId,
          reason: `id is taken by a ${known.kind}, heartbeat says ${heartbeat.kind}`,
        },
      ];
    }
    const events: MembershipEvent[] = [];
    const restarted =
      heartbeat.startedAtMs !== known.startedAtMs ||
      heartbeat.pid !== known.pid ||
      heartbeat.sequence < known.lastSequence;
    const silentMs = nowMs - known.lastHeartbeatAtMs;
    const previousPid = known.pid;
    const previousIntervalMs = known.intervalMs;
    const wasAlive = known.alive;
    delete known.disk;
    delete known.intervalMs;
    Object.assign(known, fromHeartbeat(heartbeat, nowMs));
    if (!wasAlive) events.push({ type: "rejoined", member: { ...known }, silentMs });
    if (restarted) events.push({ type: "restarted", member: { ...known }, previousPid });
    if (restarted || known.intervalMs !== previousIntervalMs) events.push(...this.tooSlow(known));
    return events;
  }

  /** A `too-slow` event if `member` says it beats too seldom for the timeout. */
  private tooSlow(member: Member): MembershipEvent[] {
    const intervalMs = member.intervalMs;
    if (intervalMs === undefined) return [];
    if (intervalMs * heartbeatsPerTimeoutMin <= this.heartbeatTimeoutMs) return [];
    return [
      { type: "too-slow", member: { ...member }, intervalMs, timeoutMs: this.heartbeatTimeoutMs },
    ];
  }

  /**
   * Declares dead every member silent past the timeout, once each, and forgets every
   * dead member silent past `evictAfterMs`.
   */
  tick(nowMs: number): MembershipEvent[] {
    const events: MembershipEvent[] = [];
    for (const member of [...this.members.values()]) {
      const silentMs = nowMs - member.lastHeartbeatAtMs;
      if (!member.alive && silentMs > this.evictAfterMs) {
        this.members.delete(member.id);
        events.push({ type: "evicted", member: { ...member }, silentMs });
        continue;
      }
      if (member.alive && silentMs > this.heartbeatTimeoutMs) {
        member.alive = false;
        events.push({
          type: "died",
          member: { ...member },
          silentMs,
          timeoutMs: this.heartbeatTimeoutMs,
        });
      }
    }
    return events;
  }

  /** Every member, healthy or not, sorted by kind then id. */
  list(): Member[] {
    return [...this.members.values()]
      .map((member) => ({ ...member }))
      .sort((a, b) => a.kind.localeCompare(b.kind) || a.id.localeCompare(b.id));
  }

  alive(kind?: ServiceKind): Member[] {
    return this.list().filter(
      (member) => member.alive && (kind === undefined || member.kind === kind),
    );
  }
}

function fromHeartbeat(heartbeat: Heartbeat, nowMs: number): Member {
  return {
    ...(heartbeat.disk === undefined ? {} : { disk: heartbeat.disk }),
    ...(heartbeat.intervalMs === undefined ? {} : { intervalMs: heartbeat.intervalMs }),
    kind: heartbeat.kind,
    id: heartbeat.nodeId,
    pid: heartbeat.pid,
    version: heartbeat.version,
    startedAtMs: heartbeat.startedAtMs,
    lastSequence: heartbeat.sequence,
    lastHeartbeatAtMs: nowMs,
    alive: true,
  };
}
