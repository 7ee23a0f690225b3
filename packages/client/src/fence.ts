// The client's side of the ordering fence (protocol messages/volume.ts, MutationFence).
// A stale copy of a mutation attempt can reach a primary after the client has given up
// on it: a request that timed out over a link may sit unread in the link's socket while
// its retry and the caller's next write to the same blocks go over NATS and are
// acknowledged; read later, the stale copy would get a higher op number than that
// acknowledged write and undo it. So every mutation attempt carries this client's
// session and a sequence number above every one sent before, taken in the same turn the
// attempt is handed to the bus (so attempts leave in sequence order), and the primary
// refuses one numbered below what it already took from the session (Superseded).
//
// One sequencer per BallastClient, shared by every Volume it opens: a Volume closed and
// opened again (the gateway does so when the last NBD connection of an export goes and
// another comes) keeps fencing the first one's stale attempts. A retry is a new attempt
// with a new, higher number: reusing the first attempt's number would leave a retry
// refused for as long as later attempts kept being taken. Reads and flushes change
// nothing, so carry no fence.

import { randomBytes } from "node:crypto";
import { limits, type MutationFence } from "@ballast/protocol";

export class AttemptSequencer {
  /** This client's session: `clientSessionHexLength` hex digits, drawn at random. */
  readonly session: string;
  private sequence = 0;

  /** `session`: for tests; drawn at random otherwise. */
  constructor(session: string = randomBytes(limits.clientSessionHexLength / 2).toString("hex")) {
    this.session = session;
  }

  /** The fence of the next mutation attempt: a sequence above every one given before. */
  next(): MutationFence {
    this.sequence += 1;
    return { session: this.session, sequence: this.sequence };
  }
}
