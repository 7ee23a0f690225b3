// Link tokens age (runtime link-server.ts, link-client.ts), on a real nats-server with
// the generated permissions: a client's links keep working across token rotations while
// its NATS password is good, and once the password is rotated away (the server's config
// reloaded) a token it holds opens no new link and a link it holds open is closed.

import { writeFile } from "node:fs/promises";
import {
  natsServerConfig,
  type RunningNatsServer,
  randomPassword,
  startNatsServer,
} from "@ballast/cli";
import {
  decodeReply,
  encodeMessageParts,
  type NatsRole,
  permissionsOf,
  subjects,
} from "@ballast/protocol";
import {
  Bus,
  connectNats,
  createLogger,
  LinkConnection,
  SealKeys,
  Service,
} from "@ballast/runtime";
import { afterAll, beforeAll, expect, test } from "vitest";
import { temporaryDirectory, waitFor } from "../support/cluster.ts";

/** Short, so that the test sees several rotations; the default is 10 min. */
const lifetimeMs = 3000;
const roles = ["headnode", "client", "operator"] as const satisfies readonly NatsRole[];
const passwords: Record<(typeof roles)[number], string> = {
  headnode: randomPassword(),
  client: randomPassword(),
  operator: randomPassword(),
};
const logger = createLogger({ service: "test", nodeId: "test", level: "silent" });
const subject = subjects.volume.build("tokens", 0);
const flush = { type: "volume.flush.v1" as const, volume: "tokens", partition: 0, epoch: 1 };

let nats: RunningNatsServer;
let removeDirectory: () => Promise<void>;

function users() {
  return roles.map((role) => ({
    user: role,
    password: passwords[role],
    permissions: permissionsOf(role),
  }));
}

beforeAll(async () => {
  const directory = await temporaryDirectory();
  removeDirectory = directory.remove;
  nats = await startNatsServer({ directory: directory.path, users: users() });
});
afterAll(async () => {
  await nats?.stop();
  await removeDirectory?.();
});

function connectAs(role: (typeof roles)[number], password = passwords[role]) {
  return connectNats({
    servers: nats.url,
    name: `tokens-${role}`,
    logger,
    access: { credentials: { user: role, password } },
    connectTimeoutMs: 5000,
  });
}

test("links outlive token rotations while the client's password is good, and not its rotation", async () => {
  const service = new Service({
    kind: "headnode",
    nodeId: "head-tokens",
    bus: new Bus(await connectAs("headnode"), undefined),
    tracer: undefined,
    logger,
    heartbeatIntervalMs: 1000,
  });
  await service.listenLinks({
    host: "127.0.0.1",
    port: 0,
    advertise: "127.0.0.1",
    tokenLifetimeMs: lifetimeMs,
  });
  let handled = 0;
  service.serve(subject, { accept: ["volume.flush.v1"], link: "volume" }, async () => {
    handled += 1;
    // A little later, so that requests are in flight when a link is renewed.
    await new Promise((resolve) => setTimeout(resolve, 2));
    return { flushedOpNum: handled };
  });
  const clientConnection = await connectAs("client");
  const client = new Bus(clientConnection, undefined);
  client.enableLinks(["volume"]);
  const disconnected = (async () => {
    for await (const status of clientConnection.status()) {
      if (status.type === "disconnect") return;
    }
  })();
  try {
    await client.request(subject, flush); // over NATS; asks an offer
    await waitFor("a link", () => (client.linkStats().routed === 1 ? true : undefined), 5000, 10);

    // Requests, four at a time, while the token is renewed three times.
    const latenciesMs: number[] = [];
    const startedAtMs = performance.now();
    const worker = async () => {
      while (
        client.linkStats().offers.renewed < 3 &&
        performance.now() - startedAtMs < 10 * lifetimeMs
      ) {
        const sentAtMs = performance.now();
        await client.request(subject, flush);
        latenciesMs.push(performance.now() - sentAtMs);
      }
    };
    await Promise.all([worker(), worker(), worker(), worker()]);
    const sent = client.linkStats();
    expect(sent.offers.renewed).toBeGreaterThanOrEqual(3);
    expect(sent.offers.expired).toBe(0);
    // Not one request fell back to NATS or failed at a rotation: only the first went by NATS.
    expect(sent.nats.requests).toBe(1);
    expect(sent.link.requests).toBe(latenciesMs.length);
    expect(Object.values(sent.fallbacks).every((count) => count === 0)).toBe(true);
    // Each renewal on the one link there is (the offer says the server takes them there).
    expect(service.linkServerStats()).toMatchObject({
      accepted: 1,
      expired: 0,
      refused: 0,
      closedBadly: 0,
      renewed: sent.offers.renewed,
    });
    latenciesMs.sort((a, b) => a - b);
    const at = (fraction: number) =>
      latenciesMs[Math.min(latenciesMs.length - 1, Math.floor(fraction * latenciesMs.length))]!;
    process.stdout.write(
      `across ${sent.offers.renewed} renewals: ${latenciesMs.length} requests by link, ` +
        `median ${at(0.5).toFixed(2)} ms, p99 ${at(0.99).toFixed(2)} ms, max ${at(1).toFixed(2)} ms\n`,
    );

    // A holder of the client's password asks an offer itself and keeps the token and a
    // link, renewing neither (as a leaked password's holder would).
    const keys = new SealKeys();
    const offer = await client.request(
      subject,
      { type: "link.offer.v1", key: keys.publicKey },
      { viaNats: true },
    );
    const token = keys.open(offer.key!, offer.sealed!);
    expect(offer.tokenValidMs).toBeGreaterThanOrEqual(lifetimeMs);
    const held = new LinkConnection(offer.address!, "volume", token, () => undefined);
    await held.ready;
    const reply = await held.request(subject, encodeMessageParts(flush), undefined, 5000);
    expect(decodeReply("volume.flush.v1", reply).flushedOpNum).toBeGreaterThan(0);

    // The operator rotates the client's password: nats-server reloads its config and
    // drops the connection that used the old one.
    const oldPassword = passwords.client;
    passwords.client = randomPassword();
    await writeFile(
      nats.configPath,
      natsServerConfig({ port: nats.port, storeDir: nats.storeDir, users: users() }),
      { mode: 0o600 },
    );
    process.kill(nats.pid, "SIGHUP");
    await disconnected;
    const refusedBefore = service.linkServerStats()!.refused;

    // Within two lifetimes (and a drain) the held link is closed by the server...
    await waitFor("the held link closed", () => (held.open ? undefined : true), 6 * lifetimeMs);
    const received = service.linkServerStats()!;
    expect(received.expired).toBeGreaterThanOrEqual(1);
    expect(received.closedBadly).toBe(0);
    // ...its token opens no new one...
    const again = new LinkConnection(offer.address!, "volume", token, () => undefined);
    await expect(again.ready).rejects.toThrow(/wrong or expired token/);
    expect(service.linkServerStats()!.refused).toBe(refusedBefore + 1);
    // ...the client's own links are gone (its NATS connection closed on the refused
    // reconnect, and its links with it; had it stayed, they would run out unrenewed)...
    await waitFor(
      "no link open",
      () => (service.linkServerStats()!.open === 0 ? true : undefined),
      6 * lifetimeMs,
    );
    // ...and nothing gets a new token: the old password no longer reaches NATS.
    await expect(connectAs("client", oldPassword)).rejects.toThrow();
    held.close();
    again.close();
  } finally {
    await clientConnection.close();
    await service.stop("test");
  }
}, 90_000);
