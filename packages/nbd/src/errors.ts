// Errors of the NBD server. Five kinds, kept apart on purpose:
//
// - NbdProtocolError: the client broke a rule of the protocol that leaves no way to go
//   on (a bad magic, unknown client flags, a write too large to read). The connection
//   ends with a hard disconnect; other connections are not affected.
// - ConnectionClosedError: the byte stream ended, or the server stopped reading it,
//   before a whole message arrived. It ends the connection's loop quietly.
// - NbdLimitsError: limits given to the server that cannot work together. It is thrown
//   by the constructor, before anything listens.
// - NbdAssertionError: a broken invariant of the server's own code. It is a bug.
// - BackendContractError: the backend answered in a way the BlockDevice contract rules
//   out (a read of the wrong length). The request fails with NBD_EIO rather than send
//   the client a malformed reply.
//
// Faults of the backend are not errors of this module: they become the error value of
// one reply (`replyErrorOf`) and the connection carries on.

import { BallastError, ErrorCode } from "@ballast/protocol";
import { Command, ReplyError } from "./wire.ts";

export class NbdProtocolError extends Error {
  override readonly name = "NbdProtocolError";
}

export class ConnectionClosedError extends Error {
  override readonly name = "ConnectionClosedError";
}

export class NbdLimitsError extends Error {
  override readonly name = "NbdLimitsError";
  /** Every problem found, one sentence each, so that a caller fixes them all at once. */
  readonly problems: readonly string[];

  constructor(problems: readonly string[]) {
    super(`invalid NBD server limits:\n  - ${problems.join("\n  - ")}`);
    this.problems = problems;
  }
}

export class NbdAssertionError extends Error {
  override readonly name = "NbdAssertionError";
}

export class BackendContractError extends Error {
  override readonly name = "BackendContractError";
}

export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new NbdAssertionError(message);
}

/** For the `default` branch of an exhaustive switch. */
export function assertNever(value: never, what: string): never {
  throw new NbdAssertionError(`unexpected ${what}: ${JSON.stringify(value)}`);
}

/**
 * The reply error value for a failed backend operation of `command` (an NBD command
 * code). The backend refuses a range it cannot serve with Unaligned, OutOfRange or
 * InvalidArgument, which the spec calls NBD_EINVAL, except that a write or write-zeroes
 * past the end is NBD_ENOSPC, as the spec asks (the backend says OutOfRange for one
 * inside the connection's size after the volume shrank: the size an NBD connection
 * was given never changes); NoSpace is NBD_ENOSPC; PermissionDenied (NATS refused the
 * gateway's request) is NBD_EPERM; every other fault, and anything that is not a
 * BallastError, is NBD_EIO.
 */
export function replyErrorOf(error: unknown, command?: number): ReplyError {
  if (!(error instanceof BallastError)) return ReplyError.InputOutput;
  switch (error.code) {
    case ErrorCode.OutOfRange:
      return command === Command.Write || command === Command.WriteZeroes
        ? ReplyError.NoSpace
        : ReplyError.InvalidArgument;
    case ErrorCode.Unaligned:
    case ErrorCode.InvalidArgument:
      return ReplyError.InvalidArgument;
    case ErrorCode.NoSpace:
      return ReplyError.NoSpace;
    case ErrorCode.PermissionDenied:
      return ReplyError.NotPermitted;
    case ErrorCode.MalformedMessage:
    case ErrorCode.UnknownMessageType:
    case ErrorCode.UnexpectedMessageType:
    case ErrorCode.InvalidMessage:
    case ErrorCode.PayloadTooLarge:
    case ErrorCode.WrongEpoch:
    case ErrorCode.NotPrimary:
    case ErrorCode.NotFound:
    case ErrorCode.AlreadyExists:
    case ErrorCode.ChecksumMismatch:
    case ErrorCode.Timeout:
    case ErrorCode.Unavailable:
    case ErrorCode.ShuttingDown:
    case ErrorCode.Internal:
    case ErrorCode.Superseded:
      return ReplyError.InputOutput;
    default: {
      // A code added to the protocol fails type checking here until it is placed above.
      const unplaced: never = error.code;
      void unplaced;
      return ReplyError.InputOutput;
    }
  }
}
