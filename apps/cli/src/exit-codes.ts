// The exit codes of the `ballast` command, in a module of their own so that the CLI's
// launcher (cli-bundle.ts) has them without what errors.ts imports.

export const exitCodes = {
  ok: 0,
  /** The operation was tried and failed. */
  failed: 1,
  /** The command line itself is wrong. */
  usage: 2,
  /** The cluster (NATS or the coordinator) could not be reached. */
  unreachable: 3,
  /** A tool the command needs is not installed. */
  missingTool: 4,
  /**
   * `status --check`: some partition of some volume is degraded, unavailable, rebuilding
   * or joining, or some chunk is short of copies or has one on a sled that is down.
   */
  notFullStrength: 5,
} as const;

export type ExitCode = (typeof exitCodes)[keyof typeof exitCodes];
