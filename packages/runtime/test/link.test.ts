// Links over loopback in this process: a real LinkServer and real LinkConnections and
// routes; the offer (over NATS in a running cluster) is a fake function here that hands
// out what the server's `link.offer.v1` answer would.

import { connect, createServer, type Socket } from "node:net";
import {
  BallastError,
  decodeMessage,
  ErrorCode,
  encodeLinkFrame,
  encodeMessageParts,
  encodeResult,
  isAssembledByLink,
  LinkFrameDecoder,
  type LinkScope,
  linkProtocolVersion,
  subjects,
} from "@ballast/protocol";
import { afterEach, describe, expect, test } from "vitest";
import {
  linkConnectTimeoutMs,
  linkOfferRefusedRetryMs,
  linkOfferRetryMs,
  linkOfferTimesKeptMax,
  linkPingIntervalMs,
  linkSilenceMsMax,
  linkStableMs,
} from "../src/constants.ts";
import { LinkConnection, LinkNotHandled, type LinkOffer, LinkRoutes } from "../src/link-client.ts";
import { SealKeys } from "../src/link-seal.ts";
import { type LinkMessage, LinkServer, linkProof } from "../src/link-server.ts";
import { createLogger } from "../src/logger.ts";

const logger = createLogger({ service: "test", nodeId: "test", level: "silent" });
const volumeSubject = subjects.volume.build("v", 0);
const flush = { type: "volume.flush.v1" as const, volume: "v", partition: 0, epoch: 1 };

const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

async function newServer(
  options: { tokenLifetimeMs?: number; tokenClock?: () => number } = {},
): Promise<LinkServer> {
  const server = await LinkServer.listen({
    host: "127.0.0.1",
    port: 0,
    advertise: "127.0.0.1",
    logger,
    ...options,
  });
  cleanup.push(() => server.close());
  return server;
}

/** A connection to `server` of `scope`, open (hello-ok seen) unless the server refuses. */
function newConnection(
  server: LinkServer,
  scope: LinkScope,
  token: Uint8Array = server.tokenFor(scope),
): LinkConnection {
  const connection = new LinkConnection(server.address, scope, token, () => undefined);
  cleanup.push(() => connection.close());
  return connection;
}

function offerOf(server: LinkServer, scope: LinkScope): LinkOffer {
  return { address: server.address, scope, token: server.tokenFor(scope) };
}

/** Answers each request with `{ flushedOpNum: n }`, n counting from 1. */
function answering(received: LinkMessage[]) {
  return (message: LinkMessage) => {
    received.push(message);
    message.respond(encodeResult({ flushedOpNum: received.length }));
  };
}

function codeOf(error: unknown): string {
  expect(error).toBeInstanceOf(BallastError);
  return (error as BallastError).code;
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error("expected a rejection");
}

describe("links over loopback", () => {
  test("a request reaches the routed subject with its bytes and trace context; the reply comes back", async () => {
    const server = await newServer();
    const received: LinkMessage[] = [];
    server.route(volumeSubject, "volume", answering(received));
    const connection = newConnection(server, "volume");
    await connection.ready;
    const traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    const reply = await connection.request(
      volumeSubject,
      encodeMessageParts(flush),
      traceparent,
      1000,
    );
    expect(decodeMessage(received[0]!.data)).toEqual(flush);
    expect(received[0]!.reply).toBeTruthy();
    expect(received[0]!.headers?.get("traceparent")).toBe(traceparent);
    expect(Buffer.from(reply).equals(Buffer.from(encodeResult({ flushedOpNum: 1 })))).toBe(true);
    expect(server.stats().requests.volume).toBe(1);
  });

  test("large and small replies in flight together come back whole, the large each in a buffer of its own", async () => {
    const server = await newServer();
    // Each request names the size of its reply; the reply's bytes say which request it is.
    const sizes = [3 * 1024 * 1024 + 5, 100, 1024 * 1024, 64 * 1024, 7, 2 * 1024 * 1024 - 1];
    const replyOf = (index: number) => {
      const bytes = Buffer.alloc(sizes[index]!, index + 1);
      for (let at = 0; at < bytes.byteLength; at += 4093) bytes[at] = (at >>> 12) & 0xff;
      return bytes;
    };
    server.route(volumeSubject, "volume", (message: LinkMessage) => {
      message.respond(replyOf(message.data[0]!));
    });
    const connection = newConnection(server, "volume");
    await connection.ready;
    const replies = await Promise.all(
      sizes.map((_, index) =>
        connection.request(volumeSubject, [Uint8Array.of(index)], undefined, 5000),
      ),
    );
    for (const [index, reply] of replies.entries()) {
      expect(Buffer.from(reply).equals(replyOf(index))).toBe(true);
      if (reply.byteLength >= 1024 * 1024) expect(isAssembledByLink(reply)).toBe(true);
    }
    expect(connection.open).toBe(true);
  });

  test("a publish arrives without a reply subject; many interleave with requests in order", async () => {
    const server = await newServer();
    const subject = subjects.replica.build("v", 0, "n");
    const received: LinkMessage[] = [];
    server.route(subject, "replica", (message) => {
      received.push(message);
      if (message.reply) message.respond(encodeResult({ flushedOpNum: received.length }));
    });
    const connection = newConnection(server, "replica");
    await connection.ready;
    const ack = {
      type: "replica.ack.v1" as const,
      volume: "v",
      partition: 0,
      epoch: 1,
      from: "n",
      session: 1,
      durableOpNum: 0,
      commitOpNum: 0,
      mismatch: false,
    };
    for (let index = 0; index < 50; index += 1) {
      expect(
        connection.publish(subject, encodeMessageParts({ ...ack, durableOpNum: index }), undefined),
      ).toBe(true);
    }
    await connection.request(subject, encodeMessageParts(flush), undefined, 1000);
    expect(received).toHaveLength(51);
    expect(received.slice(0, 50).map((message) => message.reply)).toEqual(
      Array(50).fill(undefined),
    );
    expect(
      received
        .slice(0, 50)
        .map((message) => (decodeMessage(message.data) as typeof ack).durableOpNum),
    ).toEqual([...Array(50).keys()]);
  });

  test("a subject not routed here is answered no-responder, told apart as not handled", async () => {
    const server = await newServer();
    const received: LinkMessage[] = [];
    const unroute = server.route(volumeSubject, "volume", answering(received));
    const connection = newConnection(server, "volume");
    await connection.ready;
    unroute();
    const error = await rejection(
      connection.request(volumeSubject, encodeMessageParts(flush), undefined, 1000),
    );
    expect(error).toBeInstanceOf(LinkNotHandled);
    expect(received).toHaveLength(0);
    // The link stays open for other subjects.
    expect(connection.open).toBe(true);
  });

  test("a wrong token is refused and the link never opens", async () => {
    const server = await newServer();
    const wrong = newConnection(server, "volume", new Uint8Array(32));
    expect(codeOf(await rejection(wrong.ready))).toBe(ErrorCode.Unavailable);
    // The replica scope's token does not open a volume link either.
    const other = newConnection(server, "volume", server.tokenFor("replica"));
    expect(codeOf(await rejection(other.ready))).toBe(ErrorCode.Unavailable);
    expect(server.stats().refused).toBe(2);
  });

  test("a hello must prove the token for this connection's nonce: neither the token nor a replayed proof opens one", async () => {
    const server = await newServer();
    const port = Number(server.address.split(":")[1]);
    const token = server.tokenFor("replica");
    /** Opens a raw connection, answers its challenge with `proofOf(nonce)`; the frames back. */
    const attempt = async (proofOf: (nonce: Uint8Array) => Uint8Array) => {
      const socket = connect({ host: "127.0.0.1", port });
      cleanup.push(() => socket.destroy());
      socket.on("error", () => undefined);
      const decoder = new LinkFrameDecoder();
      const frames: string[] = [];
      let nonce: Uint8Array | undefined;
      socket.on("data", (chunk) => {
        for (const frame of decoder.push(chunk)) {
          frames.push(frame.kind);
          if (frame.kind !== "challenge") continue;
          nonce = Uint8Array.from(frame.nonce);
          for (const part of encodeLinkFrame({
            kind: "hello",
            version: linkProtocolVersion,
            scope: "replica",
            proof: proofOf(nonce),
          })) {
            socket.write(part);
          }
        }
      });
      await waitUntil(() => frames.length === 2);
      return { frames, nonce: nonce!, socket };
    };
    const good = await attempt((nonce) => linkProof(token, nonce));
    expect(good.frames).toEqual(["challenge", "hello-ok"]);
    // What a reader of that connection saw: its proof, and its nonce.
    const seen = linkProof(token, good.nonce);
    const replayed = await attempt(() => seen);
    expect(replayed.frames).toEqual(["challenge", "refused"]);
    expect(Buffer.from(replayed.nonce).equals(Buffer.from(good.nonce))).toBe(false);
    const bare = await attempt(() => token);
    expect(bare.frames).toEqual(["challenge", "refused"]);
    expect(server.stats().refused).toBe(2);
  });

  test("connections beyond the caps (open, and not yet through hello) are closed as they arrive", async () => {
    const server = await LinkServer.listen({
      host: "127.0.0.1",
      port: 0,
      advertise: "127.0.0.1",
      logger,
      connectionsMax: 3,
      handshakesMax: 2,
    });
    cleanup.push(() => server.close());
    const port = Number(server.address.split(":")[1]);
    const open = () => {
      const socket = connect({ host: "127.0.0.1", port });
      cleanup.push(() => socket.destroy());
      socket.on("error", () => undefined);
      const closed = new Promise<void>((resolve) => socket.on("close", () => resolve()));
      // Read, as a sender does: the refusal of one turned away, left unread, holds its close.
      const refused = () => {
        socket.resume();
        return closed;
      };
      return { socket, closed, refused };
    };
    const token = server.tokenFor("volume");
    const a = open();
    const b = open();
    await waitUntil(() => server.stats().accepted === 2);
    // Two silent connections hold both handshake places: a third is turned away.
    const c = open();
    await c.refused();
    expect(server.stats().turnedAway).toBe(1);
    // One through hello frees its handshake place; the open cap still counts it.
    await rawHello(a.socket, "volume", token);
    const d = open();
    await rawHello(d.socket, "volume", token);
    await waitUntil(() => server.stats().accepted === 3);
    const e = open();
    await e.refused();
    expect(server.stats()).toMatchObject({ accepted: 3, open: 3, turnedAway: 2 });
    // Closing one makes room again.
    b.socket.destroy();
    await waitUntil(() => server.stats().open === 2);
    const f = open();
    await rawHello(f.socket, "volume", token);
    expect(server.stats()).toMatchObject({ accepted: 4, turnedAway: 2 });
  });

  test("after refusing a hello the server takes nothing more from that connection", async () => {
    const server = await newServer();
    const received: LinkMessage[] = [];
    server.route(volumeSubject, "volume", answering(received));
    const raw = connect({
      host: "127.0.0.1",
      port: Number(server.address.split(":")[1]),
      allowHalfOpen: true, // still writes after the server's end
    });
    cleanup.push(() => raw.destroy());
    raw.on("error", () => undefined);
    const ended = new Promise<void>((resolve) => raw.on("end", () => resolve()));
    await rawHello(raw, "volume", new Uint8Array(32)); // a wrong token
    raw.resume();
    await ended;
    for (const part of encodeLinkFrame({
      kind: "hello",
      version: linkProtocolVersion,
      scope: "volume",
      proof: new Uint8Array(32),
    })) {
      raw.write(part);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(server.stats().refused).toBe(1);
    expect(received).toHaveLength(0);
  });

  test("a frame before hello, and one out of scope, close the connection", async () => {
    const server = await newServer();
    const received: LinkMessage[] = [];
    server.route(volumeSubject, "volume", answering(received));
    // Out of scope: a volume link that names a replica subject.
    const connection = newConnection(server, "volume");
    await connection.ready;
    const error = await rejection(
      connection.request(
        subjects.replica.build("v", 0, "n"),
        encodeMessageParts(flush),
        undefined,
        1000,
      ),
    );
    expect(codeOf(error)).toBe(ErrorCode.Unavailable);
    expect(connection.open).toBe(false);
    // A raw socket that sends a request first gets nothing handled and is closed.
    const socket = connect({ host: "127.0.0.1", port: Number(server.address.split(":")[1]) });
    cleanup.push(() => socket.destroy());
    const closed = new Promise<void>((resolve) => socket.on("close", () => resolve()));
    socket.on("error", () => undefined);
    const decoder = new LinkFrameDecoder();
    const frames: string[] = [];
    socket.on("data", (chunk) => frames.push(...decoder.push(chunk).map((frame) => frame.kind)));
    for (const part of encodeLinkFrame(
      { kind: "request", id: 1, subject: volumeSubject, traceparent: undefined },
      encodeMessageParts(flush),
    )) {
      socket.write(part);
    }
    await closed;
    expect(frames).toEqual(["challenge", "refused"]);
    // Garbage after a good hello closes it too.
    const raw = connect({ host: "127.0.0.1", port: Number(server.address.split(":")[1]) });
    cleanup.push(() => raw.destroy());
    raw.on("error", () => undefined);
    const rawClosed = new Promise<void>((resolve) => raw.on("close", () => resolve()));
    await rawHello(raw, "volume", server.tokenFor("volume"));
    raw.write(Buffer.from([0xff, 0xff, 0xff, 0xff, 1]));
    await rawClosed;
    expect(received).toHaveLength(0);
    expect(server.stats().closedBadly).toBeGreaterThanOrEqual(2);
  });

  test("a link killed mid-request fails it Unavailable and its routes are forgotten", async () => {
    const server = await newServer();
    const held: LinkMessage[] = [];
    server.route(volumeSubject, "volume", (message) => held.push(message)); // never answers
    const outcomes: string[] = [];
    const routes = new LinkRoutes(
      async () => offerOf(server, "volume"),
      (outcome) => outcomes.push(outcome),
    );
    cleanup.push(() => routes.close());
    expect(routes.route(volumeSubject)).toBeUndefined(); // asks in the background
    await waitUntil(() => routes.routed === 1);
    const link = routes.route(volumeSubject)!;
    const pending = link.request(volumeSubject, encodeMessageParts(flush), undefined, 5000);
    await waitUntil(() => held.length === 1);
    const failed = rejection(pending);
    await server.close(); // the server goes with the request in hand
    expect(codeOf(await failed)).toBe(ErrorCode.Unavailable);
    expect(routes.routed).toBe(0);
    expect(routes.route(volumeSubject)).toBeUndefined();
    expect(outcomes).toEqual(["linked"]);
  });

  test("a server closed right after its last handler answers still delivers that reply", async () => {
    const server = await newServer();
    const held: LinkMessage[] = [];
    server.route(volumeSubject, "volume", (message) => held.push(message));
    const connection = newConnection(server, "volume");
    await connection.ready;
    const pending = connection.request(volumeSubject, encodeMessageParts(flush), undefined, 5000);
    await waitUntil(() => held.length === 1);
    // As at shutdown: the handler answers, and the links close in the same turn.
    held[0]!.respond(encodeResult({ flushedOpNum: 7 }));
    await server.close();
    const reply = await pending;
    expect(Buffer.from(reply).equals(Buffer.from(encodeResult({ flushedOpNum: 7 })))).toBe(true);
    await waitUntil(() => !connection.open);
  });

  test("closing does not wait for ever on a peer that never closes its end", async () => {
    const server = await newServer();
    const raw = connect({
      host: "127.0.0.1",
      port: Number(server.address.split(":")[1]),
      allowHalfOpen: true,
    });
    cleanup.push(() => raw.destroy());
    raw.on("error", () => undefined);
    const rawEnded = new Promise<void>((resolve) => raw.on("end", () => resolve()));
    raw.resume();
    await waitUntil(() => server.stats().accepted === 1);
    await server.close(); // resolves: the connection is destroyed after the grace
    await rawEnded;
  });

  test("a request not answered by its deadline fails Timeout; a late reply is dropped", async () => {
    const server = await newServer();
    const held: LinkMessage[] = [];
    server.route(volumeSubject, "volume", (message) => held.push(message));
    const connection = newConnection(server, "volume");
    await connection.ready;
    const error = await rejection(
      connection.request(volumeSubject, encodeMessageParts(flush), undefined, 50),
    );
    expect(codeOf(error)).toBe(ErrorCode.Timeout);
    held[0]!.respond(encodeResult({ flushedOpNum: 1 }));
    // The link is still good.
    server.route(volumeSubject, "volume", answering([]));
    await connection.request(volumeSubject, encodeMessageParts(flush), undefined, 1000);
    expect(connection.waiting).toBe(0);
  });

  test("offers are asked at most once per subject per backoff; no link offered backs off longer", async () => {
    let now = 0;
    let asked = 0;
    let offer: LinkOffer = { scope: "volume" };
    const outcomes: string[] = [];
    const routes = new LinkRoutes(
      async () => {
        asked += 1;
        return offer;
      },
      (outcome) => outcomes.push(outcome),
      () => now,
    );
    cleanup.push(() => routes.close());
    routes.route(volumeSubject);
    routes.route(volumeSubject);
    await waitUntil(() => outcomes.length === 1);
    expect(asked).toBe(1);
    expect(outcomes).toEqual(["no-link"]);
    now = 1500;
    routes.route(volumeSubject);
    expect(asked).toBe(1); // 30 s after "no link"
    const server = await newServer();
    offer = offerOf(server, "volume");
    now = 31_000;
    routes.route(volumeSubject);
    await waitUntil(() => routes.routed === 1);
    expect(asked).toBe(2);
    // An offer of another scope than the subject's is no link.
    const other = subjects.volume.build("w", 1);
    offer = offerOf(server, "replica");
    routes.route(other);
    await waitUntil(() => outcomes.length === 3);
    expect(outcomes).toEqual(["no-link", "linked", "no-link"]);
  });
});

describe("bounded offer times", () => {
  /**
   * Routes whose offers are answered by `answer` (no link unless it says otherwise): the
   * outcomes of offers asked, and apart, how many were due but not asked.
   */
  function offerRoutes(answer: (subject: string) => Promise<LinkOffer>) {
    const clock = { now: 0 };
    const asked: string[] = [];
    const outcomes: string[] = [];
    const notAsked = { count: 0 };
    const routes = new LinkRoutes(
      (subject) => {
        asked.push(subject);
        return answer(subject);
      },
      (outcome) => {
        if (outcome === "not-asked") notAsked.count++;
        else outcomes.push(outcome);
      },
      () => clock.now,
    );
    cleanup.push(() => routes.close());
    return { routes, clock, asked, outcomes, notAsked };
  }
  const many = (count: number, from = 0) =>
    Array.from({ length: count }, (_, index) => subjects.volume.build(`v${from + index}`, 0));

  test("past linkOfferTimesKeptMax subjects waiting, a new one asks no offer until a time is past", async () => {
    const { routes, clock, asked, outcomes } = offerRoutes(async () => ({ scope: "volume" }));
    const first = many(linkOfferTimesKeptMax);
    const more = many(100, linkOfferTimesKeptMax);
    for (const subject of [...first, ...more]) expect(routes.route(subject)).toBeUndefined();
    await waitUntil(() => outcomes.length === asked.length);
    // Each of the first asked once and waits 30 s (no link there); the rest asked nothing.
    expect(asked).toEqual(first);
    expect(routes.offerTimesKept).toBe(linkOfferTimesKeptMax);
    clock.now = linkOfferRefusedRetryMs - 1;
    for (const subject of [...first, ...more]) routes.route(subject);
    expect(asked).toHaveLength(linkOfferTimesKeptMax);
    // Their times past, the next subjects to send ask, in the room the past ones leave.
    clock.now = linkOfferRefusedRetryMs;
    for (const subject of [...more, ...first]) routes.route(subject);
    await waitUntil(() => outcomes.length === asked.length);
    expect(asked.slice(linkOfferTimesKeptMax)).toEqual([
      ...more,
      ...first.slice(0, linkOfferTimesKeptMax - more.length),
    ]);
    expect(routes.offerTimesKept).toBe(linkOfferTimesKeptMax);
  });

  test("an offer due but not asked for want of room is counted, at each message, and only then", async () => {
    const { routes, clock, asked, outcomes, notAsked } = offerRoutes(async () => ({
      scope: "volume",
    }));
    const first = many(linkOfferTimesKeptMax);
    const [extra] = many(1, linkOfferTimesKeptMax);
    for (const subject of first) routes.route(subject);
    await waitUntil(() => outcomes.length === linkOfferTimesKeptMax);
    expect(notAsked.count).toBe(0); // up to the cap, every offer was asked
    // Held subjects whose time is to come are not due: nothing refused, nothing counted.
    for (const subject of first) routes.route(subject);
    expect(notAsked.count).toBe(0);
    // A new subject at the cap: due, not asked, counted at each of its messages.
    routes.route(extra!);
    expect(notAsked.count).toBe(1);
    routes.route(extra!);
    expect(notAsked.count).toBe(2);
    expect(asked).toHaveLength(linkOfferTimesKeptMax);
    // Once times are past there is room: asked, and no more counted.
    clock.now = linkOfferRefusedRetryMs;
    routes.route(extra!);
    expect(asked.at(-1)).toBe(extra);
    await waitUntil(() => outcomes.length === linkOfferTimesKeptMax + 1);
    expect(notAsked.count).toBe(2);
  });

  test("an offer answered after its subject's time was forgotten adds none past the cap", async () => {
    let answerLate: (offer: LinkOffer) => void = () => undefined;
    const { routes, clock, asked, outcomes, notAsked } = offerRoutes((subject) =>
      subject === late
        ? new Promise<LinkOffer>((resolve) => {
            answerLate = resolve;
          })
        : Promise.resolve({ scope: "volume" }),
    );
    const [late, ...rest] = many(linkOfferTimesKeptMax + 1);
    routes.route(late!); // asked: waits until linkOfferRetryMs, its answer slow to come
    for (const subject of rest.slice(0, -1)) routes.route(subject);
    await waitUntil(() => outcomes.length === linkOfferTimesKeptMax - 1);
    expect(routes.offerTimesKept).toBe(linkOfferTimesKeptMax);
    // late's time is past: forgotten, to make room for the next subject.
    clock.now = linkOfferRetryMs;
    routes.route(rest.at(-1)!);
    await waitUntil(() => outcomes.length === linkOfferTimesKeptMax);
    expect(asked).toHaveLength(linkOfferTimesKeptMax + 1);
    // "No link" comes for late: no room to hold it, every other time is to come.
    answerLate({ scope: "volume" });
    await waitUntil(() => outcomes.length === linkOfferTimesKeptMax + 1);
    expect(routes.offerTimesKept).toBe(linkOfferTimesKeptMax);
    expect(notAsked.count).toBe(0); // a refusal not held is no offer not asked
    // Unheld, it waits for room as a new subject does, and asks once there is some.
    routes.route(late!);
    expect(asked).toHaveLength(linkOfferTimesKeptMax + 1);
    expect(notAsked.count).toBe(1);
    clock.now = linkOfferRefusedRetryMs;
    routes.route(late!);
    expect(asked.at(-1)).toBe(late);
    expect(asked).toHaveLength(linkOfferTimesKeptMax + 2);
  });
});

describe("aging tokens", () => {
  test("a token is taken in the epoch it was handed out in and the next, refused after (time as an argument)", async () => {
    let now = 500;
    const server = await newServer({ tokenLifetimeMs: 1000, tokenClock: () => now });
    const token = server.tokenFor("volume");
    // Over real connections, at the server's clock: across one rotation it is still taken…
    now = 1999;
    await newConnection(server, "volume", token).ready;
    // …two periods on, refused.
    now = 2000;
    const refused = newConnection(server, "volume", token);
    expect(codeOf(await rejection(refused.ready))).toBe(ErrorCode.Unavailable);
    expect(server.stats().refused).toBe(1);
    // The same, by the function the hello calls.
    expect(server.offerToken("volume", 500).validMs).toBe(1500); // to the next epoch's end
    const nonce = new Uint8Array(32).fill(7);
    const proof = linkProof(token, nonce);
    expect(server.provenEpoch("volume", nonce, proof, 500)).toBe(0);
    expect(server.provenEpoch("volume", nonce, proof, 1000)).toBe(0);
    expect(server.provenEpoch("volume", nonce, proof, 1999)).toBe(0);
    expect(server.provenEpoch("volume", nonce, proof, 2000)).toBeUndefined();
    expect(server.provenEpoch("volume", nonce, proof, 60_000)).toBeUndefined();
    // A token of a later epoch is taken then, and not before its epoch.
    const later = linkProof(server.tokenFor("volume", 2000), nonce);
    expect(server.provenEpoch("volume", nonce, later, 2000)).toBe(2);
    expect(server.provenEpoch("volume", nonce, later, 1999)).toBeUndefined();
  });

  test("an open link whose token aged out sends its replies in flight, answers no-responder to what comes after, then closes", async () => {
    let now = 0;
    const server = await newServer({ tokenLifetimeMs: 1000, tokenClock: () => now });
    const held: LinkMessage[] = [];
    server.route(volumeSubject, "volume", (message) => held.push(message));
    const link = newConnection(server, "volume");
    await link.ready;
    const inFlight = link.request(volumeSubject, encodeMessageParts(flush), undefined, 5000);
    await waitUntil(() => held.length === 1);
    now = 2000; // two periods on: the server's next check (each linkPingIntervalMs) ends it
    await waitUntil(() => server.stats().expired === 1);
    // Not handled: the sender may resend it over NATS, where its access is checked anew.
    const after = await rejection(
      link.request(volumeSubject, encodeMessageParts(flush), undefined, 5000),
    );
    expect(after).toBeInstanceOf(LinkNotHandled);
    expect(held).toHaveLength(1);
    expect(link.open).toBe(true); // held open for the reply in flight
    held[0]!.respond(encodeResult({ flushedOpNum: 9 }));
    expect(Buffer.from(await inFlight).equals(Buffer.from(encodeResult({ flushedOpNum: 9 })))).toBe(
      true,
    );
    await waitUntil(() => !link.open && server.stats().open === 0);
    expect(server.stats().closedBadly).toBe(0);
  });

  test("a sender renews its token halfway and moves its routes to the new link; requests in flight across it all succeed", async () => {
    const server = await newServer({ tokenLifetimeMs: 400 });
    const answered: LinkMessage[] = [];
    // Each reply a little later, so that requests are in flight when a link is renewed.
    server.route(volumeSubject, "volume", (message) => {
      answered.push(message);
      setTimeout(() => message.respond(encodeResult({ flushedOpNum: answered.length })), 20);
    });
    const outcomes: string[] = [];
    const routes = new LinkRoutes(
      async () => {
        const { token, validMs } = server.offerToken("volume");
        return { address: server.address, scope: "volume", token, validMs };
      },
      (outcome) => outcomes.push(outcome),
    );
    cleanup.push(() => routes.close());
    routes.route(volumeSubject);
    await waitUntil(() => routes.routed === 1);
    const links = new Set<LinkConnection>();
    let sent = 0;
    let unrouted = 0;
    // Four requests at a time until three renewals happened.
    const worker = async () => {
      while (outcomes.filter((outcome) => outcome === "renewed").length < 3) {
        const link = routes.route(volumeSubject);
        if (link === undefined) {
          unrouted += 1;
          await new Promise((resolve) => setTimeout(resolve, 5));
          continue;
        }
        links.add(link);
        sent += 1;
        await link.request(volumeSubject, encodeMessageParts(flush), undefined, 5000);
      }
    };
    await Promise.all([worker(), worker(), worker(), worker()]);
    // The first link and two of the renewed ones carried requests (the third may not yet).
    expect(links.size).toBeGreaterThanOrEqual(3);
    expect(server.stats().accepted).toBeGreaterThanOrEqual(4);
    expect(outcomes).not.toContain("expired");
    // The old links were ended by the sender, none by the server for its token.
    await waitUntil(() => server.stats().open === 1);
    expect(server.stats()).toMatchObject({ expired: 0, closedBadly: 0, noResponders: 0 });
    expect(answered).toHaveLength(sent);
    process.stdout.write(
      `renewals: ${sent} requests over ${links.size} links, ${unrouted} waits for a route\n`,
    );
  });

  test("a sender whose renewals fail gives its link up when the token runs out; its subjects go unrouted", async () => {
    const server = await newServer({ tokenLifetimeMs: 300 });
    server.route(volumeSubject, "volume", answering([]));
    let revoked = false;
    const outcomes: string[] = [];
    const routes = new LinkRoutes(
      async () => {
        if (revoked) throw new BallastError(ErrorCode.Unavailable, "no NATS access");
        const { token, validMs } = server.offerToken("volume");
        return { address: server.address, scope: "volume", token, validMs };
      },
      (outcome) => outcomes.push(outcome),
    );
    cleanup.push(() => routes.close());
    routes.route(volumeSubject);
    await waitUntil(() => routes.routed === 1);
    const link = routes.route(volumeSubject)!;
    revoked = true;
    await waitUntil(() => outcomes.includes("expired"));
    expect(routes.routed).toBe(0);
    expect(routes.route(volumeSubject)).toBeUndefined();
    await waitUntil(() => !link.open && server.stats().open === 0);
    expect(outcomes).toContain("failed"); // the renewals asked in vain
    expect(outcomes).not.toContain("renewed");
  });
});

describe("renewals on the link", () => {
  test("a sender renews on the link it has: a server at its connection cap takes every renewal", async () => {
    // One connection allowed: a renewal that needs a second one is turned away, and the
    // link then runs out and is given up (what happened before renewals on the link).
    const server = await LinkServer.listen({
      host: "127.0.0.1",
      port: 0,
      advertise: "127.0.0.1",
      logger,
      connectionsMax: 1,
      tokenLifetimeMs: 300,
    });
    cleanup.push(() => server.close());
    const answered: LinkMessage[] = [];
    server.route(volumeSubject, "volume", answering(answered));
    const outcomes: string[] = [];
    const routes = new LinkRoutes(
      async () => {
        const { token, validMs } = server.offerToken("volume");
        return { address: server.address, scope: "volume", token, validMs, renewsInPlace: true };
      },
      (outcome) => outcomes.push(outcome),
    );
    cleanup.push(() => routes.close());
    routes.route(volumeSubject);
    await waitUntil(() => routes.routed === 1);
    const link = routes.route(volumeSubject)!;
    let sent = 0;
    const count = (outcome: string) => outcomes.filter((seen) => seen === outcome).length;
    // Requests all along, until three renewals or the link given up.
    while (count("renewed") < 3 && count("expired") === 0 && sent < 10_000) {
      expect(routes.route(volumeSubject)).toBe(link);
      await link.request(volumeSubject, encodeMessageParts(flush), undefined, 5000);
      sent += 1;
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    expect(outcomes).not.toContain("expired");
    expect(count("renewed")).toBeGreaterThanOrEqual(3);
    expect(server.stats()).toMatchObject({
      accepted: 1,
      open: 1,
      turnedAway: 0,
      expired: 0,
      closedBadly: 0,
      noResponders: 0,
    });
    expect(server.stats().renewed).toBeGreaterThanOrEqual(3);
    expect(answered).toHaveLength(sent);
  });

  test("a renewal ages the link by its new token; one with a wrong token closes the link", async () => {
    let now = 500;
    const server = await newServer({ tokenLifetimeMs: 1000, tokenClock: () => now });
    const held: LinkMessage[] = [];
    server.route(volumeSubject, "volume", (message) => held.push(message));
    const link = newConnection(server, "volume");
    await link.ready;
    now = 1500;
    await link.renew(server.tokenFor("volume"));
    expect(server.stats().renewed).toBe(1);
    // Past the first token's life (it ends at 2000), within the renewed one's.
    now = 2500;
    server.closeExpired();
    expect(server.stats().expired).toBe(0);
    const reply = link.request(volumeSubject, encodeMessageParts(flush), undefined, 5000);
    await waitUntil(() => held.length === 1);
    held[0]!.respond(encodeResult({ flushedOpNum: 1 }));
    await reply;
    // A token of another scope proves nothing here.
    const wrong = link.renew(server.tokenFor("replica"));
    expect(codeOf(await rejection(wrong))).toBe(ErrorCode.Unavailable);
    await waitUntil(() => !link.open && server.stats().open === 0);
    expect(server.stats()).toMatchObject({ renewed: 1, refused: 1, closedBadly: 1 });
  });

  test("a renewal answered after its sender gave up waiting leaves the link open", async () => {
    // One request unanswered holds the server from reading the link: the renewal behind
    // it is read, and answered, only after the sender stopped waiting for it.
    const server = await LinkServer.listen({
      host: "127.0.0.1",
      port: 0,
      advertise: "127.0.0.1",
      logger,
      unansweredMax: 1,
    });
    cleanup.push(() => server.close());
    const held: LinkMessage[] = [];
    server.route(volumeSubject, "volume", (message) => held.push(message));
    const link = newConnection(server, "volume");
    await link.ready;
    const first = link.request(volumeSubject, encodeMessageParts(flush), undefined, 10_000);
    await waitUntil(() => held.length === 1);
    const renewal = link.renew(server.tokenFor("volume"));
    expect(codeOf(await rejection(renewal))).toBe(ErrorCode.Unavailable); // after linkConnectTimeoutMs
    held[0]!.respond(encodeResult({ flushedOpNum: 1 }));
    await first;
    await waitUntil(() => server.stats().renewed === 1);
    const second = link.request(volumeSubject, encodeMessageParts(flush), undefined, 10_000);
    await waitUntil(() => held.length === 2);
    held[1]!.respond(encodeResult({ flushedOpNum: 2 }));
    await second;
    expect(link.open).toBe(true);
    expect(server.stats()).toMatchObject({ open: 1, closedBadly: 0 });
  });

  test("a connection turned away at a cap is told which cap", async () => {
    const server = await LinkServer.listen({
      host: "127.0.0.1",
      port: 0,
      advertise: "127.0.0.1",
      logger,
      connectionsMax: 1,
    });
    cleanup.push(() => server.close());
    await newConnection(server, "volume").ready;
    const second = newConnection(server, "volume");
    const error = await rejection(second.ready);
    expect(codeOf(error)).toBe(ErrorCode.Unavailable);
    expect((error as Error).message).toMatch(/link refused: .* is at its cap of 1 links/);
    expect(server.stats()).toMatchObject({ open: 1, turnedAway: 1 });
    // A sender's routes keep the reason for node info (its messages went over NATS).
    const routes = new LinkRoutes(async () => offerOf(server, "volume"));
    cleanup.push(() => routes.close());
    expect(routes.route(volumeSubject)).toBeUndefined();
    await waitUntil(() => routes.lastFailure !== undefined);
    expect(routes.lastFailure).toMatch(/link refused: .* is at its cap of 1 links/);
    expect(routes.routed).toBe(0);
  });
});

describe("token renewals spread and cleaned up", () => {
  test("senders of one server do not drift to renewing together at its epoch boundary", async () => {
    // Renewing at exactly half the time left moved each sender's next offer halfway to
    // the start of the server's epoch, so after a few renewals all of them asked within
    // milliseconds of each boundary. Four senders, each with its own (fixed) draw, must
    // keep asking at different points of the epoch.
    const lifetimeMs = 300;
    const server = await newServer({ tokenLifetimeMs: lifetimeMs });
    server.route(volumeSubject, "volume", answering([]));
    const draws = [0.05, 0.35, 0.65, 0.95];
    const renewalsWanted = 5;
    const offsets = draws.map(() => [] as number[]);
    const senders = draws.map((draw, index) => {
      let renewed = 0;
      const routes = new LinkRoutes(
        async () => {
          const { token, validMs } = server.offerToken("volume");
          // Where in the server's epoch this offer was asked.
          offsets[index]!.push(performance.now() % lifetimeMs);
          return { address: server.address, scope: "volume", token, validMs };
        },
        (outcome) => {
          if (outcome === "renewed") renewed += 1;
        },
        () => performance.now(),
        () => draw,
      );
      cleanup.push(() => routes.close());
      routes.route(volumeSubject);
      return { routes, renewed: () => renewed };
    });
    await waitUntil(
      () => senders.every((sender) => sender.renewed() >= renewalsWanted),
      30 * lifetimeMs,
    );
    const last = offsets.map((asked) => asked[renewalsWanted]!);
    // Halving left every offset within lifetimeMs / 2^5 (9 ms) of the boundary, and so
    // within that of each other; the drawn points settle about a third of an epoch apart.
    expect(Math.max(...last) - Math.min(...last)).toBeGreaterThan(lifetimeMs / 4);
  });

  test("a connection a renewal is opening is closed with the routes", async () => {
    const server = await newServer({ tokenLifetimeMs: 300 });
    server.route(volumeSubject, "volume", answering([]));
    // A proxy in front of the server: the first connection goes through, the next ones
    // (the renewal's) are held silent, so their handshake never ends.
    const held: Socket[] = [];
    let heldClosed = 0;
    const proxy = createServer((socket) => {
      if (held.length === 0 && passed === undefined) {
        const [host, port] = splitAddress(server.address);
        passed = connect({ host, port });
        socket.pipe(passed).pipe(socket);
        passed.on("error", () => socket.destroy());
        socket.on("error", () => passed?.destroy());
        return;
      }
      held.push(socket);
      socket.on("error", () => undefined);
      socket.on("close", () => {
        heldClosed += 1;
      });
    });
    let passed: Socket | undefined;
    await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve));
    cleanup.push(async () => {
      passed?.destroy();
      for (const socket of held) socket.destroy();
      await new Promise((resolve) => proxy.close(resolve));
    });
    const proxyAddress = `127.0.0.1:${(proxy.address() as { port: number }).port}`;
    const routes = new LinkRoutes(async () => {
      const { token, validMs } = server.offerToken("volume");
      return { address: proxyAddress, scope: "volume", token, validMs };
    });
    cleanup.push(() => routes.close());
    routes.route(volumeSubject);
    await waitUntil(() => routes.routed === 1);
    await waitUntil(() => held.length === 1); // the renewal's connection, mid-handshake
    routes.close();
    // It was left to its connect timeout (linkConnectTimeoutMs), keeping the process up.
    await waitUntil(() => heldClosed === 1, linkConnectTimeoutMs / 2);
  });
});

function splitAddress(address: string): [string, number] {
  const colon = address.lastIndexOf(":");
  return [address.slice(0, colon), Number(address.slice(colon + 1))];
}

describe("bounded routes", () => {
  /** Routes over one server's link, on a clock the test moves, asking for `subject`s. */
  async function boundedRoutes(limits: { routeIdleMs: number; routesMax: number }) {
    const server = await newServer();
    const clock = { now: 0 };
    const asked: string[] = [];
    const routes = new LinkRoutes(
      async (subject) => {
        asked.push(subject);
        return offerOf(server, "volume");
      },
      () => undefined,
      () => clock.now,
      Math.random,
      limits,
    );
    cleanup.push(() => routes.close());
    /** Routes `subject` (an offer, then the route) and waits until it is routed. */
    const learn = async (subject: string) => {
      expect(routes.route(subject)).toBeUndefined();
      await waitUntil(() => routes.route(subject) !== undefined);
    };
    return { routes, clock, asked, learn };
  }
  const [a, b, c, d] = [0, 1, 2, 3].map((partition) => subjects.volume.build("v", partition));

  test("a route idle for a whole sweep interval is dropped when the next is learned; its next send asks again", async () => {
    const idleMs = 600_000;
    const { routes, clock, asked, learn } = await boundedRoutes({
      routeIdleMs: idleMs,
      routesMax: 100,
    });
    await learn(a!);
    await learn(b!);
    const connection = routes.route(a!);
    clock.now = idleMs;
    await learn(c!); // sweeps: every route was used since the start
    expect(routes.routed).toBe(3);
    clock.now = 2 * idleMs;
    expect(routes.route(a!)).toBe(connection);
    expect(routes.route(c!)).toBe(connection);
    await learn(d!); // sweeps: b was not used since the last sweep
    expect(routes.routed).toBe(3);
    expect(asked).toEqual([a, b, c, d]);

    // b's next message finds no route: it goes over NATS (undefined here, no error) and
    // asks a fresh offer, whose connection is the one still open.
    expect(routes.route(b!)).toBeUndefined();
    await waitUntil(() => routes.route(b!) !== undefined);
    expect(routes.route(b!)).toBe(connection);
    expect(asked).toEqual([a, b, c, d, b]);
    expect(routes.routed).toBe(4);
  });

  test("past the cap, learning a route drops one not used lately, not one in use", async () => {
    const { routes, asked, learn } = await boundedRoutes({ routeIdleMs: 600_000, routesMax: 2 });
    await learn(a!);
    await learn(b!);
    await learn(c!); // the sweep spares both once (both used), then drops the older: a
    expect(routes.routed).toBe(2);
    routes.route(c!); // in use
    await learn(d!); // b was not used since it was spared: it goes, c stays
    expect(routes.routed).toBe(2);
    expect(routes.route(c!)).toBeDefined();
    expect(routes.route(d!)).toBeDefined();
    expect(asked).toEqual([a, b, c, d]);
  });
});

/**
 * A server that stops reading a connection at `unansweredMax` unanswered requests, its
 * volume subject's requests held (not answered) for the test to answer, and a
 * connection to it.
 */
async function heldBackServer(unansweredMax: number) {
  const server = await LinkServer.listen({
    host: "127.0.0.1",
    port: 0,
    advertise: "127.0.0.1",
    logger,
    unansweredMax,
  });
  cleanup.push(() => server.close());
  const held: LinkMessage[] = [];
  server.route(volumeSubject, "volume", (message) => held.push(message));
  const connection = newConnection(server, "volume");
  await connection.ready;
  return { server, held, connection };
}

describe("backpressure", () => {
  test("a connection with its cap of requests unanswered is not read until a reply goes out", async () => {
    const { held, connection } = await heldBackServer(4);
    const send = () =>
      connection.request(volumeSubject, encodeMessageParts(flush), undefined, 10_000);
    const first = [send(), send(), send(), send()];
    await waitUntil(() => held.length === 4);
    const later = [send(), send(), send()];
    // Sent, and not taken: the server stopped reading at four unanswered.
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(held).toHaveLength(4);
    held[0]!.respond(encodeResult({ flushedOpNum: 1 }));
    await waitUntil(() => held.length === 7);
    for (const message of held.slice(1)) message.respond(encodeResult({ flushedOpNum: 1 }));
    await Promise.all([...first, ...later]);
    expect(connection.open).toBe(true);
  });
});

describe("a server held back at its cap of unanswered requests", () => {
  test("still tells its sender it is there: the link outlives the silence limit, and its replies come", async () => {
    const { server, held, connection } = await heldBackServer(2);
    const send = () =>
      connection.request(volumeSubject, encodeMessageParts(flush), undefined, 20_000).then(
        () => "answered",
        (error: Error) => error.message,
      );
    const requests = [send(), send()];
    await waitUntil(() => held.length === 2);
    // Not read now (pings too), its handlers slow: longer than a silent peer is given.
    await new Promise((resolve) => setTimeout(resolve, linkSilenceMsMax + 2 * linkPingIntervalMs));
    expect(connection.open).toBe(true);
    for (const message of held) message.respond(encodeResult({ flushedOpNum: 1 }));
    expect(await Promise.all(requests)).toEqual(["answered", "answered"]);
    expect(server.stats().closedBadly).toBe(0);
  });
});

describe("reconnects", () => {
  test("an address whose links fail to open is backed off, doubling, for all its subjects; reset once one stayed open", async () => {
    let now = 0;
    let asked = 0;
    const server = await newServer();
    let offer: LinkOffer = { ...offerOf(server, "volume"), token: new Uint8Array(32) }; // refused
    const outcomes: string[] = [];
    const routes = new LinkRoutes(
      async () => {
        asked += 1;
        return offer;
      },
      (outcome) => outcomes.push(outcome),
      () => now,
      () => 1, // no jitter: each wait is its ceiling
    );
    cleanup.push(() => routes.close());
    const other = subjects.volume.build("w", 1);
    const settle = async (count: number) => await waitUntil(() => outcomes.length === count);
    routes.route(volumeSubject);
    await settle(1);
    expect(server.stats().refused).toBe(1); // backed off until 1000
    now = 1000;
    routes.route(volumeSubject);
    await settle(2);
    expect(server.stats().refused).toBe(2); // until 3000
    now = 2500;
    routes.route(volumeSubject); // a second after its last offer, but backed off
    routes.route(other); // another subject of the same address asks, but does not dial
    await settle(3);
    expect(asked).toBe(3);
    expect(server.stats().refused).toBe(2);
    now = 2900;
    routes.route(other); // and its offers wait with the address
    expect(asked).toBe(3);
    now = 3000;
    offer = offerOf(server, "volume");
    routes.route(volumeSubject);
    await waitUntil(() => routes.routed === 1);
    expect(server.stats().refused).toBe(2);
    // Open for linkStableMs: the count is reset when it closes. The server goes; the next
    // failure waits 1 s again.
    now = 3000 + linkStableMs;
    const port = Number(server.address.split(":")[1]);
    await server.close();
    await waitUntil(() => routes.routed === 0);
    offer = { address: `127.0.0.1:${port}`, scope: "volume", token: new Uint8Array(32) };
    now = 5000 + linkStableMs;
    routes.route(other);
    await waitUntil(() => outcomes.length === 5);
    expect(outcomes.at(-1)).toBe("failed");
    // Its offers wait 1 s (the first failure since the reset), not 8 s (the fourth).
    const askedBefore = asked;
    now = 5999 + linkStableMs;
    routes.route(other);
    expect(asked).toBe(askedBefore);
    now = 6000 + linkStableMs;
    routes.route(other);
    await waitUntil(() => outcomes.length === 6);
    expect(asked).toBe(askedBefore + 1);
  });

  test("the backoffs of addresses failed long ago are forgotten though no link ever opens", async () => {
    // Three addresses where nothing listens (servers restarted elsewhere, a firewall).
    const ports: number[] = [];
    for (let index = 0; index < 3; index++) {
      const closed = createServer();
      await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
      ports.push((closed.address() as { port: number }).port);
      await new Promise<void>((resolve) => closed.close(() => resolve()));
    }
    const idleMs = 60_000;
    const clock = { now: 0 };
    const outcomes: string[] = [];
    const [a, b, c] = [0, 1, 2].map((partition) => subjects.volume.build("v", partition));
    const routes = new LinkRoutes(
      async (subject) => ({
        address: `127.0.0.1:${ports[[a, b, c].indexOf(subject)]}`,
        scope: "volume",
        token: new Uint8Array(32),
      }),
      (outcome) => outcomes.push(outcome),
      () => clock.now,
      () => 1, // no jitter: each backoff is 1 s
      { routeIdleMs: idleMs, routesMax: 100 },
    );
    cleanup.push(() => routes.close());
    const fail = async (subject: string) => {
      routes.route(subject);
      await waitUntil(() => outcomes.length === [a, b, c].indexOf(subject) + 1);
      expect(outcomes.at(-1)).toBe("failed");
    };
    await fail(a!); // a backed off until 1000
    clock.now = 30_000;
    await fail(b!); // b until 31_000
    expect(routes.addressesBackedOff).toBe(2);
    // a's time is idleMs past, b's not: a is forgotten as c fails.
    clock.now = 1000 + idleMs;
    await fail(c!);
    expect(routes.addressesBackedOff).toBe(2);
    expect(routes.routed).toBe(0);
  });
});

describe("flapping links", () => {
  test.each([
    ["ends it", "end"],
    ["sends, with it, a frame no server may send", "bad-frame"],
  ] as const)(
    "a link whose server %s right after its hello-ok backs its address off like one that never opened",
    async (_, how) => {
      // A fake server speaking just enough of the protocol: it takes any hello, says
      // hello-ok, and (while `flapping`) ends the connection at once, or sends a ping in
      // the same write (the sender reads both at once, and closes as it opens).
      let flapping = true;
      let accepted = 0;
      const sockets = new Set<Socket>();
      const fake = createServer((socket) => {
        accepted += 1;
        sockets.add(socket);
        socket.on("close", () => sockets.delete(socket));
        socket.on("error", () => undefined);
        const decoder = new LinkFrameDecoder();
        socket.on("data", (chunk) => {
          for (const frame of decoder.push(chunk)) {
            if (frame.kind !== "hello") continue;
            const answer = encodeLinkFrame({ kind: "hello-ok" });
            if (flapping && how === "bad-frame") answer.push(...encodeLinkFrame({ kind: "ping" }));
            socket.write(Buffer.concat(answer));
            if (flapping && how === "end") socket.end();
          }
        });
        for (const part of encodeLinkFrame({ kind: "challenge", nonce: new Uint8Array(32) })) {
          socket.write(part);
        }
      });
      await new Promise<void>((resolve) => fake.listen(0, "127.0.0.1", resolve));
      cleanup.push(
        () =>
          new Promise<void>((resolve) => {
            for (const socket of sockets) socket.destroy();
            fake.close(() => resolve());
          }),
      );
      const address = `127.0.0.1:${(fake.address() as { port: number }).port}`;
      let now = 0;
      const outcomes: string[] = [];
      let asked = 0;
      const routes = new LinkRoutes(
        async () => {
          asked += 1;
          return { address, scope: "volume", token: new Uint8Array(32) };
        },
        (outcome) => outcomes.push(outcome),
        () => now,
        () => 0, // each wait is half its ceiling
      );
      cleanup.push(() => routes.close());
      // A message a second for 20 s: each asks an offer when its subject's pacing allows.
      for (let second = 0; second < 20; second += 1) {
        now = second * 1000;
        const before = asked;
        routes.route(volumeSubject);
        // Asked (not held back with the address): settled, and any link it made gone.
        if (asked > before) {
          await waitUntil(
            () => outcomes.length === asked && sockets.size === 0 && routes.routed === 0,
          );
        }
      }
      // Opened at 0, 1, 2, 4, 8 and 16 s (waits of 0.5, 1, 2, 4, 8 s), not every second.
      expect(accepted).toBe(6);
      // A link that stays open linkStableMs resets the count once it closes.
      flapping = false;
      now = 31_000; // past the last wait (15 s from 16 s)
      routes.route(volumeSubject);
      await waitUntil(() => routes.routed === 1);
      expect(accepted).toBe(7);
      now += linkStableMs;
      for (const socket of sockets) socket.destroy();
      await waitUntil(() => routes.routed === 0 && sockets.size === 0);
      now += 1000;
      routes.route(volumeSubject);
      await waitUntil(() => routes.routed === 1);
      expect(accepted).toBe(8);
    },
  );
});

describe("sealed tokens", () => {
  test("only the asker opens the token an offer seals to its key", () => {
    const server = new SealKeys();
    const asker = new SealKeys();
    const reader = new SealKeys();
    const token = new Uint8Array(32).fill(9);
    const sealed = server.seal(asker.publicKey, token);
    expect(Buffer.from(asker.open(server.publicKey, sealed)).equals(Buffer.from(token))).toBe(true);
    // Someone who read the exchange holds both public keys, and neither private one.
    expect(() => reader.open(server.publicKey, sealed)).toThrow(BallastError);
    expect(() => reader.open(asker.publicKey, sealed)).toThrow(BallastError);
    const damaged = Uint8Array.from(sealed);
    damaged[20] = (damaged[20] ?? 0) ^ 1;
    let code: string | undefined;
    try {
      asker.open(server.publicKey, damaged);
    } catch (error) {
      code = codeOf(error);
    }
    expect(code).toBe(ErrorCode.InvalidMessage);
    expect(() => asker.open(new Uint8Array(31), sealed)).toThrow(/wrong size/);
  });
});

describe("silent links", () => {
  test("a server that stops answering pings is left, and a sender that goes quiet is dropped", async () => {
    // A fake server: says hello-ok, then reads and answers nothing (a stopped process,
    // or a path that swallows packets, as seen from the sender).
    const mute = createServer((socket) => {
      socket.on("error", () => undefined);
      for (const part of encodeLinkFrame({ kind: "challenge", nonce: new Uint8Array(32) })) {
        socket.write(part);
      }
      socket.once("data", () => {
        for (const part of encodeLinkFrame({ kind: "hello-ok" })) socket.write(part);
      });
    });
    await new Promise<void>((resolve) => mute.listen(0, "127.0.0.1", resolve));
    cleanup.push(() => new Promise<void>((resolve) => mute.close(() => resolve())));
    const port = (mute.address() as { port: number }).port;
    const closed: string[] = [];
    const connection = new LinkConnection(`127.0.0.1:${port}`, "replica", new Uint8Array(32), () =>
      closed.push("sender"),
    );
    cleanup.push(() => connection.close());
    await connection.ready;
    expect(
      connection.publish(subjects.replica.build("v", 0, "n"), [new Uint8Array(8)], undefined),
    ).toBe(true);
    // A real server, and a sender that says hello and then nothing at all.
    const server = await newServer();
    const quiet = connect({ host: "127.0.0.1", port: Number(server.address.split(":")[1]) });
    cleanup.push(() => quiet.destroy());
    quiet.on("error", () => undefined);
    quiet.on("close", () => closed.push("server"));
    await rawHello(quiet, "volume", server.tokenFor("volume"));
    quiet.resume(); // reads (and drops) the hello-ok, so that it sees the end
    await waitUntil(() => closed.length === 2, 10_000).catch((error) => {
      throw new Error(`closed: ${closed.join(",")}`, { cause: error });
    });
    expect(closed.sort()).toEqual(["sender", "server"]);
    expect(connection.open).toBe(false);
    expect(
      connection.publish(subjects.replica.build("v", 0, "n"), [new Uint8Array(8)], undefined),
    ).toBe(false);
  });

  test("a stall of this process longer than the silence limit closes no link", async () => {
    const server = await newServer();
    const connection = newConnection(server, "volume");
    await connection.ready;
    await new Promise((resolve) => setTimeout(resolve, 1100)); // a ping and its pong
    // The event loop blocked (a long GC, a paused VM): nothing is read for 4.5 s.
    const until = performance.now() + 4500;
    while (performance.now() < until) {
      // busy
    }
    await new Promise((resolve) => setTimeout(resolve, 1500)); // checks on both sides run
    expect(connection.open).toBe(true);
    expect(server.stats().closedBadly).toBe(0);
  });

  test("an idle link that answers pings stays open", async () => {
    const server = await newServer();
    const connection = newConnection(server, "volume");
    await connection.ready;
    await new Promise((resolve) => setTimeout(resolve, 5500));
    expect(connection.open).toBe(true);
  });
});

/** Reads a raw socket's challenge and answers it with a hello proving `token`. */
async function rawHello(socket: Socket, scope: LinkScope, token: Uint8Array): Promise<void> {
  const decoder = new LinkFrameDecoder();
  const nonce = await new Promise<Uint8Array>((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      const frame = decoder.push(chunk)[0];
      if (frame === undefined) return;
      socket.off("data", onData);
      if (frame.kind === "challenge") resolve(frame.nonce);
      else reject(new Error(`expected a challenge, got ${frame.kind}`));
    };
    socket.on("data", onData);
  });
  socket.pause();
  for (const part of encodeLinkFrame({
    kind: "hello",
    version: linkProtocolVersion,
    scope,
    proof: linkProof(token, nonce),
  })) {
    socket.write(part);
  }
}

async function waitUntil(check: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
