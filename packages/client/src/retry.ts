// Retrying a request after a retryable failure: bounded, jittered exponential backoff
// under a total budget per operation.
//
// Model: an attempt either succeeds, fails with a BallastError whose code is retryable
// (WrongEpoch, NotPrimary, Timeout, Unavailable, ShuttingDown, Superseded: the same
// request may succeed later, perhaps at another primary), or fails for good (anything else, which
// is passed on untouched). Before each retry the caller's `beforeRetry` runs alongside
// the delay (the volume uses it to re-describe itself and learn the new epoch); a
// retryable failure of that step is only a reason to try again, while any other failure
// ends the operation with that error.
//
// Delays: the n-th retry waits a ceiling of `retryDelayMsInitial · 2^(n-1)`, capped at
// `retryDelayMsMax`, of which half is fixed and half drawn at random ("equal jitter"):
// clients that failed together spread out, and none hammers a primary that is still
// being elected. A failure that no primary answered (Unavailable) or that a serving
// primary answered with a newer epoch (WrongEpoch) or refused as overtaken by a later
// attempt of the same client (Superseded) is capped lower, at
// `retryDelayMsFastMax`: waiting longer there only lengthens a failover's outage. When the next delay would end past the budget (counted from when the
// operation was issued), the operation fails with a Timeout-coded BallastError that
// names the attempts made and chains the last failure as its cause. The budget bounds
// when the last attempt may start, so an operation fails at most one request deadline
// after its budget ends.

import { BallastError, ErrorCode, isBallastError } from "@ballast/protocol";
import { retryDelayMsFastMax } from "./constants.ts";
import type { ClientOptions } from "./options.ts";

export type RetryPolicy = Pick<
  ClientOptions,
  "retryDelayMsInitial" | "retryDelayMsMax" | "retryBudgetMs" | "random" | "clock"
>;

/** Failures retried after at most `retryDelayMsFastMax` (above). */
const retriedFast: ReadonlySet<ErrorCode> = new Set([
  ErrorCode.Unavailable,
  ErrorCode.WrongEpoch,
  ErrorCode.Superseded,
]);

/**
 * The delay before retry number `retry` (1 for the first retry), jitter included, after a
 * failure with code `after` (the slower schedule when not given).
 */
export function retryDelayMs(retry: number, policy: RetryPolicy, after?: ErrorCode): number {
  const maxMs =
    after !== undefined && retriedFast.has(after)
      ? Math.min(policy.retryDelayMsMax, retryDelayMsFastMax)
      : policy.retryDelayMsMax;
  const ceilingMs = Math.min(maxMs, policy.retryDelayMsInitial * 2 ** Math.max(0, retry - 1));
  // Clamp the draw, so that a careless random source cannot make a delay negative or
  // longer than its ceiling.
  const draw = Math.min(1, Math.max(0, policy.random()));
  return ceilingMs / 2 + (ceilingMs / 2) * draw;
}

export interface RetryTask<T> {
  /** Says what is being done, for the error when the budget runs out ("write 3 ranges …"). */
  describe(): string;
  /** When the oldest operation this task serves was issued, on the policy's clock. */
  readonly issuedAtMs: number;
  /** One attempt. */
  attempt(): Promise<T>;
  /** Runs alongside the delay after a retryable failure, before the next attempt. */
  beforeRetry?(failure: BallastError): Promise<void>;
}

/** Runs `task.attempt` until it succeeds, fails for good, or the budget runs out. */
export async function withRetries<T>(task: RetryTask<T>, policy: RetryPolicy): Promise<T> {
  const deadlineMs = task.issuedAtMs + policy.retryBudgetMs;
  let attempts = 0;
  for (;;) {
    let failure: BallastError;
    try {
      attempts += 1;
      return await task.attempt();
    } catch (error) {
      if (!isBallastError(error) || !error.retryable) throw error;
      failure = error;
    }
    const delayMs = retryDelayMs(attempts, policy, failure.code);
    if (policy.clock.nowMs() + delayMs > deadlineMs) {
      throw retryBudgetExhausted(task.describe(), attempts, policy.retryBudgetMs, failure);
    }
    const preparation =
      task.beforeRetry === undefined
        ? undefined
        : task.beforeRetry(failure).then(
            () => undefined,
            (error: unknown) => ({ error }),
          );
    const [, prepared] = await Promise.all([policy.clock.sleep(delayMs), preparation]);
    if (prepared !== undefined && !(isBallastError(prepared.error) && prepared.error.retryable)) {
      throw prepared.error;
    }
  }
}

function retryBudgetExhausted(
  description: string,
  attempts: number,
  retryBudgetMs: number,
  failure: BallastError,
): BallastError {
  return new BallastError(
    ErrorCode.Timeout,
    `could not ${description} within the retry budget of ${retryBudgetMs} ms: ${attempts} attempts failed, the last with ${failure.code}: ${failure.message}`,
    {
      cause: failure,
      details: { attempts, retryBudgetMs, lastCode: failure.code },
    },
  );
}
