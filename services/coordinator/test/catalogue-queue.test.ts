// The leader's queue of catalogue changes (catalogue-queue.ts): one at a time, in order,
// and nothing queued under a tenure that lost the leadership before its turn runs.

import { ErrorCode } from "@ballast/protocol";
import { expect, test } from "vitest";
import { CatalogueQueue } from "../src/catalogue-queue.ts";

test("changes run one at a time, in the order they were queued", async () => {
  const tenure = { term: 1 };
  const queue = new CatalogueQueue(() => tenure, "coordinator-1");
  const ran: string[] = [];
  let releaseFirst!: () => void;
  const first = queue.run(tenure, async () => {
    ran.push("first began");
    await new Promise<void>((resolve) => {
      releaseFirst = resolve;
    });
    ran.push("first ended");
  });
  const second = queue.run(tenure, async () => {
    ran.push("second");
  });
  await new Promise((resolve) => setImmediate(resolve));
  expect(ran).toEqual(["first began"]);
  releaseFirst();
  await Promise.all([first, second]);
  expect(ran).toEqual(["first began", "first ended", "second"]);
});

test("work queued under a tenure that lost the leadership is refused, not run", async () => {
  const lost = { term: 1 };
  let current: { term: number } | undefined = lost;
  const queue = new CatalogueQueue(() => current, "coordinator-1");
  const ran: string[] = [];
  let releaseFirst!: () => void;
  const first = queue.run(lost, async () => {
    ran.push("first");
    await new Promise<void>((resolve) => {
      releaseFirst = resolve;
    });
  });
  const queued = [1, 2, 3].map((index) =>
    queue.run(lost, async () => {
      ran.push(`queued ${index}`);
    }),
  );
  await new Promise((resolve) => setImmediate(resolve));
  // The leadership goes while the first change runs; a new tenure leads later.
  current = undefined;
  releaseFirst();
  await first;
  for (const refused of queued) {
    await expect(refused).rejects.toMatchObject({ code: ErrorCode.Unavailable });
  }
  expect(ran).toEqual(["first"]);
  // The next tenure's work runs: the queue is not stuck on the refusals.
  const next = { term: 2 };
  current = next;
  await queue.run(next, async () => {
    ran.push("next tenure");
  });
  expect(ran).toEqual(["first", "next tenure"]);
});
