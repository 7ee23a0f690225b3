// What a partition host reports for its primary after its ticks have been held back
// (held-ticks.ts): a lone primary driven as the head node drives it (test-primary.ts).

import { afterEach, beforeEach, expect, test } from "vitest";
import type { PartitionHost } from "../src/partition-host.ts";
import { TestPrimary } from "./test-primary.ts";

let primary: TestPrimary;
let host: PartitionHost;

beforeEach(async () => {
  primary = await TestPrimary.open("ballast-host-report-", ["sled-1", "sled-2"]);
  host = primary.host;
});

afterEach(async () => {
  await primary.close();
});

test("an idle primary reports the space figures of its last writes, not those before them", async () => {
  await primary.writeFlushed(0, 1);
  await control(() => host.snapshotControl("take", "s-1"));
  // Shared whole with the volume: deleting it would free nothing.
  expect(host.report()?.snapshotBytes).toEqual([{ snapshot: "s-1", uniqueBytes: 0 }]);

  // An overwrite, flushed to a chunk of its own: the snapshot now holds the old block
  // alone. Within seconds of the last count, so the report may still show that one.
  await primary.writeFlushed(0, 2);
  // Then the volume is idle: the host is asked only when due, and its core's count
  // stands still while the node ticks on, for longer than the figures' refresh.
  // Asked at most for its looks for chunks to drop and compaction victims (within
  // dropIntervalTicks and compactionIntervalTicks, 50), which find nothing; then never.
  expect(idleFor(1000)).toBeLessThanOrEqual(3);
  const report = host.report();
  expect(report?.snapshotBytes).toEqual([{ snapshot: "s-1", uniqueBytes: 4096 }]);
  expect(report?.liveBytes).toBe(8192);
  expect(host.status().snapshotBytes).toEqual([{ snapshot: "s-1", uniqueBytes: 4096 }]);
});

/**
 * `ticks` node ticks of an idle host (nothing in flight, so no I/O to wait for); returns
 * how many times it was asked.
 */
function idleFor(ticks: number): number {
  let asked = 0;
  for (let tick = 0; tick < ticks; tick++) {
    primary.now++;
    if (primary.now < primary.due) continue;
    asked++;
    primary.due = host.tick(primary.now);
  }
  return asked;
}

test("a snapshot rotation on an idle volume shows in the next report, with no write after it", async () => {
  await primary.writeFlushed(0, 1);
  await control(() => host.snapshotControl("take", "s-1"));
  expect(host.report()?.snapshotBytes).toEqual([{ snapshot: "s-1", uniqueBytes: 0 }]);
  await primary.writeFlushed(0, 2);
  // Rotation, seconds apart at most: a new one, then the oldest deleted.
  await control(() => host.snapshotControl("take", "s-2"));
  expect(host.report()?.snapshotBytes).toEqual([
    { snapshot: "s-1", uniqueBytes: 4096 },
    { snapshot: "s-2", uniqueBytes: 0 },
  ]);
  await control(() => host.snapshotControl("drop", "s-1"));
  const report = host.report();
  expect(report?.snapshotBytes).toEqual([{ snapshot: "s-2", uniqueBytes: 0 }]);
  // The block only s-1 held is no longer live (it is freed by a later flush record).
  expect(report?.liveBytes).toBe(4096);
  // A rollback replaces the volume's tree: the snapshot shares it whole again.
  await primary.writeFlushed(0, 3);
  await control(() => host.rollbackSnapshot("s-2"));
  expect(host.report()).toMatchObject({
    liveBytes: 4096,
    snapshotBytes: [{ snapshot: "s-2", uniqueBytes: 0 }],
  });
});

/** Runs a snapshot control request to its answer, ticking the node meanwhile. */
async function control(run: () => Promise<unknown>): Promise<void> {
  let answered = false;
  void run().then(() => {
    answered = true;
  });
  await primary.until(() => answered);
}
