// Errors of the runtime itself: configuration that cannot be used, and a data
// directory that belongs to someone else. Faults that cross the bus are BallastErrors
// from @ballast/protocol.

import type { DataDirHolder } from "./data-dir-lock.ts";

export class ConfigError extends Error {
  override readonly name = "ConfigError";
  /** Every problem found, one sentence each, so that a user fixes them all at once. */
  readonly problems: readonly string[];

  constructor(problems: readonly string[]) {
    super(`invalid configuration:\n  - ${problems.join("\n  - ")}`);
    this.problems = problems;
  }
}

export class DataDirError extends Error {
  override readonly name: string = "DataDirError";
}

/** A data directory another live process holds (data-dir-lock.ts). */
export class DataDirInUseError extends DataDirError {
  override readonly name = "DataDirInUseError";
  /** Who holds it, as it said; undefined when it did not answer in time. */
  readonly holder: DataDirHolder | undefined;

  constructor(message: string, holder: DataDirHolder | undefined) {
    super(message);
    this.holder = holder;
  }
}
