// The directories a partition host makes and removes are durable entries: a real host on
// a real journal in a temporary directory, with `node:fs/promises` wrapped (not faked) so
// that the test sees which directories are synced. A new directory's entry is durable
// only once its parent is synced; the journal syncs only the entry of its own directory,
// so the levels above it (partitions/, the volume's, the partition's) are the host's to
// make durable. Before, the host made them with a plain mkdir: a crash could lose the
// partition's directory entry after its journal acknowledged notes, and the voter would
// open as a replica never stored.

import * as fs from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Service } from "@ballast/runtime";
import { afterEach, beforeEach, expect, test, vi } from "vitest";
import { PartitionHost } from "../src/partition-host.ts";
import type { SledClient } from "../src/sled-client.ts";
import { FakeService } from "./fake-service.ts";

/** Directories whose handle was synced, in order. */
const synced: string[] = [];

vi.mock("node:fs/promises", async (importOriginal) => {
  const real = await importOriginal<typeof import("node:fs/promises")>();
  return {
    ...real,
    open: async (...args: Parameters<typeof real.open>) => {
      const handle = await real.open(...args);
      const [path] = args;
      const stats = await handle.stat();
      if (stats.isDirectory()) {
        const sync = handle.sync.bind(handle);
        handle.sync = async () => {
          synced.push(String(path));
          return sync();
        };
      }
      return handle;
    },
  };
});

let dataDir: string;

beforeEach(async () => {
  dataDir = await fs.mkdtemp(join(tmpdir(), "ballast-host-dirs-"));
  synced.length = 0;
});

afterEach(async () => {
  await fs.rm(dataDir, { recursive: true, force: true });
});

const address = {
  volume: "vol",
  volumeId: "1-abc",
  partition: 0,
  partitionStart: 0,
  partitionBytes: 1 << 20,
};

function open(fresh = false) {
  return PartitionHost.open(
    new FakeService() as unknown as Service,
    dataDir,
    address,
    {} as SledClient,
    1,
    undefined,
    {},
    fresh,
  );
}

test("every directory level a host makes has its parent synced", async () => {
  const host = await open();
  await host.close();
  const partitions = join(dataDir, "partitions");
  const volume = join(partitions, address.volumeId);
  const partition = join(volume, String(address.partition));
  for (const parent of [dataDir, partitions, volume, partition]) {
    expect(synced, `${parent} synced after an entry was made in it`).toContain(parent);
  }
});

test("a removed replica's directory is gone durably: its parent is synced after the removal", async () => {
  const host = await open();
  await host.close();
  synced.length = 0;
  await host.remove();
  const volume = join(dataDir, "partitions", address.volumeId);
  expect(synced).toContain(volume);
  await expect(fs.stat(join(volume, String(address.partition)))).rejects.toMatchObject({
    code: "ENOENT",
  });
});

test("a fresh open where nothing was ever stored removes nothing and fails on nothing", async () => {
  // The removal of a directory that, with its parents, does not exist: no parent to sync.
  const host = await open(true);
  await host.close();
  const partition = join(dataDir, "partitions", address.volumeId, String(address.partition));
  expect((await fs.stat(partition)).isDirectory()).toBe(true);
});
