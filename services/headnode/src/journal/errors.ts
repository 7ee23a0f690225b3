// Errors of the note journal. Five kinds, kept apart on purpose:
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
//   so a retry proves nothing: the journal takes no more work. For the same reason the
//   files cannot tell what is durable until the machine restarts: the failure is
//   recorded with the boot id (failed-marker.ts).
// - JournalUntrustedError: the journal failed earlier in this boot, so its files may
//   read back bytes that never reached the disk. It refuses to open until a reboot;
//   the replica must be rebuilt from its peers (which removes the directory) instead.
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

export class JournalUntrustedError extends Error {
  override readonly name = "JournalUntrustedError";
  /** The journal's directory. */
  readonly directory: string;
  /** The boot the failure was recorded in (undefined: the record is unreadable). */
  readonly failedBootId: string | undefined;

  constructor(
    directory: string,
    failure: { bootId: string | undefined; failedAtMs: number; error: string },
    bootId: string,
  ) {
    const when = failure.failedAtMs > 0 ? ` at ${new Date(failure.failedAtMs).toISOString()}` : "";
    super(
      `cannot open the journal in ${directory}: a file operation on it failed${when} in this boot of the machine (boot ${failure.bootId ?? "unknown: the record is unreadable"}, now ${bootId}; ${failure.error}), so its files may read back bytes that never reached the disk; it opens again only after a reboot, and the replica must be rebuilt from its peers meanwhile`,
    );
    this.directory = directory;
    this.failedBootId = failure.bootId;
  }
}

export class JournalAssertionError extends Error {
  override readonly name = "JournalAssertionError";
}

export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new JournalAssertionError(message);
}
