// The head node's part of a sled back before it was declared out (sled-client.ts,
// "Sleds answering again"): when its sled client sees a sled answer after requests to
// it went unanswered, every hosted replica is told, so that one whose checkpoint store
// backed off for want of that sled tries again soon (partition-host.ts
// sledAnsweredAgain; the store itself is covered in partition-host-checkpoint-backoff).
// A real head node and journal in a temporary directory, the fake service of
// fake-service.ts in place of NATS and the sleds.

import { subjects } from "@ballast/protocol";
import { afterEach, expect, test, vi } from "vitest";
import { PartitionHost } from "../src/partition-host.ts";
import type { SledClient } from "../src/sled-client.ts";
import { type StartedHeadNode, startHeadNode } from "./fake-service.ts";

let started: StartedHeadNode | undefined;

afterEach(async () => {
  vi.restoreAllMocks();
  await started?.stop();
  started = undefined;
});

test("a sled answering again after unanswered requests is told to every hosted replica", async () => {
  started = await startHeadNode("ballast-sled-answers-");
  const { service, node } = started;
  await service.inbox({
    type: "headnode.configure.v1",
    volume: "vol",
    volumeId: "1-aaaaaaaaaaaa",
    partition: 0,
    partitionStart: 0,
    partitionBytes: 1024 * 1024,
    epoch: 1,
    primary: "head-1",
    secondaries: [],
    sleds: ["sled-1", "sled-2"],
  });
  const told = vi.spyOn(PartitionHost.prototype, "sledAnsweredAgain");
  // The head node's own sled client (private: reached here only to send a request).
  const sleds = (node as unknown as { sleds: SledClient }).sleds;
  // Nothing answers sled-2 in the fake service: it goes silent, and nobody is told.
  await expect(sleds.damagedChunks("sled-2")).rejects.toThrow(/no sled sled-2/);
  expect(told).not.toHaveBeenCalled();
  // sled-2 answers again.
  const request = service.bus.request;
  service.bus.request = async (subject, message) =>
    subject === subjects.node.build("sled", "sled-2")
      ? { chunks: [], truncated: false }
      : request(subject, message);
  await sleds.damagedChunks("sled-2");
  // Old: no signal reached the replica at all.
  expect(told.mock.calls).toEqual([["sled-2"]]);
});
