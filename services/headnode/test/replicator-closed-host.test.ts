// The replicator and a replica closed under it: a scrub step or a re-replication pass
// takes its list of primaries when it starts and then awaits sled work chunk by chunk,
// reading the role again before each. A replica the head node closes meanwhile (a drop,
// a learner rebuild, another incarnation) must read as no primary from then on, or the
// step goes on checking, repairing and copying the chunks of a partition this node no
// longer holds (and, for a dropped volume, writes back copies its purge deleted).
//
// A real host on a real journal in a temporary directory, a fake service in place of
// NATS, fake sleds that hold every chunk they are given (test-primary.ts), and a fake
// sled client for the replicator whose chunk checks wait on a gate the test opens.

import { createLogger } from "@ballast/runtime";
import { afterEach, beforeEach, expect, test } from "vitest";
import type { PartitionHost } from "../src/partition-host.ts";
import { Replicator } from "../src/replicator.ts";
import type { CopyRepair } from "../src/sled-client.ts";
import { TestPrimary } from "./test-primary.ts";

let primary: TestPrimary;
let host: PartitionHost;

beforeEach(async () => {
  primary = await TestPrimary.open("ballast-replicator-closed-", ["sled-1", "sled-2", "sled-3"]);
  host = primary.host;
});

afterEach(async () => {
  await primary.close();
});

test("a scrub step checks no chunk of a replica closed while it ran", async () => {
  await primary.writeFlushed(0, 1);
  await primary.writeFlushed(4096, 2);
  await primary.writeFlushed(8192, 3);
  expect(host.replica.metadata.chunks.size).toBe(3);

  // The fake sled client: each chunk check waits until the test opens the gate.
  const checked: string[] = [];
  let openGate: () => void = () => undefined;
  const gate = new Promise<void>((resolve) => {
    openGate = resolve;
  });
  let firstCheck: () => void = () => undefined;
  const checking = new Promise<void>((resolve) => {
    firstCheck = resolve;
  });
  const fakeSledClient = {
    copyChunk: async () => "sled-1",
    checkChunk: async (_owner: unknown, chunkId: string): Promise<CopyRepair[]> => {
      checked.push(chunkId);
      firstCheck();
      await gate;
      return [];
    },
    statBlob: async () => undefined,
    copyBlob: async () => "sled-1",
    statChunk: async () => {
      throw new Error("no sled is audited in this test");
    },
    getBlob: async () => {
      throw new Error("no checkpoint is read in this test");
    },
  };
  let clockMs = 0;
  const replicator = new Replicator({
    sleds: fakeSledClient,
    logger: createLogger({ service: "headnode", nodeId: "head-1", level: "silent" }),
    partitions: () => [host],
    scrubIntervalMs: 1000,
    clock: () => clockMs,
  });
  // The first step starts the partition's pace; a pass's worth of time later, every
  // chunk is due.
  await replicator.scrubStep();
  expect(checked).toEqual([]);
  clockMs += 1000;
  const step = replicator.scrubStep();
  await checking;
  expect(checked).toHaveLength(1);

  // The head node closes the replica (a drop of its volume) while the first check waits.
  await host.close();
  openGate();
  await step;
  await replicator.close();
  expect(checked).toHaveLength(1);
  expect(host.roleName).toBe("idle");
});

test("a re-replication pass makes no copy for a replica closed while it ran", async () => {
  await primary.writeFlushed(0, 1);
  await primary.writeFlushed(4096, 2);
  await primary.writeFlushed(8192, 3);
  const chunks = [...host.replica.metadata.chunks.values()];
  expect(chunks).toHaveLength(3);
  expect(chunks.every((chunk) => chunk.copies.includes("sled-1"))).toBe(true);

  // The fake sled client: each copy waits until the test opens the gate.
  const copied: string[] = [];
  let openGate: () => void = () => undefined;
  const gate = new Promise<void>((resolve) => {
    openGate = resolve;
  });
  const fakeSledClient = {
    copyChunk: async (_owner: unknown, chunkId: string) => {
      copied.push(chunkId);
      await gate;
      return "sled-2";
    },
    checkChunk: async (): Promise<CopyRepair[]> => [],
    statBlob: async () => undefined,
    copyBlob: async () => "sled-1",
    statChunk: async () => {
      throw new Error("no sled is audited in this test");
    },
    getBlob: async () => {
      throw new Error("no checkpoint is read in this test");
    },
  };
  const replicator = new Replicator({
    sleds: fakeSledClient,
    logger: createLogger({ service: "headnode", nodeId: "head-1", level: "silent" }),
    partitions: () => [host],
  });
  // sled-1 is out: every chunk is short of a copy, two copies are made at once.
  replicator.setOut(["sled-1"]);
  const pass = replicator.pass();
  await primary.until(() => copied.length === 2);

  // The head node closes the replica (a drop of its volume) while those two wait.
  await host.close();
  openGate();
  await pass;
  await replicator.close();
  expect(copied).toHaveLength(2);
});
