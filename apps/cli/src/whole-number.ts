// A flag that takes a whole number within bounds: plain decimal digits only (not "0x3",
// "1e3", "2.5" or ""), else a usage error naming the flag and the bounds.

import { CliError, exitCodes } from "./errors.ts";

/** The flag's value, or `fallback` when it was not given. */
export function wholeNumber(
  value: string | boolean | undefined,
  flag: string,
  fallback: number,
  min: number,
  max: number,
): number {
  if (value === undefined) return fallback;
  const number = typeof value === "string" && /^\d+$/.test(value) ? Number(value) : Number.NaN;
  if (!(number >= min && number <= max)) {
    throw new CliError(
      exitCodes.usage,
      `${flag} must be a whole number from ${min} to ${max}, got ${JSON.stringify(value)}`,
    );
  }
  return number;
}
