// A head node's evidence that it reaches the sleds (session 30): every report carries
// `sledStores`, its stores that got their copies, and an answer with `probeSleds` has it
// store a small blob on the sleds it is configured with and delete it, so that the
// leader may fail a primary that cannot flush over to it (coordinator sled-reach.ts).
// Real journals in a temporary directory, the fake service of fake-service.ts in place
// of NATS, and fake sleds answering its blob requests.

import { BallastError, ErrorCode, limits, type Message } from "@ballast/protocol";
import { afterEach, expect, test } from "vitest";
import { probeKey } from "../src/sled-probe.ts";
import { type StartedHeadNode, startHeadNode } from "./fake-service.ts";
import { configure } from "./one-partition.ts";

let started: StartedHeadNode | undefined;

afterEach(async () => {
  await started?.stop();
  started = undefined;
});

/** Fake sleds (unit test): each request is recorded; those of `refusing` fail. */
function fakeSleds(refusing: ReadonlySet<string>) {
  const requests: string[] = [];
  let uploads = 0;
  const answer = (sled: string, message: Message): unknown => {
    const key = "key" in message ? ` ${String(message.key)}` : "";
    requests.push(`${sled} ${message.type}${key}`);
    if (refusing.has(sled)) throw new BallastError(ErrorCode.Unavailable, `${sled} is read-only`);
    switch (message.type) {
      case "sled.blob.begin.v1":
        return { uploadId: `u${++uploads}`, partBytesMax: 1024 * 1024 };
      case "sled.blob.part.v1":
        return { bytesReceived: message.data.byteLength };
      case "sled.blob.commit.v1":
        return {};
      case "sled.blob.abort.v1":
        return { freedBytes: 0 };
      case "sled.blob.delete.v1":
        return {};
      case "sled.blob.list.v1": // the probe's sweep finds nothing left (sled-probe.test.ts)
        return { blobs: [], truncated: false };
      default:
        throw new BallastError(ErrorCode.Unavailable, `unexpected ${message.type}`);
    }
  };
  return { requests, answer };
}

/** Waits until `done` holds, checking every 20 ms, for at most `ms`. */
async function until(done: () => boolean, ms = 5_000): Promise<void> {
  const endMs = Date.now() + ms;
  while (!done()) {
    if (Date.now() > endMs) throw new Error("timed out waiting");
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/**
 * A head node whose leader wants evidence in its first answer only; configured with a
 * replica on three sleds unless `probeOn` is given (the live sleds that answer names).
 */
async function probed(refusing: ReadonlySet<string>, probeOn?: string[]) {
  const sleds = fakeSleds(refusing);
  let answers = 0;
  started = await startHeadNode("ballast-sled-probe-", (_dataDir, service) => {
    service.answerSled = sleds.answer;
    service.answerReport = (report) => ({
      leaseMs: limits.primaryLeaseMs,
      granted: [],
      accepted: report.seq,
      held: 0,
      ...(answers++ < 1 ? { probeSleds: true, ...(probeOn === undefined ? {} : { probeOn }) } : {}),
    });
  });
  const { service } = started;
  if (probeOn === undefined)
    await configure(service, { epoch: 1, sleds: ["sled-1", "sled-2", "sled-3"] });
  return { service, sleds };
}

test("asked to probe, it stores a blob on two of its sleds, deletes it, and reports the store", async () => {
  const { service, sleds } = await probed(new Set());
  await until(() => service.reports.some((report) => (report.sledStores ?? 0) > 0));
  await until(() => sleds.requests.some((request) => request.includes("delete")));
  const stored = (request: string) => request.includes("sled.blob.commit.v1");
  expect(sleds.requests.filter(stored)).toHaveLength(limits.chunkCopies);
  const puts = sleds.requests.filter((request) => request.includes("sled.blob.begin.v1"));
  expect(puts[0]).toMatch(/ probes\/head-1\/1-1$/);
  const deletes = sleds.requests.filter((request) => request.includes("sled.blob.delete.v1"));
  expect(deletes).toHaveLength(limits.chunkCopies);
  // Reports before the probe said no store; each says the count, growing only with it.
  expect(service.reports[0]?.sledStores).toBe(0);
  expect(Math.max(...service.reports.map((report) => report.sledStores ?? 0))).toBe(1);
});

test("with too few sleds taking its writes, it reports no store, and removes the copy it made", async () => {
  // sled-2 takes the probe (it is asked first), the others refuse: one copy of two.
  const { service, sleds } = await probed(new Set(["sled-1", "sled-3"]));
  await until(() => sleds.requests.some((request) => request.includes("sled.blob.delete.v1")));
  // A few more reports: none may claim a store.
  const after = service.reports.length;
  await until(() => service.reports.length >= after + 2);
  expect(service.reports.every((report) => report.sledStores === 0)).toBe(true);
  // (A slow machine may see a second probe begun: each the same way.)
  const committed = sleds.requests.filter((request) => request.includes("sled.blob.commit.v1"));
  expect(new Set(committed)).toEqual(new Set(["sled-2 sled.blob.commit.v1"]));
  const deleted = sleds.requests.filter((request) => request.includes("sled.blob.delete.v1"));
  expect(deleted).toContain(`sled-2 sled.blob.delete.v1 ${probeKey("head-1", 1, 1)}`);
  // The refusing sleds answer Unavailable, which may be a request nobody answered, so the
  // delete goes to them too (review 32: a commit whose answer was lost leaves a copy);
  // only ever of this node's probes.
  expect(deleted.every((request) => request.includes(" probes/head-1/"))).toBe(true);
});

test("hosting nothing, it probes on the live sleds the leader's answer names (a spare asked for a stand-in)", async () => {
  // Configured with no sleds at all: before, it had nowhere to probe and never gave the
  // evidence a stand-in learner needs (review 31, finding 1).
  const { service, sleds } = await probed(new Set(), ["sled-1", "sled-2", "sled-3"]);
  await until(() => service.reports.some((report) => (report.sledStores ?? 0) > 0));
  const committed = sleds.requests.filter((request) => request.includes("sled.blob.commit.v1"));
  expect(committed).toHaveLength(limits.chunkCopies);
});
