// Errors that cross the bus. A failure travels as a code plus a message in the reply
// envelope (see envelope.ts), never as a thrown string; on the receiving side it becomes
// a BallastError again with the same code, so callers branch on `code`, not on text.

/** Every error code the wire knows. Adding one is a protocol change: append, never reuse. */
export const ErrorCode = {
  /** The bytes are not a msgpack map with a string `type`. */
  MalformedMessage: "MalformedMessage",
  /** The `type` names no message this protocol version knows. */
  UnknownMessageType: "UnknownMessageType",
  /** A known message type, but this subject does not take it. */
  UnexpectedMessageType: "UnexpectedMessageType",
  /** A field is missing, of the wrong type, or out of its allowed range. */
  InvalidMessage: "InvalidMessage",
  /** The encoded message is larger than the limit for its subject. */
  PayloadTooLarge: "PayloadTooLarge",
  /** An offset or length is not a multiple of the sector size. */
  Unaligned: "Unaligned",
  /** An I/O reaches past the end of its volume or partition. */
  OutOfRange: "OutOfRange",
  /** The sender acts for an epoch the receiver does not hold. */
  WrongEpoch: "WrongEpoch",
  /** The receiver is not the primary of that partition. */
  NotPrimary: "NotPrimary",
  /** The named volume, chunk, blob or node does not exist. */
  NotFound: "NotFound",
  /** A create named something that exists already. */
  AlreadyExists: "AlreadyExists",
  /** A sled has no room for the chunk or blob. */
  NoSpace: "NoSpace",
  /** Stored data failed its checksum; the bad bytes are never returned. */
  ChecksumMismatch: "ChecksumMismatch",
  /** The request's deadline passed before it completed. */
  Timeout: "Timeout",
  /** Nothing that can serve the request is reachable now; retrying may succeed. */
  Unavailable: "Unavailable",
  /** The receiver is shutting down and takes no new work. */
  ShuttingDown: "ShuttingDown",
  /** A request that is well formed but asks for something that cannot be done. */
  InvalidArgument: "InvalidArgument",
  /** A bug or an unexpected fault on the receiving side. */
  Internal: "Internal",
  /**
   * A mutation attempt that arrived after a later attempt of the same client session
   * (its `fence`): a stale copy, never applied. Its sender may send it again as a new
   * attempt.
   */
  Superseded: "Superseded",
  /**
   * NATS refused to carry the request: the sender's credentials may not publish on its
   * subject (a destructive request sent with the client's credentials). Raised by the
   * sender's bus, never sent by a service.
   */
  PermissionDenied: "PermissionDenied",
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

const errorCodes: ReadonlySet<string> = new Set(Object.values(ErrorCode));

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === "string" && errorCodes.has(value);
}

/** Codes after which the same request may succeed if sent again (perhaps elsewhere). */
const retryableCodes: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  ErrorCode.WrongEpoch,
  ErrorCode.NotPrimary,
  ErrorCode.Timeout,
  ErrorCode.Unavailable,
  ErrorCode.ShuttingDown,
  ErrorCode.Superseded,
]);

export interface BallastErrorOptions {
  cause?: unknown;
  details?: Record<string, unknown>;
}

/**
 * The one error type of the wire. `code` says what kind of failure it is; `details`
 * carries the values that explain it (the offset seen, the epoch expected, …).
 */
export class BallastError extends Error {
  override readonly name = "BallastError";
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options: BallastErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.details = options.details;
  }

  get retryable(): boolean {
    return retryableCodes.has(this.code);
  }
}

export function isBallastError(error: unknown, code?: ErrorCode): error is BallastError {
  return error instanceof BallastError && (code === undefined || error.code === code);
}
