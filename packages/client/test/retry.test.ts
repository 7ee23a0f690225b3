// Backoff and the retry loop: the delay schedule with its jitter bounds, what is retried
// and what is not, the step that runs before each retry, and the budget.

import { BallastError, ErrorCode, isBallastError } from "@ballast/protocol";
import { describe, expect, it } from "vitest";
import { type RetryPolicy, retryDelayMs, withRetries } from "../src/retry.ts";
import { VirtualClock } from "./helpers.ts";

function policy(random: number, overrides: Partial<RetryPolicy> = {}): RetryPolicy {
  return {
    retryDelayMsInitial: 50,
    retryDelayMsMax: 2000,
    retryBudgetMs: 60_000,
    random: () => random,
    clock: new VirtualClock(),
    ...overrides,
  };
}

const unavailable = () => new BallastError(ErrorCode.Unavailable, "nobody home");

describe("retryDelayMs", () => {
  it("doubles from the first delay up to the maximum, with half of each delay jittered", () => {
    const retries = [1, 2, 3, 4, 5, 6, 7, 8, 40];
    expect(retries.map((retry) => retryDelayMs(retry, policy(0)))).toEqual([
      25, 50, 100, 200, 400, 800, 1000, 1000, 1000,
    ]);
    expect(retries.map((retry) => retryDelayMs(retry, policy(1)))).toEqual([
      50, 100, 200, 400, 800, 1600, 2000, 2000, 2000,
    ]);
  });

  it("caps the delay after Unavailable and WrongEpoch at the fast maximum, not the others", () => {
    const retries = [1, 3, 5, 6, 8, 40];
    for (const code of [ErrorCode.Unavailable, ErrorCode.WrongEpoch]) {
      expect(retries.map((retry) => retryDelayMs(retry, policy(1), code))).toEqual([
        50, 200, 250, 250, 250, 250,
      ]);
    }
    for (const code of [ErrorCode.NotPrimary, ErrorCode.Timeout, ErrorCode.ShuttingDown]) {
      expect(retries.map((retry) => retryDelayMs(retry, policy(1), code))).toEqual([
        50, 200, 800, 1600, 2000, 2000,
      ]);
    }
    // A configured maximum below the fast one still bounds both.
    expect(retryDelayMs(40, policy(1, { retryDelayMsMax: 100 }), ErrorCode.Unavailable)).toBe(100);
  });

  it("retries a primary that nobody serves every quarter second at most, however long it takes", async () => {
    const clock = new VirtualClock();
    const attemptsAtMs: number[] = [];
    const result = await withRetries(
      {
        describe: () => "test",
        issuedAtMs: 0,
        attempt: async () => {
          attemptsAtMs.push(clock.nowMs());
          if (clock.nowMs() < 5000) throw unavailable();
          return "served";
        },
      },
      policy(1, { clock }),
    );
    expect(result).toBe("served");
    const gaps = attemptsAtMs.slice(1).map((at, index) => at - (attemptsAtMs[index] ?? 0));
    expect(Math.max(...gaps)).toBe(250);
    // The first attempt after the partition is served again comes within the fast maximum.
    expect(attemptsAtMs.at(-1)).toBeLessThan(5000 + 250 + 1);
  });

  it("keeps a random source that strays outside [0, 1) within the bounds", () => {
    expect(retryDelayMs(1, policy(-3))).toBe(25);
    expect(retryDelayMs(1, policy(7))).toBe(50);
  });
});

describe("withRetries", () => {
  it("retries retryable failures, running beforeRetry alongside each delay", async () => {
    const clock = new VirtualClock();
    const failures = [unavailable(), new BallastError(ErrorCode.WrongEpoch, "old epoch")];
    const seen: ErrorCode[] = [];

    const result = await withRetries(
      {
        describe: () => "test",
        issuedAtMs: 0,
        attempt: async () => {
          const failure = failures.shift();
          if (failure !== undefined) throw failure;
          return "done";
        },
        beforeRetry: async (failure) => {
          seen.push(failure.code);
        },
      },
      policy(0.5, { clock }),
    );

    expect(result).toBe("done");
    expect(seen).toEqual([ErrorCode.Unavailable, ErrorCode.WrongEpoch]);
    expect(clock.sleepsMs).toEqual([37.5, 75]);
  });

  it("passes on a non-retryable BallastError and any other error untouched, at once", async () => {
    const outOfRange = new BallastError(ErrorCode.OutOfRange, "too far");
    const bug = new TypeError("a bug");
    for (const thrown of [outOfRange, bug]) {
      const clock = new VirtualClock();
      let attempts = 0;
      const outcome = withRetries(
        {
          describe: () => "test",
          issuedAtMs: 0,
          attempt: async () => {
            attempts += 1;
            throw thrown;
          },
        },
        policy(0.5, { clock }),
      );
      await expect(outcome).rejects.toBe(thrown);
      expect(attempts).toBe(1);
      expect(clock.sleepsMs).toEqual([]);
    }
  });

  it("retries after a retryable failure of beforeRetry, and stops on any other", async () => {
    let attempts = 0;
    const attempt = async () => {
      attempts += 1;
      throw unavailable();
    };
    const gone = new BallastError(ErrorCode.NotFound, "volume deleted");
    const preparations = [unavailable(), gone];

    const outcome = withRetries(
      {
        describe: () => "test",
        issuedAtMs: 0,
        attempt,
        beforeRetry: async () => {
          throw preparations.shift();
        },
      },
      policy(0.5),
    );

    await expect(outcome).rejects.toBe(gone);
    expect(attempts).toBe(2);
  });

  it("fails with Timeout, chaining the last failure, when the next delay would pass the budget", async () => {
    const clock = new VirtualClock();
    clock.nowMsValue = 1000;
    let attempts = 0;

    const outcome = withRetries(
      {
        describe: () => "do the thing",
        issuedAtMs: 1000,
        attempt: async () => {
          attempts += 1;
          throw unavailable();
        },
      },
      policy(0.5, { clock, retryBudgetMs: 300 }),
    );

    const error = await outcome.then(
      () => expect.fail("succeeded"),
      (error: unknown) => error,
    );
    expect(isBallastError(error, ErrorCode.Timeout)).toBe(true);
    expect((error as BallastError).message).toBe(
      "could not do the thing within the retry budget of 300 ms: 4 attempts failed, the last with Unavailable: nobody home",
    );
    expect(isBallastError((error as BallastError).cause, ErrorCode.Unavailable)).toBe(true);
    expect(attempts).toBe(4);
    // 37.5 + 75 + 150 = 262.5; a fourth delay of 300 would end past 1300.
    expect(clock.sleepsMs).toEqual([37.5, 75, 150]);
  });
});
