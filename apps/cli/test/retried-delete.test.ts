// A delete the CLI sends to the coordinator, against a fake coordinator that holds one
// snapshot: a retry after an attempt whose answer was lost once the delete applied
// finds it gone, and that counts as deleted; NotFound to a first attempt is still an
// error, and retries stop at the policy's bound or at a failure that is not retryable.

import { BallastError, ErrorCode } from "@ballast/protocol";
import { describe, expect, test } from "vitest";
import { type DeleteRetryPolicy, deleteRetried } from "../src/retried-delete.ts";

const policy: DeleteRetryPolicy = { attemptsMax: 3, delayMs: 1000, sleep: async () => {} };

/** A fake coordinator's delete of snapshot `disk@first`; `loseAnswers` answers lost. */
function fakeCoordinator(loseAnswers: number) {
  const snapshots = new Set(["first"]);
  let attempts = 0;
  const deleteSnapshot = async (name: string) => {
    attempts++;
    if (!snapshots.has(name)) {
      throw new BallastError(ErrorCode.NotFound, `volume disk has no snapshot named ${name}`);
    }
    snapshots.delete(name);
    // The removal landed; the answer did not reach the client.
    if (attempts <= loseAnswers) throw new BallastError(ErrorCode.Timeout, "no answer in time");
    return { deleted: true as const };
  };
  return { snapshots, deleteSnapshot, attempts: () => attempts };
}

describe("a delete retried by the CLI", () => {
  test("a retry that finds the snapshot gone after a lost answer counts as deleted", async () => {
    const coordinator = fakeCoordinator(1);
    const outcome = await deleteRetried(() => coordinator.deleteSnapshot("first"), policy);
    expect(outcome).toEqual({ kind: "goneBefore" });
    expect(coordinator.attempts()).toBe(2);
    expect(coordinator.snapshots.size).toBe(0);
  });

  test("an answered delete is passed on as it is", async () => {
    const coordinator = fakeCoordinator(0);
    const outcome = await deleteRetried(() => coordinator.deleteSnapshot("first"), policy);
    expect(outcome).toEqual({ kind: "deleted", answer: { deleted: true } });
    expect(coordinator.attempts()).toBe(1);
  });

  test("NotFound to the first attempt is an error: nothing of that name existed", async () => {
    const coordinator = fakeCoordinator(0);
    await expect(
      deleteRetried(() => coordinator.deleteSnapshot("typo"), policy),
    ).rejects.toMatchObject({ code: ErrorCode.NotFound });
    expect(coordinator.attempts()).toBe(1);
  });

  test("retryable failures are retried up to the bound, after the policy's pause, then thrown", async () => {
    const pauses: number[] = [];
    let attempts = 0;
    const failing = deleteRetried(
      async () => {
        attempts++;
        throw new BallastError(ErrorCode.Unavailable, `no leader (attempt ${attempts})`);
      },
      { ...policy, sleep: async (ms) => void pauses.push(ms) },
    );
    await expect(failing).rejects.toThrow("no leader (attempt 3)");
    expect(attempts).toBe(3);
    expect(pauses).toEqual([1000, 1000]);
  });

  test("a failure that is not retryable is thrown at once", async () => {
    let attempts = 0;
    await expect(
      deleteRetried(async () => {
        attempts++;
        throw new BallastError(ErrorCode.InvalidArgument, "snapshot first of disk has clones");
      }, policy),
    ).rejects.toMatchObject({ code: ErrorCode.InvalidArgument });
    expect(attempts).toBe(1);
  });
});
