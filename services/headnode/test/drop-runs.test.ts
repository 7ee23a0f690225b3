// The drops of one incarnation (drop-runs.ts): one runs, duplicates share its answer up
// to a bound, and one past it is answered at once.

import { describe, expect, test } from "vitest";
import { DropRuns } from "../src/drop-runs.ts";

function runsOf(joinedMax: number) {
  const runs = new DropRuns<string>({
    joinedMax,
    busy: (key) => new Error(`${key}: busy`),
  });
  let ran = 0;
  let finish: (outcome: string | Error) => void = () => {};
  // Each run waits until finished by the test, as a drop behind a hung configure does.
  const run = () => {
    ran++;
    return new Promise<string>((resolve, reject) => {
      finish = (outcome) => (outcome instanceof Error ? reject(outcome) : resolve(outcome));
    });
  };
  return { runs, run, ran: () => ran, finish: (outcome: string | Error) => finish(outcome) };
}

const answerOf = (promise: Promise<string>) =>
  promise.then(
    (answer) => answer,
    (error: Error) => error.message,
  );

describe("DropRuns", () => {
  test("duplicates share the running drop's answer; past joinedMax they are answered at once", async () => {
    const { runs, run, ran, finish } = runsOf(2);
    const answers = [1, 2, 3, 4].map(() => answerOf(runs.submit("vol/1-a", run)));
    expect(ran()).toBe(1);
    expect(await answers[3]).toBe("vol/1-a: busy");
    finish("dropped 1");
    expect(await Promise.all(answers.slice(0, 3))).toEqual(["dropped 1", "dropped 1", "dropped 1"]);
    expect(runs.size).toBe(0);
  });

  test("a failed drop is every sharer's answer, and the next one runs afresh", async () => {
    const { runs, run, ran, finish } = runsOf(1);
    const answers = [1, 2].map(() => answerOf(runs.submit("vol/1-a", run)));
    finish(new Error("disk full"));
    expect(await Promise.all(answers)).toEqual(["disk full", "disk full"]);
    const again = answerOf(runs.submit("vol/1-a", run));
    expect(ran()).toBe(2);
    finish("dropped 0");
    expect(await again).toBe("dropped 0");
  });

  test("another incarnation's drop neither shares nor is turned away", async () => {
    const { runs, run, ran } = runsOf(0);
    void answerOf(runs.submit("vol/1-a", run));
    void answerOf(runs.submit("vol/2-b", run));
    expect(ran()).toBe(2);
    expect(runs.size).toBe(2);
    expect(await answerOf(runs.submit("vol/1-a", run))).toBe("vol/1-a: busy");
  });

  test("a run that throws before it waits is an answer, not an exception of submit", async () => {
    const runs = new DropRuns<string>({ joinedMax: 1, busy: () => new Error("busy") });
    const answer = runs.submit("vol/1-a", () => {
      throw new Error("bad state");
    });
    await expect(answer).rejects.toThrow("bad state");
  });
});
