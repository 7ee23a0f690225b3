// A probed status puts each live head node's slow sleds (its node info's
// `details.slowSleds`) on its service entry, checked as the node info was decoded; a head
// node that says none (an older one) has no such field. Unit: a fake bus that answers
// node info through the real reply encoding and decoding, fake membership and volumes.

import { decodeReply, encodeResult, type MessageOf, type SlowSledsInfo } from "@ballast/protocol";
import { expect, test } from "vitest";
import type { Member } from "../src/membership.ts";
import { Status } from "../src/status.ts";

const member = (kind: Member["kind"], id: string, alive = true): Member => ({
  kind,
  id,
  pid: 1,
  version: "0.1.0",
  startedAtMs: 0,
  lastSequence: 1,
  lastHeartbeatAtMs: 0,
  alive,
});

const slowSleds: SlowSledsInfo = {
  slow: ["sled-2"],
  hedgedReads: 5,
  hedgedWrites: 1,
  holds: [{ sled: "sled-2", slowForMs: 70_000, holdLeftMs: 50_000, holdMs: 60_000 }],
};

/** Node info as each node would answer it: head-1 holds sled-2 slow, head-2 is older. */
const details: Record<string, Record<string, unknown>> = {
  "head-1": { session: 3, slowSleds },
  "head-2": { session: 4 },
};

const fakeBus = {
  async request(subject: string, message: MessageOf<"node.info.v1">) {
    const id = subject.split(".").at(-1)!;
    if (message.type !== "node.info.v1" || details[id] === undefined) {
      throw new Error(`fake bus: no answer to ${message.type} on ${subject}`);
    }
    const info = {
      kind: "headnode",
      nodeId: id,
      pid: 1,
      startedAtMs: 0,
      uptimeMs: 0,
      version: "0.1.0",
      subjects: [],
      details: details[id],
    };
    return decodeReply("node.info.v1", encodeResult(info));
  },
};

test("a probed status carries each live head node's slow sleds on its entry", async () => {
  const status = new Status(
    { bus: fakeBus as never, nodeId: "coordinator-1" },
    {
      declareDeaths: () => {},
      list: () => [member("headnode", "head-1"), member("headnode", "head-2")],
    },
    { states: async () => [] } as never,
    { list: () => undefined },
  );
  const answer = await status.onClusterStatus({ type: "cluster.status.v1", probe: true });
  const entry = (id: string) => answer.services.find((service) => service.id === id)!;
  expect(entry("head-1").slowSleds).toEqual(slowSleds);
  expect(entry("head-1").info).toMatchObject({ details: { slowSleds } });
  expect(entry("head-2").probeError).toBeUndefined();
  expect(entry("head-2")).not.toHaveProperty("slowSleds");
  // Not probed: nothing of it.
  const unprobed = await status.onClusterStatus({ type: "cluster.status.v1" });
  expect(unprobed.services.every((service) => service.slowSleds === undefined)).toBe(true);
});
