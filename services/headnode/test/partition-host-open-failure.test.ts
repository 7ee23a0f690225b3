// A partition host whose open fails after its journal opened leaves nothing held: a real
// host on real files in a temporary directory. Opening a journal claims its directory for
// the process (journal.ts refuses a second open of it), so a failed open that left the
// journal open would have every later open of that replica refused, the rebuild as a
// learner included, until the process restarts. Before, a voter-epoch file that could not
// be read, or recovered notes the core refused, did just that.

import { mkdir, mkdtemp, rm, rmdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { meterOf, type Service } from "@ballast/runtime";
import { afterEach, beforeEach, expect, test } from "vitest";
import { encodeNoteRecord } from "../src/adapters.ts";
import { Journal } from "../src/journal/index.ts";
import { replicaGauges } from "../src/observability.ts";
import { PartitionHost, partitionDirectory } from "../src/partition-host.ts";
import type { SledClient } from "../src/sled-client.ts";
import { FakeService } from "./fake-service.ts";

let dataDir: string;
let directory: string;
const service = new FakeService();
/** The scrape-time gauges' replicas of the fake service's (no-op) meter. */
const gauged = replicaGauges(meterOf(service as { meter?: undefined }));

const address = {
  volume: "vol",
  volumeId: "1-abc",
  partition: 0,
  partitionStart: 0,
  partitionBytes: 1 << 20,
};

beforeEach(async () => {
  dataDir = await mkdtemp(join(tmpdir(), "ballast-host-open-"));
  directory = partitionDirectory(dataDir, address.volumeId, address.partition);
});

afterEach(async () => {
  await rm(dataDir, { recursive: true, force: true });
});

/** Opens the replica (a rebuild as a learner when `fresh`), then closes it: what happened. */
function open(fresh = false): Promise<string> {
  return PartitionHost.open(
    service as unknown as Service,
    dataDir,
    address,
    {} as SledClient,
    1,
    undefined,
    {},
    fresh,
  ).then(
    async (host) => {
      await host.close();
      return "opened";
    },
    (error: Error) => `failed: ${error.message}`,
  );
}

test("a voter-epoch file that cannot be read fails the open once; the next open succeeds", async () => {
  // A directory where the file should be: reading it fails (EISDIR), as EIO or EMFILE would.
  await mkdir(join(directory, "voter-epoch"), { recursive: true });
  const before = gauged.size;
  expect(await open()).toMatch(/^failed: .*EISDIR/);
  await rmdir(join(directory, "voter-epoch"));
  expect(await open()).toBe("opened");
  // Nor is a replica that never opened left among the scrape-time gauges.
  expect(gauged.size).toBe(before);
});

test("a journal the core refuses fails the open; the rebuild as a learner then opens", async () => {
  await mkdir(directory, { recursive: true });
  // One note at op 5 and no checkpoint: ops 1-4 are missing, which the core refuses.
  const { journal } = await Journal.open({ directory: join(directory, "journal") });
  await journal.append([
    encodeNoteRecord({
      opNum: 5,
      epoch: 1,
      session: 1,
      kind: "trim",
      offset: 0,
      length: 512,
      checksum: 0,
    }),
  ]);
  await journal.close();
  const before = gauged.size;
  expect(await open()).toMatch(/^failed: .*notes are missing/);
  // As the head node does for a learner: the directory is removed and opened afresh.
  expect(await open(true)).toBe("opened");
  expect(gauged.size).toBe(before);
});
