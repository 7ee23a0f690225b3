// Errors of the runtime itself: configuration that cannot be used, and a data
// directory that belongs to someone else. Faults that cross the bus are BallastErrors
// from @ballast/protocol.

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
  override readonly name = "DataDirError";
}
