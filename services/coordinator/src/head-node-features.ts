// What each head node's reports say it does that older head nodes do not: for now, only
// whether its primaries refuse I/O past a partition's served bytes (`enforcesServedBytes`
// in headnode.report.v1). During a rolling upgrade a volume may be served by a node that
// ignores the field, and a shrink there would lower an end nobody enforces; the resize
// asks this book first (volumes.ts).
//
// Model: the last report of each node this coordinator heard, whichever leader it was at
// the time (a report carries it whatever the tenure). A node restarted on older code says
// so in its next report. Bounded: past `membersMax` nodes the longest silent is forgotten
// (it reads as never heard, and a shrink it serves waits for its next report).

import type { MessageOf } from "@ballast/protocol";
import { membersMax } from "./constants.ts";

export class HeadNodeFeatures {
  /** Per node, whether its last report said it enforces served bytes; oldest heard first. */
  private readonly enforces = new Map<string, boolean>();

  constructor(private readonly nodesMax: number = membersMax) {}

  /** A report from `message.node`. */
  heard(message: Pick<MessageOf<"headnode.report.v1">, "node" | "enforcesServedBytes">): void {
    this.enforces.delete(message.node);
    if (this.enforces.size >= this.nodesMax) {
      const oldest = this.enforces.keys().next().value;
      if (oldest !== undefined) this.enforces.delete(oldest);
    }
    this.enforces.set(message.node, message.enforcesServedBytes === true);
  }

  /** Whether `node`'s last report said it enforces served bytes; undefined: not heard. */
  enforcesServedBytes(node: string): boolean | undefined {
    return this.enforces.get(node);
  }
}
