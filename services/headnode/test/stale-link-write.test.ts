// A stale copy of a write, read late from a link, must not land over a later write its
// client was told is done (the ordering fence: replica/ordering-fence.ts). The whole
// path is real but NATS: a BallastClient's Volume on a real Bus, a real LinkServer and
// LinkConnection on loopback, and a real head node (its shell, PartitionHost, journal on
// disk) as the partition's lone primary. NATS is faked in memory as in the runtime's
// bus-links.test.ts: it answers the first link offer (later ones fail, so that the
// client stays on NATS once it has given the link up, as the 1 s offer pacing makes
// likely) and carries every other request to the head node or the fake coordinator.
//
// The interleaving, in one epoch (a primary slow but making progress):
// 1. Two requests on the link are held unanswered; the server, at its unanswered bound
//    (2 here), stops reading the connection.
// 2. W1's first attempt goes on the link and sits unread. It times out at the client,
//    which forgets the route; W1's retry goes over NATS and is acknowledged.
// 3. The caller writes W2 to the same block; it goes over NATS and is acknowledged.
// 4. The held requests are answered: the server reads W1's stale frame. Before the fence
//    it got an op above W2's, and a read then returned W1 over the acknowledged W2.

import { BallastClient } from "@ballast/client";
import {
  type BallastError,
  decodeMessage,
  decodeReply,
  ErrorCode,
  encodeError,
  encodeResult,
  type Message,
  subjects,
} from "@ballast/protocol";
import { Bus, createLogger, type LinkMessage, LinkServer } from "@ballast/runtime";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterEach, expect, test } from "vitest";
// Not in the runtime's public entry: a service seals offers itself. This fake NATS
// answers offers in its place, as bus-links.test.ts does.
import { SealKeys } from "../../../packages/runtime/src/link-seal.ts";
import { type FakeService, startHeadNode } from "./fake-service.ts";

const logger = createLogger({ service: "test", nodeId: "test", level: "silent" });
const partitionBytes = 1024 * 1024;
const volumeSubject = subjects.volume.build("vol", 0);
const flush = { type: "volume.flush.v1" as const, volume: "vol", partition: 0, epoch: 1 };

const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

async function waitUntil(what: string, check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!check()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** The head node's answer to a volume message, as reply bytes. */
async function answer(service: FakeService, message: Message): Promise<Uint8Array> {
  try {
    return encodeResult(await service.call(volumeSubject, message as never));
  } catch (error) {
    return encodeError(error);
  }
}

/** The volume's description, as the coordinator would give it. */
const description = {
  name: "vol",
  id: "vol",
  sizeBytes: partitionBytes,
  replicaCount: 2,
  partitionBytes,
  createdAtMs: 0,
  partitions: [
    {
      partition: 0,
      partitionStart: 0,
      partitionBytes,
      epoch: 1,
      primary: "head-1",
      secondaries: [],
      inSync: ["head-1"],
      learners: [],
      rebuilds: [],
      checkpoints: [],
    },
  ],
};

/** NATS in memory: the first link offer answered for `server`, requests to the head node. */
function fakeNats(server: LinkServer, service: FakeService) {
  const keys = new SealKeys();
  const inboxes: ((error: Error | null, message: unknown) => void)[] = [];
  let offers = 0;
  let closeNow: () => void = () => undefined;
  const closed = new Promise<void>((resolve) => {
    closeNow = resolve;
  });
  const connection = {
    subscribe(_subject: string, options: { callback: (typeof inboxes)[number] }) {
      inboxes.push(options.callback);
      return {};
    },
    publish(_subject: string, data: Uint8Array, options: { reply?: string } = {}) {
      const to = options.reply;
      if (to === undefined) return;
      const message = decodeMessage(data);
      let reply: Promise<Uint8Array>;
      if (message.type === "link.offer.v1") {
        offers += 1;
        reply = Promise.resolve(
          offers === 1
            ? encodeResult({
                nodeId: "head-1",
                scope: "volume",
                address: server.address,
                key: keys.publicKey,
                sealed: keys.seal(message.key, server.tokenFor("volume")),
              })
            : encodeError(new Error("no more offers in this test")),
        );
      } else if (message.type === "volume.describe.v1") {
        reply = Promise.resolve(encodeResult(description));
      } else {
        reply = answer(service, message);
      }
      void reply.then((bytes) => {
        for (const inbox of inboxes) inbox(null, { subject: to, data: bytes, headers: undefined });
      });
    },
    closed: () => closed,
    /** No status ever changes here: the stream ends when the connection closes. */
    async *status(): AsyncGenerator<never> {
      await closed;
      yield* [];
    },
  };
  return { connection: connection as unknown as NatsConnection, close: closeNow };
}

test("a write's stale copy read late from a link is refused, and the later acknowledged write stays", async () => {
  const started = await startHeadNode("ballast-stale-link-");
  cleanup.push(() => started.stop());
  const { service } = started;
  await service.inbox({
    type: "headnode.configure.v1",
    volume: "vol",
    volumeId: "vol",
    partition: 0,
    partitionStart: 0,
    partitionBytes,
    epoch: 1,
    primary: "head-1",
    secondaries: [],
    sleds: ["sled-1"],
  });

  const server = await LinkServer.listen({
    host: "127.0.0.1",
    port: 0,
    advertise: "127.0.0.1",
    logger,
    unansweredMax: 2,
  });
  cleanup.push(() => server.close());
  /** Link requests held unanswered (flushes), and what each write read off the link got. */
  const held: LinkMessage[] = [];
  const linkWrites: { fill: number; outcome: string }[] = [];
  server.route(volumeSubject, "volume", (linked) => {
    const message = decodeMessage(linked.data);
    if (message.type === "volume.flush.v1") {
      held.push(linked);
      return;
    }
    void (async () => {
      const reply = await answer(service, message);
      if (message.type === "volume.write.v1") {
        let outcome = "applied";
        try {
          decodeReply("volume.write.v1", reply);
        } catch (error) {
          outcome = (error as BallastError).code;
        }
        linkWrites.push({ fill: message.writes[0]!.data[0]!, outcome });
      }
      linked.respond(reply);
    })();
  });

  const nats = fakeNats(server, service);
  cleanup.push(() => nats.close());
  const bus = new Bus(nats.connection, undefined);
  const client = new BallastClient(bus, { requestDeadlineMs: 300, retryBudgetMs: 20_000 });
  const volume = await client.openVolume("vol");
  // The first request goes over NATS and learns the link in the background.
  await bus.request(volumeSubject, flush);
  await waitUntil("the link is routed", () => bus.linkStats().routed === 1);

  // 1. Two requests on the link, held: the server stops reading the connection.
  const holds = [
    bus.request(volumeSubject, flush, { deadlineMs: 30_000 }),
    bus.request(volumeSubject, flush, { deadlineMs: 30_000 }),
  ];
  await waitUntil("the server holds two requests", () => held.length === 2);

  // 2. W1: its first attempt sits unread on the link, times out, and the retry goes
  // over NATS and is acknowledged.
  await volume.write(0, new Uint8Array(4096).fill(0xa1));
  expect(bus.linkStats().fallbacks.timeout).toBe(1);
  expect(bus.linkStats().routed).toBe(0);

  // 3. W2 to the same block, over NATS, acknowledged.
  await volume.write(0, new Uint8Array(4096).fill(0xb2));
  expect(await volume.read(0, 4096)).toEqual(new Uint8Array(4096).fill(0xb2));

  // 4. The held requests are answered; the server reads W1's stale frame.
  for (const message of held) message.respond(encodeResult({ flushedOpNum: 0 }));
  await Promise.all(holds);
  await waitUntil("the stale frame was handled", () => linkWrites.length === 1);
  // What the caller was told is done is what a read returns (before the fence: W1's).
  const after = await volume.read(0, 4096);
  expect(after[0]?.toString(16)).toBe("b2");
  expect(after).toEqual(new Uint8Array(4096).fill(0xb2));
  expect(linkWrites).toEqual([{ fill: 0xa1, outcome: ErrorCode.Superseded }]);
  await volume.close();
});

test("the head node passes the fence of trims and write-zeroes to the core, and takes unfenced requests as before", async () => {
  const started = await startHeadNode("ballast-stale-fence-");
  cleanup.push(() => started.stop());
  const { service } = started;
  await service.inbox({
    type: "headnode.configure.v1",
    volume: "vol",
    volumeId: "vol",
    partition: 0,
    partitionStart: 0,
    partitionBytes,
    epoch: 1,
    primary: "head-1",
    secondaries: [],
    sleds: ["sled-1"],
  });
  const session = "c".repeat(32);
  const address = { volume: "vol", partition: 0, epoch: 1 };
  const ranges = [{ offset: 0, length: 4096 }];
  const codeOf = (message: Record<string, unknown>) =>
    service.call(volumeSubject, message).then(
      () => "applied",
      (error: BallastError) => error.code,
    );
  const zeroes = { type: "volume.write-zeroes.v1", ...address, ranges };
  const trim = { type: "volume.trim.v1", ...address, ranges };
  expect(await codeOf({ ...zeroes, fence: { session, sequence: 5 } })).toBe("applied");
  expect(await codeOf({ ...trim, fence: { session, sequence: 3 } })).toBe(ErrorCode.Superseded);
  expect(await codeOf({ ...zeroes, fence: { session, sequence: 4 } })).toBe(ErrorCode.Superseded);
  expect(await codeOf({ ...trim, fence: { session, sequence: 6 } })).toBe("applied");
  // Unfenced (an older client): taken whatever came before.
  expect(await codeOf(trim)).toBe("applied");
  expect(await codeOf({ ...zeroes, fence: { session: "d".repeat(32), sequence: 1 } })).toBe(
    "applied",
  );
});
