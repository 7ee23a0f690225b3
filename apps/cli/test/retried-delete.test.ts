// A delete the CLI sends to the coordinator, against a fake coordinator that holds one
// snapshot: a retry after an attempt whose answer was lost once the delete applied
// finds it gone, and that counts as deleted; NotFound to a first attempt is still an
// error, and retries stop at the policy's bound or at a failure that is not retryable.
// The CLI's volume and snapshot deletes name the id they read first, so a retry never
// deletes what was created again under the name after a lost answer.

import { BallastError, ErrorCode } from "@ballast/protocol";
import { describe, expect, test } from "vitest";
import {
  type AskCoordinator,
  type DeleteRetryPolicy,
  deleteRetried,
  deleteSnapshot,
  deleteVolume,
} from "../src/retried-delete.ts";

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

/**
 * A fake coordinator (the CLI's bus, unit) holding volume `disk` and its snapshot
 * `first`, as the real one answers `volume.describe.v1`, `snapshot.list.v1` and the
 * deletes (an `id` that is not the current one of the name: NotFound, nothing deleted).
 * `lostAnswers`: deletes whose removal lands and whose answer is lost.
 */
function fakeBus(lostAnswers: number) {
  const volumes = new Map([["disk", "1-aaaaaaaaaaaa"]]);
  const snapshots = new Map([["first", "sid-1"]]);
  const sent: Record<string, unknown>[] = [];
  let lost = lostAnswers;
  const notFound = (what: string) => new BallastError(ErrorCode.NotFound, `no ${what}`);
  const answerLost = () => {
    if (lost === 0) return false;
    lost--;
    return true;
  };
  const ask = (async (message: Record<string, unknown> & { type: string }) => {
    sent.push(message);
    switch (message.type) {
      case "volume.describe.v1": {
        const id = volumes.get(message.name as string);
        if (id === undefined) throw notFound(`volume named ${message.name}`);
        return { name: message.name, id };
      }
      case "volume.delete.v1": {
        const id = volumes.get(message.name as string);
        if (id === undefined || (message.id !== undefined && message.id !== id)) {
          throw notFound(`volume named ${message.name}`);
        }
        volumes.delete(message.name as string);
        if (answerLost()) throw new BallastError(ErrorCode.Timeout, "no answer in time");
        return { name: message.name, deleted: true };
      }
      case "snapshot.list.v1":
        return { snapshots: [...snapshots].map(([name, id]) => ({ volume: "disk", name, id })) };
      case "snapshot.delete.v1": {
        const id = snapshots.get(message.name as string);
        if (id === undefined || (message.id !== undefined && message.id !== id)) {
          throw notFound(`snapshot named ${message.name}`);
        }
        snapshots.delete(message.name as string);
        if (answerLost()) throw new BallastError(ErrorCode.Timeout, "no answer in time");
        return { deleted: true };
      }
      default:
        throw new Error(`unexpected ${message.type}`);
    }
  }) as unknown as AskCoordinator;
  return { volumes, snapshots, sent, ask };
}

describe("a retried delete never deletes what was created again under the name (review-retries item 2)", () => {
  test("volume: the incarnation created between the lost answer and the retry survives", async () => {
    const bus = fakeBus(1);
    // Someone creates the volume again while the CLI waits to retry.
    const recreating: DeleteRetryPolicy = {
      ...policy,
      sleep: async () => void bus.volumes.set("disk", "2-bbbbbbbbbbbb"),
    };
    const outcome = await deleteVolume(bus.ask, "disk", recreating);
    expect(outcome).toEqual({ kind: "goneBefore" });
    expect(bus.volumes.get("disk")).toBe("2-bbbbbbbbbbbb");
    expect(bus.sent.filter((message) => message.type === "volume.delete.v1")).toEqual([
      { type: "volume.delete.v1", name: "disk", id: "1-aaaaaaaaaaaa" },
      { type: "volume.delete.v1", name: "disk", id: "1-aaaaaaaaaaaa" },
    ]);
  });

  test("snapshot: the one taken between the lost answer and the retry survives", async () => {
    const bus = fakeBus(1);
    const retaking: DeleteRetryPolicy = {
      ...policy,
      sleep: async () => void bus.snapshots.set("first", "sid-2"),
    };
    expect(await deleteSnapshot(bus.ask, "disk", "first", retaking)).toEqual({
      kind: "goneBefore",
    });
    expect(bus.snapshots.get("first")).toBe("sid-2");
  });

  test("an answered delete names the incarnation it read, and is passed on", async () => {
    const bus = fakeBus(0);
    expect(await deleteVolume(bus.ask, "disk", policy)).toEqual({
      kind: "deleted",
      answer: { name: "disk", deleted: true },
    });
    expect(await deleteSnapshot(bus.ask, "disk", "first", policy)).toEqual({
      kind: "deleted",
      answer: { deleted: true },
    });
    expect(bus.volumes.size + bus.snapshots.size).toBe(0);
  });

  test("nothing of the name: NotFound, and no delete sent for a volume", async () => {
    const bus = fakeBus(0);
    await expect(deleteVolume(bus.ask, "typo", policy)).rejects.toMatchObject({
      code: ErrorCode.NotFound,
    });
    expect(bus.sent.map((message) => message.type)).toEqual(["volume.describe.v1"]);
    // A snapshot not listed is asked for by name, once (a delete cut off halfway is
    // finished that way): NotFound here.
    await expect(deleteSnapshot(bus.ask, "disk", "typo", policy)).rejects.toMatchObject({
      code: ErrorCode.NotFound,
    });
    expect(bus.sent.at(-1)).toEqual({ type: "snapshot.delete.v1", volume: "disk", name: "typo" });
  });
});
