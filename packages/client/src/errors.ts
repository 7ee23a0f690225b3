// The client's own errors, for faults that arise on this side of the bus. Faults the
// wire reports (and bad input, which the client refuses before sending, exactly as a
// head node would) are BallastErrors from @ballast/protocol with the wire's codes, so a
// caller branches on `code` for everything that concerns the volume's I/O:
//
// - VolumeClosedError: the program used a Volume after closing it.
// - InvalidVolumeStateError: the coordinator described a volume whose partitions do not
//   tile it, or whose layout changed under an open Volume. The client cannot map
//   offsets to partitions, so it refuses rather than guess.
// - UnexpectedReplyError: a head node answered with a reply that does not match the
//   request (a read returning the wrong number or size of buffers): a server bug.
// - ClientOptionsError: the options passed to BallastClient cannot be used.

/** An operation on a Volume after `close()` was called. */
export class VolumeClosedError extends Error {
  override readonly name = "VolumeClosedError";
  readonly volume: string;

  constructor(volume: string, operation: string) {
    super(`cannot ${operation} on volume ${JSON.stringify(volume)}: the volume is closed`);
    this.volume = volume;
  }
}

/** The coordinator's description of a volume cannot be used to address it. */
export class InvalidVolumeStateError extends Error {
  override readonly name = "InvalidVolumeStateError";
  readonly volume: string;

  constructor(volume: string, message: string) {
    super(`cannot use the description of volume ${JSON.stringify(volume)}: ${message}`);
    this.volume = volume;
  }
}

/** A reply that is well formed but does not answer the request it came back for. */
export class UnexpectedReplyError extends Error {
  override readonly name = "UnexpectedReplyError";
  readonly subject: string;

  constructor(subject: string, message: string) {
    super(`unexpected reply on ${subject}: ${message}`);
    this.subject = subject;
  }
}

/** Options passed to BallastClient that are out of their allowed range. */
export class ClientOptionsError extends Error {
  override readonly name = "ClientOptionsError";
  /** Every problem found, one sentence each, so that a caller fixes them all at once. */
  readonly problems: readonly string[];

  constructor(problems: readonly string[]) {
    super(`invalid client options:\n  - ${problems.join("\n  - ")}`);
    this.problems = problems;
  }
}
