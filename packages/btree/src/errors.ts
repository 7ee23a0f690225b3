// The errors of the extent index. Two families, kept apart on purpose:
//
// - BtreeAssertionError guards a programmer's invariant: an argument no correct caller
//   passes (a negative offset, a zero length), a tree mutated while it is being iterated,
//   or a broken structural invariant found by `check()`. It is a bug, not a condition to
//   handle, and it stays on in production.
// - CheckpointError and its subclasses report bad input: bytes that are not a checkpoint
//   this reader understands, or a checkpoint that was damaged or cut short. The caller
//   handles them, typically by fetching another copy.

export class BtreeAssertionError extends Error {
  override readonly name: string = "BtreeAssertionError";
}

export interface CheckpointErrorOptions {
  /** Where in the stream the problem was found, counted in bytes from its start. */
  byteOffset: number;
  cause?: unknown;
}

/** A checkpoint stream was refused. Catch this to handle both subclasses alike. */
export class CheckpointError extends Error {
  override readonly name: string = "CheckpointError";
  /** Where in the stream the problem was found, counted in bytes from its start. */
  readonly byteOffset: number;

  constructor(message: string, options: CheckpointErrorOptions) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.byteOffset = options.byteOffset;
  }
}

/**
 * The stream is intact as far as can be told but is not in a format this reader reads:
 * a wrong magic number (not a checkpoint) or a format version or flag it does not know
 * (written by a newer writer).
 */
export class CheckpointFormatError extends CheckpointError {
  override readonly name: string = "CheckpointFormatError";
}

/**
 * The stream is in a known format but damaged: a checksum mismatch, a truncation, a
 * record that decodes to an impossible extent, or counts that do not add up.
 */
export class CheckpointCorruptError extends CheckpointError {
  override readonly name: string = "CheckpointCorruptError";
}
