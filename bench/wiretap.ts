// The benches' `--count-messages` wiretap (bench:write, bench:idle): counts the
// messages nats-server carries, by a kind the bench names, on every subject pattern the
// operator role may subscribe to. The patterns come from the same table nats-server's
// permissions are made from (@ballast/protocol `permissionsOf`), so the tap cannot ask
// for a subject the role is refused, nor miss a family added later. Before, bench:write
// subscribed to `ballast.v1.>`, which no role may since the permissions name each
// family (nats-server answers a Permissions Violation), and the bench went on printing
// counts of the replies alone.
//
// The tap connects as the operator (the caller's bus): only that role may read every
// family. It adds to nats-server's load, so CPU figures come from a run without it. A
// subscription the server ends is a failure of the count, not a line in the log: a
// bench with a tap that failed must not print its counts (`failure`).

import { permissionsOf } from "@ballast/protocol";

/** The part of a NATS connection the tap uses (nats.js's `NatsConnection`). */
export interface TapConnection {
  subscribe(subject: string): AsyncIterable<{ subject: string }>;
}

export interface Wiretap {
  /** Messages counted, by kind, since the tap started or was last cleared. */
  readonly counts: Map<string, number>;
  /** Why a subscription ended, once one has: the counts are then incomplete. */
  failure(): Error | undefined;
}

/** Every pattern the operator may subscribe to: what the tap listens on. */
export function wiretapPatterns(): string[] {
  return permissionsOf("operator").subscribe;
}

/**
 * Subscribes to every pattern of `wiretapPatterns` on `connection` (an operator's) and
 * counts each message under `kindOf(subject)`; a message whose kind is undefined is not
 * counted (a bench outside its window).
 */
export function startWiretap(
  connection: TapConnection,
  kindOf: (subject: string) => string | undefined,
): Wiretap {
  const counts = new Map<string, number>();
  let failed: Error | undefined;
  for (const pattern of wiretapPatterns()) {
    const subscription = connection.subscribe(pattern);
    void (async () => {
      try {
        for await (const message of subscription) {
          const kind = kindOf(message.subject);
          if (kind !== undefined) counts.set(kind, (counts.get(kind) ?? 0) + 1);
        }
      } catch (error) {
        failed ??= new Error(`the wiretap's subscription to ${pattern} ended`, { cause: error });
      }
    })();
  }
  return { counts, failure: () => failed };
}
