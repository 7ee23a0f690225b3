// Every subject every service listens on, fed bytes that are not a valid message: each
// request gets a typed error reply, and the service goes on serving. The subjects come
// from the services themselves (node info lists them), so a new subscription is covered
// without editing this test.

import { decodeValue, ErrorCode, limits, subjects } from "@ballast/protocol";
import { pack } from "msgpackr";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import {
  nodeInbox,
  startTestCluster,
  type TestCluster,
  waitUntilHealthy,
} from "../support/cluster.ts";

let cluster: TestCluster;

beforeAll(async () => {
  cluster = await startTestCluster({ headNodes: 1, sleds: 1 });
});
afterAll(() => cluster?.stop());

/** A concrete subject for a subscription pattern: wildcards become plain tokens. */
function concrete(pattern: string): string {
  return pattern.replace(/\*/g, "probe").replace(/>$/, "probe");
}

async function rawRequest(subject: string, payload: Uint8Array) {
  const reply = await cluster.bus.connection.request(subject, payload, { timeout: 5000 });
  return decodeValue(reply.data) as { ok: boolean; error?: { code: string; message: string } };
}

const badPayloads: [string, () => Uint8Array, string][] = [
  ["random bytes", () => new Uint8Array([0xc1, 0xff, 0x00, 0x13]), ErrorCode.MalformedMessage],
  ["an empty payload", () => new Uint8Array(), ErrorCode.MalformedMessage],
  ["msgpack that is not a map", () => pack([1, 2, 3]), ErrorCode.MalformedMessage],
  ["a map without a type", () => pack({ volume: "v" }), ErrorCode.MalformedMessage],
  ["an unknown type", () => pack({ type: "volume.explode.v1" }), ErrorCode.UnknownMessageType],
  [
    "a type this subject does not take",
    () => pack({ type: "volume.flush.v1", volume: "v", partition: 0, epoch: 1 }),
    ErrorCode.UnexpectedMessageType,
  ],
  [
    "an oversized payload",
    () => new Uint8Array(limits.messageBytesMax + 1),
    ErrorCode.PayloadTooLarge,
  ],
];

describe("bad input on every subject", () => {
  test("each service lists its subjects", async () => {
    for (const id of cluster.cluster.ids()) {
      const info = await cluster.bus.request(nodeInbox(cluster.cluster, id), {
        type: "node.info.v1",
      });
      expect(info.subjects.length).toBeGreaterThan(0);
      expect(info.subjects).toContain(nodeInbox(cluster.cluster, id));
    }
  });

  test("malformed, unknown, unexpected and oversized messages get typed errors", async () => {
    let checked = 0;
    for (const id of cluster.cluster.ids()) {
      const info = await cluster.bus.request(nodeInbox(cluster.cluster, id), {
        type: "node.info.v1",
      });
      for (const pattern of info.subjects) {
        const subject = concrete(pattern);
        for (const [what, payload, code] of badPayloads) {
          const reply = await rawRequest(subject, payload());
          expect(reply, `${what} on ${subject} (${id})`).toMatchObject({
            ok: false,
            error: { code },
          });
          expect(reply.error?.message.length).toBeGreaterThan(0);
          checked++;
        }
      }
    }
    // coordinator: heartbeats, its inbox and the control subject; head and sled: inboxes.
    expect(checked).toBeGreaterThanOrEqual(5 * badPayloads.length);
  });

  test("wrong field types in accepted messages are invalid, naming the field", async () => {
    const heartbeat = await rawRequest(
      subjects.heartbeat.build("sled", "sled-1"),
      pack({ type: "heartbeat.v1", kind: "sled", nodeId: "sled-1", pid: "not a number" }),
    );
    expect(heartbeat).toMatchObject({ ok: false, error: { code: ErrorCode.InvalidMessage } });
    expect(heartbeat.error?.message).toContain("pid");
    const status = await rawRequest(
      subjects.coordinator.build(),
      pack({ type: "cluster.status.v1", probe: "yes" }),
    );
    expect(status).toMatchObject({ ok: false, error: { code: ErrorCode.InvalidMessage } });
    expect(status.error?.message).toContain("probe");
  });

  test("every service is still healthy and serving afterwards", async () => {
    const status = await waitUntilHealthy(cluster.bus, cluster.cluster.ids());
    for (const id of cluster.cluster.ids()) {
      const info = await cluster.bus.request(nodeInbox(cluster.cluster, id), {
        type: "node.info.v1",
      });
      expect(info.nodeId).toBe(id);
      // Same process as before: nothing crashed and restarted.
      expect(status.services.find((service) => service.id === id)?.pid).toBe(
        cluster.cluster.pid(id),
      );
    }
  });
});
