// A shrink and a delete refused while the volume is attached (attached.ts): the real
// Volumes and Catalogue over an in-memory store (fake-store.ts), gateways and head nodes
// answering over a fake bus. review-nbd.md items 4 and 5: a shrink under an attached
// NBD client lost the writes it went on making past the new end (acknowledged, then
// trimmed by the next grow), and a delete under one left its flushes succeeding.

import { BallastError, ErrorCode, type Message, subjects } from "@ballast/protocol";
import { expect, test } from "vitest";
import { Catalogue } from "../src/catalogue.ts";
import { detachesFirst, planResize } from "../src/resize.ts";
import type { Tenure } from "../src/tenure.ts";
import { Volumes } from "../src/volumes.ts";
import { FakeStore } from "./fake-store.ts";
import { partitionBytes, seed } from "./two-leaders.ts";

const silent = { info: () => undefined, warn: () => undefined, error: () => undefined };

/** A gateway's node.info details, or undefined: it does not answer. */
type GatewayDetails = Record<string, unknown> | undefined;

/** Volume `v` (2 partitions) and its leader's Volumes, with these gateways alive. */
function start(gateways: Record<string, GatewayDetails>) {
  const store = new FakeStore();
  seed(store);
  const catalogue = new Catalogue(store);
  const sent: string[] = [];
  const service = {
    bus: {
      request: async (subject: string, message: Message) => {
        sent.push(message.type);
        if (message.type === "node.info.v1") {
          const id = Object.keys(gateways).find(
            (gateway) => subjects.node.build("gateway", gateway) === subject,
          );
          const details = id === undefined ? undefined : gateways[id];
          if (details === undefined) throw new BallastError(ErrorCode.Timeout, "no answer");
          return { kind: "gateway", nodeId: id, details };
        }
        if (message.type === "gateway.volume.shrunk.v1") return { open: false };
        if (message.type === "headnode.drop.v1") return { dropped: 0 };
        if (message.type === "volume.trim.v1") return { opNumFirst: 9, opNumLast: 9 };
        if (message.type === "volume.flush.v1") return { flushedOpNum: 9 };
        throw new Error(`unexpected ${message.type} on ${subject}`);
      },
    },
    logger: silent,
  };
  const volumes = new Volumes({
    service: service as never,
    catalogue,
    heartbeats: {
      aliveHeadNodes: () => new Set(["head-1", "head-2"]),
      aliveSleds: () => [],
      headNodeDisks: () => new Map(),
      list: () => [
        ...Object.keys(gateways).map((id) => ({ kind: "gateway", id, alive: true }) as never),
        // A dead gateway is not asked: it serves nobody.
        { kind: "gateway", id: "gw-dead", alive: false } as never,
      ],
    },
    configurer: { configure: async () => undefined },
    // A fake: no sled to witness creates on (store-marks.ts).
    marks: { witnessCreate: async () => undefined },
    tenures: { held: () => undefined, current: () => undefined },
    partitionBytesDefault: partitionBytes,
    // A fake: every head node enforces volume ends.
    features: { enforcesServedBytes: () => true },
  });
  return { catalogue, volumes, sent, tenure: { term: 1 } as Tenure };
}

const attachedCases = [
  [{ attached: { v: 2, other: 1 } }, /2 NBD connection\(s\) through gateway gw-1/],
  [undefined, /gateway gw-1 did not say whether it has it open/],
] as const;

test("only a shrink needs the volume detached: a grow discards nothing", () => {
  const volume = { sizeBytes: 2 * partitionBytes, partitionBytes };
  const ranges = [0, 1].map((partition) => ({
    partition,
    partitionStart: partition * partitionBytes,
    partitionBytes,
  }));
  const request = { name: "v", allowShrink: true };
  expect(detachesFirst(planResize(volume, ranges, { ...request, sizeBytes: partitionBytes }))).toBe(
    true,
  );
  for (const sizeBytes of [2 * partitionBytes, 3 * partitionBytes]) {
    expect(detachesFirst(planResize(volume, ranges, { ...request, sizeBytes }))).toBe(false);
  }
});

test("a shrink is refused while a gateway has the volume attached or does not answer, unless forced", async () => {
  for (const [details, why] of attachedCases) {
    const { catalogue, volumes, sent, tenure } = start({
      "gw-0": { attached: {} },
      "gw-1": details,
    });
    const shrink = {
      type: "volume.resize.v1",
      name: "v",
      sizeBytes: partitionBytes,
      allowShrink: true,
    } as const;
    const refused = await volumes.resize(tenure, shrink).catch((error: BallastError) => error);
    expect(refused).toBeInstanceOf(BallastError);
    expect((refused as BallastError).code).toBe(ErrorCode.InvalidArgument);
    expect((refused as BallastError).message).toMatch(
      /cannot shrink volume v to 1048576 bytes: volume v is attached/,
    );
    expect((refused as BallastError).message).toMatch(why);
    expect((refused as BallastError).message).toMatch(/disconnect .* or pass --force/);
    // Nothing changed: no trim sent, the size as it was.
    expect(sent).not.toContain("volume.trim.v1");
    expect((await catalogue.volume("v"))?.value.sizeBytes).toBe(2 * partitionBytes);

    sent.length = 0;
    const forced = await volumes.resize(tenure, { ...shrink, force: true });
    expect(forced.sizeBytes).toBe(partitionBytes);
    // Forced: the gateways are not asked first, but told after, so that a connection
    // opened at the old size has its writes past the new end refused.
    expect(sent).not.toContain("node.info.v1");
    expect(sent.filter((type) => type === "gateway.volume.shrunk.v1")).toHaveLength(2);
    expect(sent.indexOf("gateway.volume.shrunk.v1")).toBeGreaterThan(
      sent.lastIndexOf("volume.trim.v1"),
    );
  }
});

test("a grow is not refused while attached; a shrink once detached goes through", async () => {
  const gateways: Record<string, GatewayDetails> = { "gw-1": { attached: { v: 1 } } };
  const { volumes, sent, tenure } = start(gateways);
  const grown = await volumes.resize(tenure, {
    type: "volume.resize.v1",
    name: "v",
    sizeBytes: 3 * partitionBytes,
  });
  expect(grown.sizeBytes).toBe(3 * partitionBytes);
  expect(sent).not.toContain("node.info.v1");
  expect(sent).not.toContain("gateway.volume.shrunk.v1");
  gateways["gw-1"] = { attached: { other: 1 } };
  const shrunk = await volumes.resize(tenure, {
    type: "volume.resize.v1",
    name: "v",
    sizeBytes: partitionBytes,
    allowShrink: true,
  });
  expect(shrunk.sizeBytes).toBe(partitionBytes);
  expect(sent).toContain("node.info.v1");
});

test("a delete is refused while a gateway has the volume attached or does not answer, unless forced", async () => {
  for (const [details, why] of attachedCases) {
    const { catalogue, volumes, sent, tenure } = start({
      "gw-0": { attached: {} },
      "gw-1": details,
    });
    const refused = await volumes.delete(tenure, "v").catch((error: BallastError) => error);
    expect(refused).toBeInstanceOf(BallastError);
    expect((refused as BallastError).code).toBe(ErrorCode.InvalidArgument);
    expect((refused as BallastError).message).toMatch(
      /cannot delete volume v: volume v is attached/,
    );
    expect((refused as BallastError).message).toMatch(why);
    expect(sent).not.toContain("headnode.drop.v1");
    expect(await catalogue.volume("v")).toBeDefined();

    expect(await volumes.delete(tenure, "v", undefined, true)).toEqual({
      name: "v",
      deleted: true,
    });
    expect(await catalogue.volume("v")).toBeUndefined();
  }
});

test("a delete of a volume no gateway has open goes through", async () => {
  const { catalogue, volumes, tenure } = start({ "gw-1": { attached: { other: 3 } } });
  expect(await volumes.delete(tenure, "v")).toEqual({ name: "v", deleted: true });
  expect(await catalogue.volume("v")).toBeUndefined();
});
