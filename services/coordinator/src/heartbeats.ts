// The shell around membership.ts: takes heartbeats off the bus and ticks with the
// monotonic clock, logs each membership event, and answers who is alive. Every
// coordinator runs one, leader or not, so that one that takes over leadership already
// knows who is alive.
//
// Failure model: a pause of this process (SIGSTOP, a stalled event loop) looks like
// silence from everyone, because the heartbeats sent meanwhile are still queued. So
// after a start or a pause it listens for a whole heartbeat timeout before it takes
// silence for death, and the leader decides nothing while it listens. A pause is a
// tick more than `heartbeatPauseTicksMin` ticks after the last, not only one longer
// than the timeout: after a stall Node runs the timers that fell due (this tick, the
// reconciler's) before it reads the heartbeats that queued up, so a stall just under
// the timeout declared dead every node last heard a moment before it.

import { parseHeartbeatSubject } from "@ballast/protocol";
import type { Logger } from "@ballast/runtime";
import { now } from "./clock.ts";
import {
  heartbeatPauseTicksMin,
  heartbeatsPerTimeoutMin,
  heartbeatTickMsMin,
  heartbeatTicksPerTimeout,
} from "./constants.ts";
import { type Heartbeat, type Member, Membership, type MembershipEvent } from "./membership.ts";

export interface HeartbeatsOptions {
  logger: Logger;
  heartbeatTimeoutMs: number;
  /** Silence after which a dead member is forgotten (membership.ts); a default if absent. */
  evictAfterMs?: number;
  /**
   * A node restarted or came back from silence, or was forgotten (and may come back
   * as a new member): what was configured on it may be stale.
   */
  onReturn: (nodeId: string) => void;
  /** A member was forgotten (evicted): what is held of it goes (after `onReturn`). */
  onEvicted?: (nodeId: string) => void;
  /** A node joined: one never heard of, or heard again after it was evicted. */
  onJoined?: (nodeId: string) => void;
}

/** How often membership ticks for a heartbeat timeout of `heartbeatTimeoutMs`. */
export function heartbeatTickMsOf(heartbeatTimeoutMs: number): number {
  return Math.max(heartbeatTickMsMin, Math.floor(heartbeatTimeoutMs / heartbeatTicksPerTimeout));
}

export class Heartbeats {
  private readonly membership: Membership;
  /**
   * Since when membership has been heard without a gap: after a start or a pause
   * heartbeats have not had time to arrive, and silence is not taken for death until
   * a heartbeat timeout has passed.
   */
  private listeningSinceMs = now();
  private lastTickAtMs = now();
  /** A gap between ticks longer than this is a pause of this process (module header). */
  private readonly pauseGapMs: number;

  constructor(private readonly options: HeartbeatsOptions) {
    // `tick` is called every `heartbeatTickMsOf` the timeout (coordinator.ts).
    const tickMs = heartbeatTickMsOf(options.heartbeatTimeoutMs);
    this.pauseGapMs = Math.min(options.heartbeatTimeoutMs, heartbeatPauseTicksMin * tickMs);
    this.membership = new Membership({
      heartbeatTimeoutMs: options.heartbeatTimeoutMs,
      ...(options.evictAfterMs === undefined ? {} : { evictAfterMs: options.evictAfterMs }),
    });
  }

  onHeartbeat(heartbeat: Heartbeat, subject: string): void {
    const from = parseHeartbeatSubject(subject);
    if (from === undefined || from.kind !== heartbeat.kind || from.nodeId !== heartbeat.nodeId) {
      this.options.logger.warn(
        { subject, kind: heartbeat.kind, nodeId: heartbeat.nodeId },
        "ignored a heartbeat whose subject does not match its content",
      );
      return;
    }
    this.reportEvents(this.membership.onHeartbeat(heartbeat, now()));
  }

  /** The periodic tick: notices a pause of this process, then declares deaths. */
  tick(): void {
    const nowMs = now();
    if (nowMs - this.lastTickAtMs > this.pauseGapMs) {
      // This process did not run for a tick or more: heartbeats sent meanwhile are
      // still queued. Listen afresh before taking silence for death.
      this.options.logger.warn(
        { pausedMs: Math.round(nowMs - this.lastTickAtMs) },
        "this coordinator was paused: listening for heartbeats again before declaring deaths",
      );
      this.listeningSinceMs = nowMs;
    }
    this.lastTickAtMs = nowMs;
    this.declareDeaths(nowMs);
  }

  /** Declares the silent dead, unless it is still listening. */
  declareDeaths(nowMs: number): void {
    if (!this.listening(nowMs)) this.reportEvents(this.membership.tick(nowMs));
  }

  /**
   * True while membership has not yet been heard for a whole heartbeat timeout, and
   * while a pause has not yet been seen by a tick (work that runs after a stall before
   * the tick, such as a status request's `declareDeaths`, would judge unread silence).
   */
  listening(nowMs: number): boolean {
    return (
      nowMs - this.listeningSinceMs < this.options.heartbeatTimeoutMs ||
      nowMs - this.lastTickAtMs > this.pauseGapMs
    );
  }

  /** Every member heard of, alive or dead (not yet evicted). */
  list(): Member[] {
    return this.membership.list();
  }

  /** Live head nodes, in membership order (placement depends on it). */
  aliveHeadNodes(): Set<string> {
    return new Set(this.membership.alive("headnode").map((member) => member.id));
  }

  /** Each live head node's data directory id, where its heartbeats carry one. */
  headNodeDisks(): Map<string, string> {
    const disks = new Map<string, string>();
    for (const member of this.membership.alive("headnode")) {
      if (member.disk !== undefined) disks.set(member.id, member.disk);
    }
    return disks;
  }

  aliveSleds(): string[] {
    return this.membership.alive("sled").map((member) => member.id);
  }

  private reportEvents(events: MembershipEvent[]): void {
    const logger = this.options.logger;
    for (const event of events) {
      switch (event.type) {
        case "joined":
          logger.info(
            { member: event.member.id, kind: event.member.kind, pid: event.member.pid },
            "node joined",
          );
          this.options.onJoined?.(event.member.id);
          break;
        case "restarted":
          logger.warn(
            { member: event.member.id, pid: event.member.pid, previousPid: event.previousPid },
            "node restarted",
          );
          this.options.onReturn(event.member.id);
          break;
        case "rejoined":
          logger.info(
            { member: event.member.id, silentMs: Math.round(event.silentMs) },
            "node is back",
          );
          this.options.onReturn(event.member.id);
          break;
        case "died":
          logger.warn(
            { member: event.member.id, kind: event.member.kind, silentMs: event.silentMs },
            `node declared dead: no heartbeat for ${Math.round(event.silentMs)} ms (timeout ${event.timeoutMs} ms)`,
          );
          break;
        case "evicted":
          logger.info(
            { member: event.member.id, kind: event.member.kind, silentMs: event.silentMs },
            "forgot a member dead for long: it joins afresh if heard again",
          );
          this.options.onReturn(event.member.id);
          this.options.onEvicted?.(event.member.id);
          break;
        case "refused":
          logger.warn({ member: event.nodeId, reason: event.reason }, "refused a heartbeat");
          break;
        case "too-slow":
          logger.error(
            {
              member: event.member.id,
              kind: event.member.kind,
              intervalMs: event.intervalMs,
              timeoutMs: event.timeoutMs,
            },
            `${event.member.kind} ${event.member.id} sends a heartbeat every ${event.intervalMs} ms, but this coordinator declares a node dead after ${event.timeoutMs} ms of silence: fewer than ${heartbeatsPerTimeoutMin} heartbeats a timeout, so one late or lost heartbeat has it declared dead and it flaps; set its BALLAST_HEARTBEAT_INTERVAL_MS (--heartbeat-interval-ms) to at most ${Math.floor(event.timeoutMs / heartbeatsPerTimeoutMin)} or the coordinators' BALLAST_HEARTBEAT_TIMEOUT_MS (--heartbeat-timeout-ms) to at least ${event.intervalMs * heartbeatsPerTimeoutMin}`,
          );
          break;
        default: {
          const unreachable: never = event;
          throw new Error(`unknown membership event ${JSON.stringify(unreachable)}`);
        }
      }
    }
  }
}
