// Errors of the note journal. Four kinds, kept apart on purpose:
//
// - JournalUsageError: the caller asked for something the journal must not do (a gap in
//   op numbers, a payload over the limit, an append after close). It is raised before any
//   file is touched, so the journal and its files are as they were and stay usable.
// - JournalCorruptError: recovery found bytes that a crash cannot explain (a bad record
//   with intact records of a later group commit after it, a gap in op numbers, a damaged
//   segment that is not the last). The journal refuses to open rather than drop records it may have acknowledged;
//   the replica must be rebuilt from its peers. It names the file, the offset and what
//   was wrong there.
// - JournalFailedError: a write, sync, truncate or delete failed. After a failed fsync the
//   kernel may have dropped the dirty pages it could not write (the "fsyncgate" lesson),
//   so a retry proves nothing: the journal takes no more work, and the replica reopens it
//   to learn from the files what is durable.
// - JournalAssertionError: a broken invariant of the journal's own code. It is a bug.

export class JournalUsageError extends Error {
  override readonly name = "JournalUsageError";
}

export class JournalCorruptError extends Error {
  override readonly name = "JournalCorruptError";
  /** The damaged segment file. */
  readonly path: string;
  /** Byte offset in that file where the damage starts. */
  readonly offset: number;
  /** What was wrong there, as a sentence fragment. */
  readonly reason: string;

  constructor(path: string, offset: number, reason: string) {
    super(`cannot recover journal segment ${path}: at byte offset ${offset}, ${reason}`);
    this.path = path;
    this.offset = offset;
    this.reason = reason;
  }
}

export class JournalFailedError extends Error {
  override readonly name = "JournalFailedError";
  /** The journal's directory. */
  readonly directory: string;

  constructor(directory: string, message: string, options: { cause: unknown }) {
    const causeMessage = (options.cause as Error)?.message ?? String(options.cause);
    super(`journal ${directory}: ${message}: ${causeMessage}`, options);
    this.directory = directory;
  }
}

export class JournalAssertionError extends Error {
  override readonly name = "JournalAssertionError";
}

export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new JournalAssertionError(message);
}
