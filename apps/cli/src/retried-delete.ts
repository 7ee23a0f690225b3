// A delete sent to the coordinator, retried when its outcome is unknown. A delete whose
// answer never came (a timeout, a leader that died after acting, a reply lost on the
// way) or that answered a retryable failure (Unavailable, ShuttingDown) may have been
// applied all the same, and asking again then answers NotFound: the object is gone.
//
// The rule, which the README states for every client of the wire ("Retried deletes"): a
// NotFound that answers a retry of a delete, after an attempt whose outcome was unknown,
// means the object is gone, which is what the delete asked for, so the delete succeeded.
// A NotFound to the first attempt is still an error: nothing of that name existed. The
// coordinator keeps no memory of finished deletes (no control request carries a request
// id, and a memory in the leader would not outlive the failover that is one cause of a
// lost answer); only the client knows that it is retrying, so the rule is the client's,
// as it is for a create, whose retry answers AlreadyExists naming the id it recorded.

import { ErrorCode, isBallastError } from "@ballast/protocol";
import { deleteAttemptsMax, deleteRetryDelayMs } from "./constants.ts";

export interface DeleteRetryPolicy {
  attemptsMax: number;
  delayMs: number;
  sleep: (ms: number) => Promise<void>;
}

export const deleteRetryPolicyDefault: DeleteRetryPolicy = {
  attemptsMax: deleteAttemptsMax,
  delayMs: deleteRetryDelayMs,
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};

/**
 * What became of a delete: `deleted` with the coordinator's answer, or `goneBefore`
 * when a retry found the object gone after an attempt whose outcome was unknown.
 */
export type DeleteOutcome<T> = { kind: "deleted"; answer: T } | { kind: "goneBefore" };

/**
 * Runs `attempt` (one delete request) until it answers, fails for good, or
 * `policy.attemptsMax` attempts failed with retryable errors (the last one is thrown).
 */
export async function deleteRetried<T>(
  attempt: () => Promise<T>,
  policy: DeleteRetryPolicy = deleteRetryPolicyDefault,
): Promise<DeleteOutcome<T>> {
  for (let attempts = 1; ; attempts++) {
    try {
      return { kind: "deleted", answer: await attempt() };
    } catch (error) {
      if (attempts > 1 && isBallastError(error, ErrorCode.NotFound)) return { kind: "goneBefore" };
      if (!isBallastError(error) || !error.retryable || attempts >= policy.attemptsMax) throw error;
    }
    await policy.sleep(policy.delayMs);
  }
}
