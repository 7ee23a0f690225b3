// Errors of the command line. Each carries the exit code the process ends with, so that
// scripts can tell a usage mistake from an unreachable cluster from a failed operation.

import { BallastError, ErrorCode } from "@ballast/protocol";
import { type ExitCode, exitCodes } from "./exit-codes.ts";

export { type ExitCode, exitCodes } from "./exit-codes.ts";

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

export { BundleError } from "./bundles.ts";
