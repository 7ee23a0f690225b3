// Links (protocol link.ts, runtime link-server.ts, link-client.ts): the Bus and the
// service shell against a real nats-server in this process, then a real cluster whose
// volume requests and replication go over links, through a primary's kill -9.

import { type RunningNatsServer, startNatsServer } from "@ballast/cli";
import { BallastClient } from "@ballast/client";
import { BallastError, ErrorCode, isBallastError, subjects } from "@ballast/protocol";
import {
  Bus,
  commonOptions,
  connectNats,
  createLogger,
  type LinkServerStats,
  parseConfig,
  Service,
  startTracing,
} from "@ballast/runtime";
import { sledDefinition, sledOptions } from "@ballast/sled";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import {
  connectTestBus,
  startTestCluster,
  type TestCluster,
  temporaryDirectory,
  waitFor,
} from "../support/cluster.ts";
import { describeVolume } from "../support/faults.ts";
import { blockBytes } from "../support/volume-io.ts";

let nats: RunningNatsServer;
let removeDirectory: () => Promise<void>;
const tracing = startTracing({ serviceName: "links-test", instanceId: "t" });
const logger = createLogger({ service: "test", nodeId: "test", level: "silent" });

beforeAll(async () => {
  const directory = await temporaryDirectory();
  removeDirectory = directory.remove;
  nats = await startNatsServer({ directory: directory.path });
});
afterAll(async () => {
  await nats?.stop();
  await removeDirectory?.();
});

async function newBus(name: string): Promise<Bus> {
  return new Bus(await connectNats({ servers: nats.url, name, logger }), tracing.tracer);
}

async function newService(nodeId: string, links: boolean): Promise<Service> {
  const service = new Service({
    kind: "headnode",
    nodeId,
    bus: await newBus(nodeId),
    tracer: tracing.tracer,
    logger,
    heartbeatIntervalMs: 1000,
  });
  if (links) await service.listenLinks({ host: "127.0.0.1", port: 0, advertise: "127.0.0.1" });
  return service;
}

const volumeSubject = subjects.volume.build("links", 0);
const flush = { type: "volume.flush.v1" as const, volume: "links", partition: 0, epoch: 1 };

describe("the bus and the service shell over links", () => {
  test("requests and publishes go by link once one is offered, with the same results", async () => {
    const service = await newService("head-l1", true);
    const seen: string[] = [];
    service.serve(volumeSubject, { accept: ["volume.flush.v1"], link: "volume" }, (_m, context) => {
      seen.push(context.isRequest ? "request" : "publish");
      return { flushedOpNum: seen.length };
    });
    const client = await newBus("client-l1");
    client.enableLinks(["volume"]);
    // The first goes over NATS and asks for a link in the background.
    expect(await client.request(volumeSubject, flush)).toEqual({ flushedOpNum: 1 });
    await waitFor("a link", () => (client.linkStats().routed === 1 ? true : undefined), 5000, 10);
    expect(await client.request(volumeSubject, flush)).toEqual({ flushedOpNum: 2 });
    client.publish(volumeSubject, flush);
    expect(await client.request(volumeSubject, flush)).toEqual({ flushedOpNum: 4 });
    expect(seen).toEqual(["request", "request", "publish", "request"]);
    const sent = client.linkStats();
    expect(sent.link).toEqual({ requests: 2, publishes: 1 });
    expect(sent.nats).toEqual({ requests: 1, publishes: 0 });
    expect(sent.offers.linked).toBe(1);
    const received = service.linkServerStats();
    expect(received?.requests.volume).toBe(2);
    expect(received?.publishes.volume).toBe(1);
    // Node info shows both sides' counts.
    const info = service.info();
    expect(info.details).toMatchObject({ links: { received: { requests: { volume: 2 } } } });
    await service.stop("test");
    await client.connection.close();
  });

  test("a subject no longer served where its link points is resent over NATS at once", async () => {
    const old = await newService("head-l2", true);
    const handledBy: string[] = [];
    const served = old.serve(volumeSubject, { accept: ["volume.flush.v1"], link: "volume" }, () => {
      handledBy.push("old");
      return { flushedOpNum: 1 };
    });
    const client = await newBus("client-l2");
    client.enableLinks(["volume"]);
    await client.request(volumeSubject, flush);
    await waitFor("a link", () => (client.linkStats().routed === 1 ? true : undefined), 5000, 10);
    // A failover: the old primary stops serving, a new one (links on) takes the subject.
    await served.stop();
    const next = await newService("head-l3", true);
    next.serve(volumeSubject, { accept: ["volume.flush.v1"], link: "volume" }, () => {
      handledBy.push("new");
      return { flushedOpNum: 2 };
    });
    await next.bus.connection.flush(); // the subscription is known to nats-server
    expect(await client.request(volumeSubject, flush)).toEqual({ flushedOpNum: 2 });
    expect(handledBy).toEqual(["old", "new"]);
    expect(client.linkStats().fallbacks["no-responder"]).toBe(1);
    // …and the route is learned again, to the new server.
    await waitFor(
      "a new link",
      async () => {
        // Routes are learned as requests come (at most one offer a second per subject).
        await client.request(volumeSubject, flush);
        return client.linkStats().offers.linked === 2 ? true : undefined;
      },
      5000,
      50,
    );
    await client.request(volumeSubject, flush);
    expect(next.linkServerStats()?.requests.volume).toBeGreaterThanOrEqual(1);
    await Promise.all([old.stop("test"), next.stop("test")]);
    await client.connection.close();
  });

  test("a read's answer sent in parts by reference arrives as the answer encoded whole would, by link and by NATS", async () => {
    const service = await newService("head-l8", true);
    // Two pieces large enough to go by reference, one small, at offsets into one buffer
    // (as ranges of a cached chunk are), each with its own pattern.
    const chunk = new Uint8Array(4 * 1024 * 1024);
    for (let at = 0; at < chunk.length; at += 1) chunk[at] = (at * 7 + (at >>> 12)) & 0xff;
    const data = [
      chunk.subarray(0, 1024 * 1024),
      chunk.subarray(1024 * 1024 + 5, 1024 * 1024 + 5 + 4096),
      chunk.subarray(3 * 1024 * 1024, 4 * 1024 * 1024),
    ];
    service.serve(
      volumeSubject,
      { accept: ["volume.read.v1"], link: "volume", repliesByReference: true },
      () => ({ data }),
    );
    const read = {
      type: "volume.read.v1" as const,
      volume: "links",
      partition: 0,
      epoch: 1,
      reads: data.map((piece, index) => ({
        offset: index * 4 * 1024 * 1024,
        length: piece.length,
      })),
    };
    const client = await newBus("client-l8");
    client.enableLinks(["volume"]);
    const answers = [await client.request(volumeSubject, read)];
    await waitFor("a link", () => (client.linkStats().routed === 1 ? true : undefined), 5000, 10);
    answers.push(await client.request(volumeSubject, read));
    expect(client.linkStats().nats.requests).toBe(1);
    expect(client.linkStats().link.requests).toBe(1);
    for (const answer of answers) {
      expect(answer.data).toHaveLength(data.length);
      for (const [index, piece] of answer.data.entries()) {
        expect(Buffer.from(piece).equals(Buffer.from(data[index]!))).toBe(true);
      }
    }
    await service.stop("test");
    await client.connection.close();
  });

  test("a server that takes no links says so, and everything goes over NATS", async () => {
    const service = await newService("head-l4", false);
    service.serve(volumeSubject, { accept: ["volume.flush.v1"], link: "volume" }, () => ({
      flushedOpNum: 7,
    }));
    const client = await newBus("client-l4");
    client.enableLinks(["volume"]);
    await client.request(volumeSubject, flush);
    await waitFor("an offer", () =>
      client.linkStats().offers["no-link"] === 1 ? true : undefined,
    );
    expect(await client.request(volumeSubject, flush)).toEqual({ flushedOpNum: 7 });
    expect(client.linkStats().nats.requests).toBe(2);
    expect(client.linkStats().link.requests).toBe(0);
    await service.stop("test");
    await client.connection.close();
  });

  test("a server killed with a request in hand: Unavailable, never resent, route forgotten", async () => {
    const service = await newService("head-l5", true);
    let calls = 0;
    service.serve(volumeSubject, { accept: ["volume.flush.v1"], link: "volume" }, async () => {
      calls += 1;
      if (calls === 2) await new Promise(() => undefined); // never answers
      return { flushedOpNum: calls };
    });
    const client = await newBus("client-l5");
    client.enableLinks(["volume"]);
    await client.request(volumeSubject, flush);
    await waitFor("a link", () => (client.linkStats().routed === 1 ? true : undefined), 5000, 10);
    const pending = client.request(volumeSubject, flush, { deadlineMs: 10_000 });
    await waitFor("the request in hand", () => (calls === 2 ? true : undefined), 5000, 5);
    const failed = pending.then(
      () => undefined,
      (failure: unknown) => failure,
    );
    // What a kill does to the link: its connections close under the sender.
    await service.closeLinks();
    const error = await failed;
    expect(isBallastError(error, ErrorCode.Unavailable)).toBe(true);
    expect(calls).toBe(2);
    expect(client.linkStats().routed).toBe(0);
    expect(client.linkStats().fallbacks.closed).toBe(1);
    await client.connection.close();
    await service.bus.connection.close();
  });
});

describe("leaving a link", () => {
  test("a service stopping answers, over their links, the requests its handlers finish", async () => {
    const service = await newService("head-l6", true);
    let calls = 0;
    let release: () => void = () => undefined;
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    service.serve(volumeSubject, { accept: ["volume.flush.v1"], link: "volume" }, async () => {
      calls += 1;
      if (calls === 2) await released;
      return { flushedOpNum: calls };
    });
    const client = await newBus("client-l6");
    client.enableLinks(["volume"]);
    await client.request(volumeSubject, flush);
    await waitFor("a link", () => (client.linkStats().routed === 1 ? true : undefined), 5000, 10);
    const pending = client.request(volumeSubject, flush, { deadlineMs: 10_000 });
    await waitFor("the request in hand", () => (calls === 2 ? true : undefined), 5000, 5);
    const stopped = service.stop("test");
    setTimeout(release, 100);
    // Handled while stopping: its reply arrives (the links close after the handlers).
    expect(await pending).toEqual({ flushedOpNum: 2 });
    expect(client.linkStats().link.requests).toBe(1);
    await stopped;
    await client.connection.close();
  });

  test("a server that answers over its link that it no longer serves is left for NATS", async () => {
    // The old primary: its lease ran out, it answers Unavailable (as a node cut off from
    // NATS does). The new one serves the subject over NATS.
    const old = await newService("head-l7", true);
    let deposed = false;
    old.serve(volumeSubject, { accept: ["volume.flush.v1"], link: "volume" }, () => {
      if (deposed) throw new BallastError(ErrorCode.Unavailable, "the read lease ran out");
      return { flushedOpNum: 1 };
    });
    const client = await newBus("client-l7");
    client.enableLinks(["volume"]);
    await client.request(volumeSubject, flush);
    await waitFor("a link", () => (client.linkStats().routed === 1 ? true : undefined), 5000, 10);
    deposed = true;
    const failure = await client.request(volumeSubject, flush).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(isBallastError(failure, ErrorCode.Unavailable)).toBe(true);
    expect(client.linkStats().routed).toBe(0);
    // The retry goes over NATS, where the old node answers too (it still subscribes);
    // nothing sends it back to the link until an offer is asked again.
    const overNats = client.linkStats().nats.requests;
    await client.request(volumeSubject, flush).catch(() => undefined);
    expect(client.linkStats().nats.requests).toBe(overNats + 1);
    expect(client.linkStats().fallbacks["not-serving"]).toBe(1);
    await old.stop("test");
    await client.connection.close();
  });
});

describe("a sled's inbox over links", () => {
  /** A sled in this process, on its own data directory; links as `env` says. */
  async function startSled(nodeId: string, env: Record<string, string>) {
    const directory = await temporaryDirectory();
    const config = parseConfig(
      { ...commonOptions, ...sledOptions },
      {
        argv: ["--id", nodeId, "--data-dir", directory.path, "--nats", nats.url],
        env: { BALLAST_SLED_DEVICES: "1", BALLAST_SLED_DEVICE_BYTES: String(16 << 20), ...env },
      },
    );
    const service = new Service({
      kind: "sled",
      nodeId,
      bus: await newBus(nodeId),
      tracer: undefined,
      logger,
      heartbeatIntervalMs: 1000,
    });
    await sledDefinition.start(service, config);
    return {
      service,
      stop: async () => {
        await service.stop("test");
        await directory.remove();
      },
    };
  }

  test("a head node's chunk writes and reads go to a sled by link, and to a sled with links off by NATS", async () => {
    const linked = await startSled("sled-l1", {});
    const unlinked = await startSled("sled-l2", { BALLAST_LINK_LISTEN: "off" });
    const head = await newBus("head-l8");
    head.enableLinks(["replica", "node"]); // as a head node with links on
    const owner = { volume: "links", partition: 0 };
    const chunk = new Uint8Array(4 << 20).map((_, index) => index % 251);
    try {
      for (const sled of [linked, unlinked]) {
        const inbox = subjects.node.build("sled", sled.service.nodeId);
        // The first goes over NATS and asks for a link; the next ones by link, if offered.
        await head.request(inbox, { type: "node.info.v1" });
        await waitFor("an offer", () =>
          head.linkStats().offers.linked + head.linkStats().offers["no-link"] ===
          (sled === linked ? 1 : 2)
            ? true
            : undefined,
        );
        const write = { type: "sled.chunk.write.v1" as const, owner, chunkId: "c-1", data: chunk };
        expect((await head.request(inbox, write)).bytes).toBe(chunk.byteLength);
        const { data } = await head.request(inbox, {
          type: "sled.chunk.read.v1",
          owner,
          chunkId: "c-1",
          offset: 4096,
          length: 8192,
        });
        expect(Buffer.from(data).equals(Buffer.from(chunk.subarray(4096, 12288)))).toBe(true);
        // Large reads, whose replies a sled sends in parts over its link (the data by
        // reference): the same bytes.
        const large = await head.request(inbox, {
          type: "sled.chunk.read.v1",
          owner,
          chunkId: "c-1",
          offset: 1 << 20,
          length: 2 << 20,
        });
        expect(Buffer.from(large.data).equals(Buffer.from(chunk.subarray(1 << 20, 3 << 20)))).toBe(
          true,
        );
        const ranges = [
          { offset: 0, length: 1 << 20 },
          { offset: 8192, length: 4096 },
          { offset: 3 << 20, length: 1 << 20 },
        ];
        const many = await head.request(inbox, {
          type: "sled.chunk.read-many.v1",
          owner,
          reads: ranges.map((range) => ({ chunkId: "c-1", ...range })),
        });
        expect(many.failed).toBeUndefined();
        for (const [index, { offset, length }] of ranges.entries()) {
          const expected = Buffer.from(chunk.subarray(offset, offset + length));
          expect(Buffer.from(many.data[index]!).equals(expected)).toBe(true);
        }
      }
      // All by link to the one, all by NATS to the other (which offered no link).
      expect(linked.service.linkServerStats()?.requests.node).toBe(4);
      expect(unlinked.service.linkServerStats()).toBeUndefined();
      expect(head.linkStats().link.requests).toBe(4);
      // node.info.v1 to each, then the unlinked sled's write and reads (offers are not counted).
      expect(head.linkStats().nats.requests).toBe(6);
      expect(head.linkStats().offers).toMatchObject({ linked: 1, "no-link": 1 });
    } finally {
      await head.connection.close();
      await Promise.all([linked.stop(), unlinked.stop()]);
    }
  });
});

describe("a cluster over links", () => {
  let cluster: TestCluster | undefined;
  afterAll(async () => {
    await cluster?.stop();
  });

  /** The `links` part of a node's info details (runtime service.ts). */
  async function linksOf(bus: Bus, id: string): Promise<NodeLinks> {
    const info = await bus.request(
      subjects.node.build("headnode", id),
      { type: "node.info.v1" },
      { deadlineMs: 2000 },
    );
    return (info.details as { links: NodeLinks }).links;
  }

  test("volume requests and replication go over links, and a kill -9 of the primary loses no acknowledged write", async () => {
    cluster = await startTestCluster({ headNodes: 3, sleds: 2 });
    const control = cluster.bus;
    await control.request(subjects.coordinator.build(), {
      type: "volume.create.v1",
      name: "linked",
      sizeBytes: 8 * 1024 * 1024,
      partitionBytes: 8 * 1024 * 1024,
      replicaCount: 2,
    });
    const user = await connectTestBus(cluster.cluster.natsUrl, "client");
    const plain = await connectTestBus(cluster.cluster.natsUrl, "client");
    try {
      const volume = await new BallastClient(user.bus).openVolume("linked");
      const written = new Map<number, number>();
      const write = async (block: number, fill: number) => {
        await volume.write(block * blockBytes, new Uint8Array(blockBytes).fill(fill));
        written.set(block, fill);
      };
      // The first writes go over NATS while the link is offered in the background.
      await waitFor(
        "volume requests over a link",
        async () => {
          await write(written.size % 512, 1 + (written.size % 250));
          return user.bus.linkStats().link.requests >= 20 ? true : undefined;
        },
        10_000,
        0,
      );
      const before = (await describeVolume(control, "linked")).partitions[0]!;
      const primary = before.primary;
      const secondary = before.secondaries[0]!;
      // The primary may have asked its secondary for a link before the secondary served
      // its replica subject (no responder): it asks again a second later, as notes go on.
      const onSecondary = await waitFor(
        "notes over a link",
        async () => {
          await write(written.size % 512, 1 + (written.size % 250));
          const links = await linksOf(control, secondary);
          return links.received.publishes.replica > 0 ? links : undefined;
        },
        10_000,
        20,
      );
      const onPrimary = await linksOf(control, primary);
      // The primary took the client's requests by link and its secondary's acks; the
      // secondary took the primary's notes by link.
      expect(onPrimary.received.requests.volume).toBeGreaterThanOrEqual(20);
      expect(onPrimary.received.publishes.replica).toBeGreaterThan(0);
      expect(onSecondary.received.publishes.replica).toBeGreaterThan(0);
      expect(onPrimary.sent.link.publishes).toBeGreaterThan(0);
      // Its sleds' inboxes are linked too (the chunks it flushes, the reads it misses).
      expect(onPrimary.sent.scopes).toEqual(["replica", "node"]);
      expect(user.bus.linkStats().link.requests).toBeGreaterThan(
        user.bus.linkStats().nats.requests,
      );

      // kill -9 the primary while writes are in flight; every acknowledged one must read back.
      let stop = false;
      let next = 0;
      const writers = [0, 1, 2, 3].map(async (lane) => {
        while (!stop) {
          const block = 600 + lane * 300 + (next++ % 300);
          await write(block, 1 + (block % 250));
        }
      });
      await new Promise((resolve) => setTimeout(resolve, 300));
      await cluster.cluster.kill(primary);
      await waitFor(
        "a new primary",
        async () => {
          const state = (await describeVolume(control, "linked")).partitions[0]!;
          return state.primary !== primary ? state : undefined;
        },
        20_000,
        100,
      );
      const linkedBefore = (await linksOf(control, secondary)).received.requests.volume;
      await new Promise((resolve) => setTimeout(resolve, 1500));
      stop = true;
      await Promise.all(writers);
      // The client forgot the dead primary's route and found the new one's.
      expect(
        user.bus.linkStats().fallbacks.closed + user.bus.linkStats().fallbacks.timeout,
      ).toBeGreaterThan(0);
      await waitFor(
        "volume requests over a link to the new primary",
        async () => {
          await write(5000 % 2048, 9);
          const now = (await linksOf(control, secondary)).received.requests.volume;
          return now > linkedBefore ? true : undefined;
        },
        10_000,
        50,
      );
      for (const [block, fill] of written) {
        const data = await volume.read(block * blockBytes, blockBytes);
        expect([...new Set(data)], `block ${block}`).toEqual([fill]);
      }

      // A client with links off works, all over NATS.
      const unlinked = await new BallastClient(plain.bus, { links: false }).openVolume("linked");
      await unlinked.write(0, new Uint8Array(blockBytes).fill(77));
      expect([...new Set(await unlinked.read(0, blockBytes))]).toEqual([77]);
      expect(plain.bus.linkStats().scopes).toEqual([]);
      expect(plain.bus.linkStats().link.requests).toBe(0);
      await Promise.all([volume.close(), unlinked.close()]);
    } finally {
      await Promise.all([user.close(), plain.close()]);
    }
  });
});

interface NodeLinks {
  received: LinkServerStats;
  sent: ReturnType<Bus["linkStats"]>;
}
