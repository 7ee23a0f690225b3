// Errors of the command line. Each carries the exit code the process ends with, so that
// scripts can tell a usage mistake from an unreachable cluster from a failed operation.

import { BallastError, ErrorCode } from "@ballast/protocol";

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
  /** `status --check`: some partition of some volume is degraded, rebuilding or joining. */
  notFullStrength: 5,
} as const;

export type ExitCode = (typeof exitCodes)[keyof typeof exitCodes];

export class CliError extends Error {
  override readonly name = "CliError";
  readonly exitCode: ExitCode;

  constructor(exitCode: ExitCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.exitCode = exitCode;
  }
}

/**
 * A failure of a request to the cluster as the command's error: Unavailable and Timeout
 * mean the cluster could not be reached (exit 3), any other BallastError that the
 * operation failed (exit 1); anything else is returned as it is.
 */
export function cliErrorOf(error: unknown): unknown {
  if (!(error instanceof BallastError)) return error;
  const code =
    error.code === ErrorCode.Unavailable || error.code === ErrorCode.Timeout
      ? exitCodes.unreachable
      : exitCodes.failed;
  return new CliError(code, `${error.code}: ${error.message}`, { cause: error });
}

/** Entry points could not be bundled, or the bundles could not be written. */
export class BundleError extends Error {
  override readonly name = "BundleError";
}
