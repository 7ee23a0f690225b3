// Assertions for the programmer's invariants of the tree. Each helper builds its message
// only when it fails, so that a hot path (an insert, a lookup) pays for the comparison
// and nothing else.

import { BtreeAssertionError } from "./errors.ts";

/** Throws a BtreeAssertionError with `message` unless `condition` holds. */
export function assert(condition: boolean, message: string): asserts condition {
  if (!condition) {
    throw new BtreeAssertionError(message);
  }
}

/**
 * Throws a BtreeAssertionError with `message`. For checks written as `if (broken) fail(…)`
 * so that a message with values in it is built only when the check fails.
 */
export function fail(message: string): never {
  throw new BtreeAssertionError(message);
}

/** Asserts that `value` is a safe integer in [minimum, maximum]; `name` says which argument. */
export function assertIntegerInRange(
  value: number,
  name: string,
  minimum: number,
  maximum: number,
): void {
  if (!Number.isSafeInteger(value) || value < minimum || value > maximum) {
    throw new BtreeAssertionError(
      `${name} must be an integer from ${minimum} to ${maximum}, got ${describeValue(value)}`,
    );
  }
}

/** A value for a message; never throws, whatever a careless caller passed. */
function describeValue(value: unknown): string {
  return typeof value === "number" ? String(value) : typeof value;
}
