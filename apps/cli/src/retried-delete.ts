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
//
// A NotFound to a retry is done only if it is about the object the first attempt meant:
// the volume may have been deleted by that attempt and created again by someone else
// before the retry, and a delete by name alone then deleted the new one and said
// "deleted". So `deleteVolume` and `deleteSnapshot` read the object's id (the volume's
// incarnation, the snapshot's id) before the first attempt and name it in every
// attempt; the coordinator refuses (NotFound) a delete whose id is not the current one
// of the name, which deletes nothing. A snapshot that is not listed (none of the name,
// or one a delete cut off halfway marked, which a delete of its name finishes) is sent
// by name once, never retried: a retry could find another snapshot taken since.

import { ErrorCode, isBallastError, type MessageOf, type ResultOf } from "@ballast/protocol";
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

/** The requests a delete sends the coordinator. */
type DeleteRequestType =
  | "volume.describe.v1"
  | "volume.delete.v1"
  | "snapshot.list.v1"
  | "snapshot.delete.v1";

/** Sends one request to the coordinator (the CLI's bus, or a test's fake) and answers its result. */
export type AskCoordinator = <T extends DeleteRequestType>(
  message: MessageOf<T>,
) => Promise<ResultOf<T>>;

/**
 * Deletes volume `name`, the incarnation that holds the name when it starts (read first,
 * retried as a delete is): a retry after an unknown outcome never deletes another one
 * created since (see the module header). `force`: even while attached.
 */
export async function deleteVolume(
  ask: AskCoordinator,
  name: string,
  policy: DeleteRetryPolicy = deleteRetryPolicyDefault,
  force = false,
): Promise<DeleteOutcome<ResultOf<"volume.delete.v1">>> {
  const { id } = await readRetried(() => ask({ type: "volume.describe.v1", name }), policy);
  return deleteRetried(
    () =>
      ask({
        type: "volume.delete.v1",
        name,
        ...(id === undefined ? {} : { id }),
        ...(force ? { force: true } : {}),
      }),
    policy,
  );
}

/**
 * Deletes snapshot `name` of `volume`, the one listed under the name when it starts: a
 * retry never deletes another taken since. One not listed is sent by name, once.
 */
export async function deleteSnapshot(
  ask: AskCoordinator,
  volume: string,
  name: string,
  policy: DeleteRetryPolicy = deleteRetryPolicyDefault,
): Promise<DeleteOutcome<ResultOf<"snapshot.delete.v1">>> {
  const { snapshots } = await readRetried(() => ask({ type: "snapshot.list.v1", volume }), policy);
  const id = snapshots.find((snapshot) => snapshot.name === name)?.id;
  if (id === undefined) {
    return deleteRetried(() => ask({ type: "snapshot.delete.v1", volume, name }), {
      ...policy,
      attemptsMax: 1,
    });
  }
  return deleteRetried(() => ask({ type: "snapshot.delete.v1", volume, name, id }), policy);
}

/**
 * Runs `read` until it answers, fails for good (a NotFound included: nothing of that
 * name), or `policy.attemptsMax` attempts failed with retryable errors.
 */
async function readRetried<T>(read: () => Promise<T>, policy: DeleteRetryPolicy): Promise<T> {
  for (let attempts = 1; ; attempts++) {
    try {
      return await read();
    } catch (error) {
      if (!isBallastError(error) || !error.retryable || attempts >= policy.attemptsMax) throw error;
    }
    await policy.sleep(policy.delayMs);
  }
}
