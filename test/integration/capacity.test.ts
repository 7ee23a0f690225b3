// Capacity you can see, on real processes: `ballast status --json` shows each sled's
// capacity, usage and objects and the cluster totals, and each head node its slow sleds
// (none here); after a volume is written and flushed, the sleds' used bytes have grown,
// and the volume's stored bytes (its incarnation's chunks over every copy, from each
// sled's chunk listing) are above zero, equal to the sum of the per-sled shares, and
// within what each sled's usage grew by. A sled that stops answering makes the stored
// totals omitted with a reason, never the status fail. Every wait is bounded.

import { randomBytes } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { ResultOf } from "@ballast/protocol";
import { afterAll, beforeAll, expect, test } from "vitest";
import { runCli } from "../support/cli.ts";
import { startTestCluster, type TestCluster, waitFor } from "../support/cluster.ts";

type Status = ResultOf<"cluster.status.v1">;
type Volume = ResultOf<"volume.describe.v1">;

const mebibyte = 1024 * 1024;
let cluster: TestCluster;
let nats: string[];

beforeAll(async () => {
  cluster = await startTestCluster({ headNodes: 3, sleds: 3 });
  nats = ["--nats", cluster.cluster.natsUrl];
});
afterAll(() => cluster?.stop());

async function status(): Promise<Status> {
  const result = await runCli(["status", "--json", ...nats]);
  expect(result.stderr).toBe("");
  expect(result.code).toBe(0);
  return JSON.parse(result.stdout) as Status;
}

const sledsOf = (state: Status) => state.services.filter((service) => service.kind === "sled");
const volumeOf = (state: Status, name: string) =>
  state.volumes.find((volume) => volume.name === name) as Volume | undefined;

test("status shows sled capacity, and a written volume's stored bytes on the sleds", async () => {
  const before = await status();
  expect(sledsOf(before)).toHaveLength(3);
  for (const sled of sledsOf(before)) {
    expect(sled.capacityError).toBeUndefined();
    const capacity = sled.capacity!;
    expect(capacity.capacityBytes).toBeGreaterThan(0);
    expect(capacity.usedBytes + capacity.freeBytes).toBe(capacity.capacityBytes);
    expect(capacity.failedDevices).toEqual([]);
  }
  expect(before.capacity).toMatchObject({ sleds: 3, sledsUnanswered: 0, failedDevices: 0 });
  // Each head node's slow sleds reach its entry (none yet: no data I/O has been done).
  const headNodes = before.services.filter((service) => service.kind === "headnode");
  expect(headNodes).toHaveLength(3);
  for (const headNode of headNodes) {
    expect(headNode.slowSleds).toEqual({ slow: [], hedgedReads: 0, hedgedWrites: 0, holds: [] });
  }
  expect(before.capacity!.capacityBytes).toBe(
    sledsOf(before).reduce((total, sled) => total + sled.capacity!.capacityBytes, 0),
  );
  const usedBefore = new Map(sledsOf(before).map((sled) => [sled.id, sled.capacity!.usedBytes]));

  const created = await runCli([
    "volume",
    "create",
    "cap",
    "--size",
    "8MiB",
    "--partition-size",
    "4MiB",
    "--replicas",
    "2",
    ...nats,
  ]);
  expect(created.stderr).toBe("");
  expect(created.code).toBe(0);
  const image = join(cluster.dataDir, "cap.raw");
  const written = 3 * mebibyte;
  await writeFile(image, randomBytes(written));
  const imported = await runCli(["import", "cap", image, ...nats]);
  expect(imported.code).toBe(0);
  expect(imported.stderr).toContain("flushed");

  // Flushed data reaches the sleds as chunks; wait until at least one copy is there,
  // and until a status shows each sled's count no lower than its listing: a status asks
  // every sled for its totals and its listing at once, so a chunk that lands between the
  // two answers is in the listing only (seen once in CI under load).
  const after = await waitFor(
    "the volume's stored bytes to cover what was written",
    async () => {
      const state = await status();
      const stored = volumeOf(state, "cap")?.stored;
      const settled = sledsOf(state).every(
        (sled) =>
          (sled.capacity?.chunks ?? 0) >=
          (stored?.sleds.find((share) => share.sled === sled.id)?.chunks ?? 0),
      );
      return stored?.bytes !== undefined && stored.bytes >= written && settled ? state : undefined;
    },
    30_000,
    500,
  );
  const stored = volumeOf(after, "cap")!.stored!;
  expect(stored.reason).toBeUndefined();
  expect(stored.chunks).toBeGreaterThan(0);
  expect(stored.sleds.map((share) => share.sled).sort()).toEqual(
    sledsOf(after)
      .map((sled) => sled.id)
      .sort(),
  );
  expect(stored.sleds.reduce((total, share) => total + share.bytes!, 0)).toBe(stored.bytes);
  expect(stored.sleds.reduce((total, share) => total + share.chunks!, 0)).toBe(stored.chunks);
  let grown = 0;
  for (const sled of sledsOf(after)) {
    const share = stored.sleds.find((entry) => entry.sled === sled.id)!;
    const growth = sled.capacity!.usedBytes - usedBefore.get(sled.id)!;
    // Usage counts extents with their headers, and checkpoint blobs: never less than the chunks.
    expect(growth).toBeGreaterThanOrEqual(share.bytes!);
    expect(sled.capacity!.chunks).toBeGreaterThanOrEqual(share.chunks!);
    grown += growth;
  }
  expect(grown).toBeGreaterThanOrEqual(stored.bytes!);
  expect(after.capacity!.usedBytes).toBeGreaterThan(before.capacity!.usedBytes);

  // The human views say the same.
  const human = await runCli(["status", ...nats]);
  expect(human.code).toBe(0);
  expect(human.stdout).toContain("CAPACITY (3 sleds)");
  expect(human.stdout).toContain("stored on sleds ");
  const described = await runCli(["volume", "describe", "cap", "--json", ...nats]);
  expect(described.code).toBe(0);
  expect((JSON.parse(described.stdout) as Volume).stored?.bytes).toBeGreaterThanOrEqual(written);
  // volume list does not count (it is not asked for), nor list partitions.
  const listed = await runCli(["volume", "list", "--json", ...nats]);
  const summary = (JSON.parse(listed.stdout) as ResultOf<"volume.list.v1">).volumes[0]!;
  expect("stored" in summary).toBe(false);
  expect("partitions" in summary).toBe(false);
  expect(summary.partitionCount).toBeGreaterThan(0);
});

test("a sled that stops answering omits the stored totals with a reason", async () => {
  const state = await status();
  const share = volumeOf(state, "cap")!.stored!.sleds.find((entry) => (entry.bytes ?? 0) > 0)!;
  await cluster.cluster.kill(share.sled, "SIGKILL");
  const missing = await waitFor(
    "status to show the killed sled not counted",
    async () => {
      const next = await status();
      const stored = volumeOf(next, "cap")!.stored!;
      return stored.bytes === undefined ? next : undefined;
    },
    30_000,
    500,
  );
  const stored = volumeOf(missing, "cap")!.stored!;
  expect(stored.chunks).toBeUndefined();
  expect(stored.reason).toContain(share.sled);
  expect(stored.sleds.find((entry) => entry.sled === share.sled)!.error).toBeTruthy();
  // The killed sled is either still taken for alive (and its stat failed) or dead (not asked).
  const killed = sledsOf(missing).find((sled) => sled.id === share.sled)!;
  expect(killed.capacity).toBeUndefined();
  expect(missing.capacity!.sleds).toBe(2);
});
