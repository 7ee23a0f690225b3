// A head node that restarts on damaged files reports the replica it could not open as
// failed. Real files in a temporary directory, a fake service in place of NATS
// (fake-service.ts). Before, a configure whose open was refused left nothing hosted and
// the report said nothing of the partition: the coordinator could not tell a primary
// whose files are refused from one still restarting, and meanwhile dropped a dead
// secondary, the one sound copy, as beside any live primary (docs/testing.md, Damage).

import { readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { subjects } from "@ballast/protocol";
import type { CommonConfig, Service } from "@ballast/runtime";
import { afterEach, expect, test, vi } from "vitest";
import { HeadNode } from "../src/headnode.ts";
import { segmentHeaderBytes } from "../src/journal/constants.ts";
import { partitionDirectory } from "../src/partition-host.ts";
import { FakeService, type Report, startHeadNode } from "./fake-service.ts";
import { flipByte } from "./fixtures/journal-files.ts";

const partitionBytes = 1024 * 1024;
/** What the test leaves to clean up: the running node's service, and the directory. */
let running: FakeService | undefined;
let dataDir: string | undefined;

afterEach(async () => {
  await running?.close();
  running = undefined;
  if (dataDir !== undefined) await rm(dataDir, { recursive: true, force: true });
  dataDir = undefined;
});

function configure(
  service: FakeService,
  epoch: number,
  members: { primary: string; secondaries: string[] },
) {
  return service.inbox({
    type: "headnode.configure.v1",
    volume: "vol",
    partition: 0,
    partitionStart: 0,
    partitionBytes,
    epoch,
    ...members,
    sleds: ["sled-1"],
  });
}

function write(service: FakeService, epoch: number, fill: number) {
  return service.call(subjects.volume.build("vol", 0), {
    type: "volume.write.v1",
    volume: "vol",
    partition: 0,
    epoch,
    writes: [{ offset: 0, data: new Uint8Array(4096).fill(fill) }],
  });
}

/** The newest report the node sent once `check` holds of it. */
async function reportWhere(service: FakeService, check: (report: Report) => boolean) {
  await vi.waitFor(() => {
    const last = service.reports.at(-1);
    if (last === undefined || !check(last)) throw new Error("no such report yet");
  });
  return service.reports.at(-1)!;
}

test("a primary whose journal is damaged while its node was down is reported failed in the configure's epoch", async () => {
  const first = await startHeadNode("ballast-headnode-unopened-");
  const { service } = first;
  dataDir = first.dataDir;
  running = service;
  await configure(service, 1, { primary: "head-1", secondaries: [] });
  // Two group commits: damage to the first, with the second intact after it, is
  // refused by recovery as damage, not cut as a torn tail (journal.test.ts).
  await write(service, 1, 0x51);
  await write(service, 1, 0x52);
  await service.close();
  running = undefined;
  const journal = join(partitionDirectory(dataDir, "vol", 0), "journal");
  const segment = (await readdir(journal)).filter((name) => name.startsWith("segment-")).sort()[0];
  expect(segment).toBeDefined();
  await flipByte(join(journal, segment!), segmentHeaderBytes + 30);

  // The node starts again on the same directory, in a new session.
  const service2 = new FakeService();
  running = service2;
  new HeadNode(service2 as unknown as Service, { dataDir } as unknown as CommonConfig, 2).start();

  // Named primary: refused, and reported as a failed primary in epoch 2.
  await expect(
    configure(service2, 2, { primary: "head-1", secondaries: ["head-2"] }),
  ).rejects.toThrow(/cannot recover journal segment/);
  const asPrimary = await reportWhere(service2, (report) =>
    report.primaries.some((entry) => entry.partition === 0 && entry.failed === true),
  );
  expect(asPrimary.primaries).toEqual([
    expect.objectContaining({ volume: "vol", partition: 0, epoch: 2, failed: true, followers: [] }),
  ]);
  expect(asPrimary.failures ?? []).toEqual([]);
  // Every report says the node enforces served bytes: the coordinator shrinks a volume
  // only while each node serving it says so (a rolling upgrade).
  expect(asPrimary.enforcesServedBytes).toBe(true);
  expect(service2.served.has(subjects.volume.build("vol", 0))).toBe(false);

  // Named a secondary of a later epoch: refused again, and reported among the failed
  // replicas in that epoch, no longer as a primary.
  await expect(
    configure(service2, 3, { primary: "head-2", secondaries: ["head-1"] }),
  ).rejects.toThrow(/cannot recover journal segment/);
  const asSecondary = await reportWhere(service2, (report) =>
    (report.failures ?? []).some((failure) => failure.epoch === 3),
  );
  expect(asSecondary.failures).toEqual([
    expect.objectContaining({ volume: "vol", partition: 0, epoch: 3, unopened: true }),
  ]);
  expect(asSecondary.primaries).toEqual([]);
});
