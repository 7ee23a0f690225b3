// The write pipeline of `ballast write` and `import`: after one write fails, no later
// write starts, and no failure goes unobserved (an unhandled rejection ends the CLI with
// a stack trace instead of its error).

import { expect, test } from "vitest";
import { recordUnhandledRejections } from "../../../test/support/unhandled-rejections.ts";
import { Pipeline } from "../src/pipeline.ts";

const unhandled = recordUnhandledRejections();

const turns = async (n: number) => {
  for (let i = 0; i < n; i += 1) await new Promise((resolve) => setImmediate(resolve));
};

test("after a failure, add throws it without starting the next operation", async () => {
  const pipeline = new Pipeline(8);
  const started: number[] = [];
  const failing = (n: number) => () => {
    started.push(n);
    return new Promise<void>((_, reject) =>
      setImmediate(() => reject(new Error(`write ${n} failed`))),
    );
  };
  await pipeline.add(failing(1));
  await turns(2);
  // The shape CI met: the input loop starts the next write, which the volume refuses a
  // moment later, while the pipeline reports the first failure.
  await expect(pipeline.add(failing(2))).rejects.toThrow("write 1 failed");
  await turns(3);
  expect(started).toEqual([1]);
  expect(unhandled).toEqual([]);
  await pipeline.settled();
});

test("failures of operations in flight are observed; drain throws the first", async () => {
  const pipeline = new Pipeline(8);
  const gates: Array<(error?: Error) => void> = [];
  const gated = () =>
    new Promise<void>((resolve, reject) =>
      gates.push((error) => (error === undefined ? resolve() : reject(error))),
    );
  for (let i = 0; i < 3; i += 1) await pipeline.add(gated);
  gates[1]!(new Error("second"));
  gates[2]!(new Error("third"));
  gates[0]!();
  await expect(pipeline.drain()).rejects.toThrow("second");
  await turns(2);
  expect(unhandled).toEqual([]);
});

test("a start that throws is a failure of the pipeline, not an exception out of add", async () => {
  const pipeline = new Pipeline(2);
  await pipeline.add(() => {
    throw new Error("refused at once");
  });
  await expect(pipeline.drain()).rejects.toThrow("refused at once");
});

test("add waits while inflightMax operations are in flight", async () => {
  const pipeline = new Pipeline(2);
  const gates: Array<() => void> = [];
  const gated = () => new Promise<void>((resolve) => gates.push(resolve));
  await pipeline.add(gated);
  let secondReturned = false;
  const second = pipeline.add(gated).then(() => {
    secondReturned = true;
  });
  await turns(2);
  expect(secondReturned).toBe(false);
  gates[0]!();
  await second;
  expect(secondReturned).toBe(true);
  gates[1]!();
  await pipeline.drain();
});
