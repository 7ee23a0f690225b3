// Which coordinator leads: a lease in the KV key `leader`, {coordinator, expiresAtMs},
// taken and renewed only by compare-and-set. The leader renews it well before it
// expires; another coordinator takes it over only once it has expired by its own clock
// (the coordinators are assumed to have clocks within `clockSkewMsMax` of each other),
// and only by naming the revision it read, so two takeovers cannot both succeed.
//
// A leader that cannot renew in time (cut off from NATS) stops leading at once, by its
// own clock, before any other coordinator may take over.

import type { KV } from "@nats-io/kv";

export const leaderKey = "leader";

interface Lease {
  coordinator: string;
  expiresAtMs: number;
}

export interface LeadershipOptions {
  kv: KV;
  nodeId: string;
  leaseMs: number;
  clockSkewMsMax: number;
}

export class Leadership {
  private leaseExpiresAtMs = 0;

  constructor(private readonly options: LeadershipOptions) {}

  /** True while this coordinator holds an unexpired lease (by its own clock). */
  isLeader(nowMs: number): boolean {
    return nowMs < this.leaseExpiresAtMs - this.options.clockSkewMsMax;
  }

  /** Tries to take or renew the lease; returns whether this coordinator leads. */
  async renew(nowMs: number): Promise<boolean> {
    const { kv, nodeId, leaseMs, clockSkewMsMax } = this.options;
    const lease: Lease = { coordinator: nodeId, expiresAtMs: nowMs + leaseMs };
    const payload = new TextEncoder().encode(JSON.stringify(lease));
    try {
      const entry = await kv.get(leaderKey);
      if (entry === null || entry.operation !== "PUT") {
        await kv.create(leaderKey, payload);
      } else {
        const current = entry.json<Lease>();
        const mine = current.coordinator === nodeId;
        const expired = nowMs > current.expiresAtMs + clockSkewMsMax;
        if (!mine && !expired) {
          this.leaseExpiresAtMs = 0;
          return false;
        }
        await kv.update(leaderKey, payload, entry.revision);
      }
      this.leaseExpiresAtMs = lease.expiresAtMs;
      return true;
    } catch {
      // A lost race or an unreachable store: not the leader (until the next try).
      return this.isLeader(nowMs);
    }
  }

  /** Who holds the lease now, for status. */
  async holder(): Promise<string | undefined> {
    const entry = await this.options.kv.get(leaderKey);
    if (entry === null || entry.operation !== "PUT") return undefined;
    return entry.json<Lease>().coordinator;
  }
}
