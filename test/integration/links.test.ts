// Links (protocol link.ts, runtime link-server.ts, link-client.ts): the Bus and the
// service shell against a real nats-server in this process, then a real cluster whose
// volume requests and replication go over links, through a primary's kill -9.

import { type RunningNatsServer, startNatsServer } from "@ballast/cli";
import { ErrorCode, isBallastError, subjects } from "@ballast/protocol";
import { Bus, connectNats, createLogger, Service, startTracing } from "@ballast/runtime";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { temporaryDirectory, waitFor } from "../support/cluster.ts";

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
    // What a kill does to the link: its connections close under the sender.
    await service.closeLinks();
    const error = await pending.then(
      () => undefined,
      (failure: unknown) => failure,
    );
    expect(isBallastError(error, ErrorCode.Unavailable)).toBe(true);
    expect(calls).toBe(2);
    expect(client.linkStats().routed).toBe(0);
    expect(client.linkStats().fallbacks.closed).toBe(1);
    await client.connection.close();
    await service.bus.connection.close();
  });
});
