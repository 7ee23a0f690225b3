// A head node whose NATS connection closed for good (an explicit close, revoked
// credentials) stops in order: the runtime stops the service (run.ts), and until the
// head node's closer clears its timers, its ticks go on. On a closed connection nats.js
// throws from a publish and from a subscription; the fake service does the same
// (fake-service.ts, `connectionClosed`). Before, a primary's heartbeat in a tick threw
// out of the tick timer, and a replica found primary by a tick subscribed from a voided
// promise: an uncaught exception or an unhandled rejection, which the crash policy turns
// into exit code 1 and a fatal log. Real files in a temporary directory.

import { subjects } from "@ballast/protocol";
import { afterEach, beforeEach, expect, test, vi } from "vitest";
import { tickMs } from "../src/constants.ts";
import { FakeService, type StartedHeadNode, startHeadNode } from "./fake-service.ts";
import { TestPrimary } from "./test-primary.ts";

const rejections: unknown[] = [];
const onRejection = (reason: unknown) => rejections.push(reason);

beforeEach(() => {
  rejections.length = 0;
  process.on("unhandledRejection", onRejection);
});

afterEach(() => {
  process.off("unhandledRejection", onRejection);
  vi.useRealTimers();
});

/** Lets the process report any rejection left unhandled by now. */
const unhandledSeen = () => new Promise((resolve) => setImmediate(resolve));

test("a primary's ticks on a closed connection drop their heartbeats instead of throwing", async () => {
  const service = new FakeService();
  const primary = await TestPrimary.open("ballast-closed-tick-", ["sled-1", "sled-2"], undefined, {
    service,
  });
  try {
    const { host } = primary;
    host.configure({ epoch: 2, primary: "head-1", secondaries: ["head-2"] }, ["sled-1", "sled-2"]);
    await primary.nodeTick();
    service.connectionClosed = true;
    // Past several heartbeat intervals (heartbeatTicks: 10) to a secondary that never answers.
    for (let tick = 0; tick < 40; tick++) await primary.nodeTick();
    expect(host.failed).toBeUndefined();
    expect(host.roleName).toBe("primary");
  } finally {
    await primary.close();
  }
});

let started: StartedHeadNode | undefined;

afterEach(async () => {
  await started?.stop();
  started = undefined;
});

test("a replica made primary once the connection closed subscribes to nothing, and nothing is left unhandled", async () => {
  // The node's tick timer stands still unless advanced; files and journals are real.
  vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "setInterval", "clearInterval"] });
  started = await startHeadNode("ballast-closed-role-");
  const { service } = started;
  const configure = (epoch: number, primary: string, secondaries: string[]) =>
    service.inbox({
      type: "headnode.configure.v1",
      volume: "vol",
      partition: 0,
      partitionStart: 0,
      partitionBytes: 1 << 20,
      epoch,
      primary,
      secondaries,
      sleds: ["sled-1"],
    });
  await configure(1, "head-2", ["head-1"]);
  expect(service.served.has(subjects.replica.build("vol", 0, "head-1"))).toBe(true);
  service.connectionClosed = true;
  // A configure already taken when the connection closed: the replica is primary now.
  const answer = (await configure(2, "head-1", [])) as { role: string };
  expect(answer.role).toBe("primary");
  await vi.advanceTimersByTimeAsync(tickMs * 5);
  await unhandledSeen();
  expect(rejections).toEqual([]);
  expect(service.served.has(subjects.volume.build("vol", 0))).toBe(false);
});
