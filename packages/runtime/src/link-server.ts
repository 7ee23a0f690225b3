// The server end of links (protocol link.ts): a TCP listener owned by the Service, and a
// route table from exact subject to the same delivery path the subject's NATS
// subscription uses. A link is a second transport for the same messages, not a second
// protocol: a request frame becomes a message that looks to the service shell like a
// NATS message (subject, data, reply, trace headers, `respond`), so it is decoded at the
// same edge, dispatched to the same handler and answered with the same reply bytes.
//
// Auth: a random 32-byte secret per process; a scope's token is HMAC-SHA256(secret,
// scope and epoch), the epoch being the process's monotonic clock divided by
// linkTokenLifetimeMs (in effect a secret per epoch, derived rather than drawn, so the
// check is a function of the time alone). Tokens are handed out only over NATS, in
// answer to `link.offer.v1` on a subject of that scope, so whoever NATS lets publish
// there may have one, and nobody else; the offer says how long the token has left. Each
// connection is sent a fresh random nonce (`challenge`) and must answer with a `hello`
// proving its scope's token, HMAC-SHA256(token, nonce) (`linkProof`): the token never
// crosses the link, so someone reading it (links are not encrypted) cannot replay it.
// A hello is accepted with a token of this epoch or the one before (no hello races a
// rotation; the hello need not name the epoch: both are tried), so a token opens links
// for one to two lifetimes after it was handed out, and a link lives no longer than its
// token: once the epoch after the token's is over, the link takes no more requests
// (they are answered `no-responder`: not handled, the sender resends them over NATS,
// where its access is checked anew) and is ended when its replies in flight are sent
// (or destroyed after linkTokenDrainMs). Whoever lost its NATS access loses its links
// within two lifetimes; a sender that keeps it renews first (link-client.ts): on the
// link itself with `renew`, proving a newer token for the connection's own nonce as a
// hello does (offers say `renewsInPlace`), after which the link ages by that token; an
// older sender opens a second link with the newer token and moves to it. A renewal on
// the link takes no connection, so neither cap below ever turns one away. After the
// hello every frame must name a subject of that scope's family, or be a ping or a
// renewal. Anything else closes the connection, a renewal with a wrong token too.
//
// Failure model: a bad frame, a wrong token, a subject outside the scope, a silent new
// connection (no hello within linkHelloTimeoutMs) or a peer that does not read (more
// than linkWriteBufferBytesMax unsent) closes that connection and nothing else. A
// connection beyond linkConnectionsMax open, or linkHandshakesMax not yet through hello,
// is told so (`refused`, naming the cap) and closed as it arrives: a flood of them must
// not take the process's file descriptors.
// A connection with linkUnansweredMax requests unanswered is not read until a reply goes
// out (TCP's flow control holds its sender back) and is not judged silent meanwhile; nor
// may its sender judge this server so: its pings unread, it is sent a pong unasked every
// linkPingIntervalMs, which says the server is there and only busy. A request
// for a subject not routed here (any more) is answered `no-responder`: not handled, the
// sender may send it elsewhere. A process that dies loses its secret: its tokens die with
// it, as they do after two lifetimes anyway.
// Closing ends each connection after flushing the replies already written (a handler
// that answered just before shutdown is heard), and destroys it after linkCloseGraceMs.

import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { createServer, type Server, type Socket } from "node:net";
import {
  BallastError,
  ErrorCode,
  encodeLinkFrame,
  type LinkFrame,
  LinkFrameDecoder,
  type LinkFrameHead,
  type LinkScope,
  linkNonceBytes,
  linkProtocolVersion,
  linkScopePrefixes,
  linkScopes,
} from "@ballast/protocol";
import type { Counter, Meter } from "@opentelemetry/api";
import {
  linkCloseGraceMs,
  linkConnectionsMax,
  linkHandshakesMax,
  linkHelloBytesMax,
  linkHelloTimeoutMs,
  linkPingIntervalMs,
  linkSilenceMsMax,
  linkStallMsMin,
  linkTokenDrainMs,
  linkTokenLifetimeMs,
  linkTurnedAwayLogIntervalMs,
  linkUnansweredMax,
  linkWriteBufferBytesMax,
} from "./constants.ts";
import type { Logger } from "./logger.ts";

/** What a hello must carry to prove `token` on a connection challenged with `nonce`. */
export function linkProof(token: Uint8Array, nonce: Uint8Array): Buffer {
  return createHmac("sha256", token).update(nonce).digest();
}

/** Trace headers of a link message: only `traceparent` travels. */
export class LinkHeaders {
  constructor(private readonly traceparent: string) {}
  has(key: string): boolean {
    return key === "traceparent";
  }
  get(key: string): string {
    return key === "traceparent" ? this.traceparent : "";
  }
  set(): void {
    throw new Error("link headers are read-only");
  }
  keys(): string[] {
    return ["traceparent"];
  }
}

/** What the service shell takes from a link, in the shape of a NATS message. */
export interface LinkMessage {
  readonly subject: string;
  readonly data: Uint8Array;
  /** Non-empty for a request (the shell answers those), undefined for a publish. */
  readonly reply: string | undefined;
  /**
   * Always true: the reply goes back over the link it came by, never to a subject, so the
   * shell does not hold `reply` to the rule for NATS reply subjects (isReplyInbox).
   */
  readonly viaLink: true;
  readonly headers: LinkHeaders | undefined;
  respond(data: Uint8Array): boolean;
  /** The reply as parts, each by reference (none may change until sent); absent for a publish. */
  respondParts?(parts: readonly Uint8Array[]): boolean;
}

/** Where a routed subject's messages go: the subscription's deliveries. */
export type LinkDeliver = (message: LinkMessage) => void;

export interface LinkServerOptions {
  /** Address to listen on, e.g. 127.0.0.1 or 0.0.0.0. */
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** The host senders are told to connect to (an address or name they can reach). */
  advertise: string;
  logger: Logger;
  meter?: Meter | undefined;
  /** Caps on open connections and on those not through hello (tests set small ones). */
  connectionsMax?: number;
  handshakesMax?: number;
  /** Requests a connection may have unanswered before it is no longer read. */
  unansweredMax?: number;
  /** How long a token lives (default linkTokenLifetimeMs; tests set short ones). */
  tokenLifetimeMs?: number;
  /** The clock tokens' epochs are told by (default performance.now(); tests pass theirs). */
  tokenClock?: () => number;
}

/** Counts of what this server received, by scope and kind (for node info and tests). */
export interface LinkServerStats {
  /** Connections accepted since the start (`open` of them are open now). */
  accepted: number;
  open: number;
  /** Connections closed as they arrived, over linkConnectionsMax or linkHandshakesMax. */
  turnedAway: number;
  requests: Record<LinkScope, number>;
  publishes: Record<LinkScope, number>;
  noResponders: number;
  refused: number;
  closedBadly: number;
  /** Connections closed because their token aged out. */
  expired: number;
  /** Tokens renewed on a link (`renew`). */
  renewed: number;
}

export class LinkServer {
  readonly #secret = randomBytes(32);
  readonly #tokenLifetimeMs: number;
  readonly #tokenClock: () => number;
  readonly #routes = new Map<string, { scope: LinkScope; deliver: LinkDeliver }>();
  /** Open connections (performance.now() times). */
  readonly #connections = new Map<Socket, Connection>();
  readonly #silenceCheck: ReturnType<typeof setInterval>;
  readonly #connectionsMax: number;
  readonly #handshakesMax: number;
  readonly #unansweredMax: number;
  /** Connections open that have not yet had hello-ok. */
  #handshaking = 0;
  #turnedAwayLoggedAtMs = Number.NEGATIVE_INFINITY;
  #closing = false;
  readonly #server: Server;
  readonly #logger: Logger;
  readonly #received: Counter | undefined;
  readonly #stats: LinkServerStats = {
    accepted: 0,
    open: 0,
    turnedAway: 0,
    requests: { volume: 0, replica: 0, node: 0 },
    publishes: { volume: 0, replica: 0, node: 0 },
    noResponders: 0,
    refused: 0,
    closedBadly: 0,
    expired: 0,
    renewed: 0,
  };
  /** `advertise:port`, what offers name. */
  readonly address: string;

  private constructor(server: Server, address: string, options: LinkServerOptions) {
    const { logger, meter } = options;
    this.#connectionsMax = options.connectionsMax ?? linkConnectionsMax;
    this.#handshakesMax = options.handshakesMax ?? linkHandshakesMax;
    this.#unansweredMax = options.unansweredMax ?? linkUnansweredMax;
    this.#tokenLifetimeMs = options.tokenLifetimeMs ?? linkTokenLifetimeMs;
    if (!Number.isSafeInteger(this.#tokenLifetimeMs) || this.#tokenLifetimeMs <= 0) {
      throw new BallastError(
        ErrorCode.InvalidArgument,
        `a link token lifetime must be a positive whole number of ms, got ${this.#tokenLifetimeMs}`,
      );
    }
    this.#tokenClock = options.tokenClock ?? (() => performance.now());
    this.#server = server;
    this.address = address;
    this.#logger = logger;
    this.#received = meter?.createCounter("ballast_link_received", {
      description: "messages this process received over links, by scope and kind",
    });
    server.on("connection", (socket) => this.#accept(socket));
    // A sender pings every linkPingIntervalMs: one silent for longer than
    // linkSilenceMsMax is gone (no FIN seen) or stuck; its socket is closed.
    let checkedAtMs = performance.now();
    this.#silenceCheck = setInterval(() => {
      this.closeExpired();
      const now = performance.now();
      const lateMs = now - checkedAtMs - linkPingIntervalMs;
      checkedAtMs = now;
      for (const [socket, connection] of this.#connections) {
        if (socket.isPaused()) {
          // Not read while held back (unanswered requests): its pings wait unread, so it
          // is not judged silent, and is sent the pong they would have had, lest its
          // sender judge this server silent while it is only busy (module header).
          connection.writer.write(pongFrame);
        } else if (lateMs > linkStallMsMin) {
          // This process stalled: what senders sent meanwhile is unread (constants.ts).
          connection.heardAtMs = now;
        } else if (now - connection.heardAtMs > linkSilenceMsMax) {
          this.#closeBadly(socket, "silent sender");
        }
      }
    }, linkPingIntervalMs);
    this.#silenceCheck.unref();
  }

  /** Listens; rejects when the address cannot be bound. */
  static async listen(options: LinkServerOptions): Promise<LinkServer> {
    const server = createServer({ noDelay: true });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(options.port, options.host, () => {
        server.off("error", reject);
        resolve();
      });
    });
    const bound = server.address();
    const port = typeof bound === "object" && bound !== null ? bound.port : options.port;
    const link = new LinkServer(server, `${options.advertise}:${port}`, options);
    server.on("error", (error) =>
      options.logger.error({ error: String(error) }, "link listener failed"),
    );
    return link;
  }

  /** The epoch of the tokens handed out at `nowMs` (module header). */
  tokenEpochAt(nowMs: number): number {
    return Math.floor(nowMs / this.#tokenLifetimeMs);
  }

  /**
   * The token an offer of `scope` hands out at `nowMs`, and how long from then it surely
   * opens links: until its epoch's successor ends (one to two lifetimes).
   */
  offerToken(scope: LinkScope, nowMs = this.#tokenClock()): { token: Buffer; validMs: number } {
    const epoch = this.tokenEpochAt(nowMs);
    return {
      token: this.#token(scope, epoch),
      validMs: (epoch + 2) * this.#tokenLifetimeMs - nowMs,
    };
  }

  /** The token a hello of `scope` must carry (one handed out at `nowMs`). */
  tokenFor(scope: LinkScope, nowMs = this.#tokenClock()): Buffer {
    return this.offerToken(scope, nowMs).token;
  }

  /**
   * The epoch of the token of `scope` whose proof for `nonce` is `proof`, if that token
   * is still taken at `nowMs` (its epoch is this one or the one before); else undefined.
   */
  provenEpoch(
    scope: LinkScope,
    nonce: Uint8Array,
    proof: Uint8Array,
    nowMs = this.#tokenClock(),
  ): number | undefined {
    const current = this.tokenEpochAt(nowMs);
    let proven: number | undefined;
    // Both are computed whichever matches: the time taken says nothing of which.
    for (const epoch of [current, current - 1]) {
      const expected = linkProof(this.#token(scope, epoch), nonce);
      if (proof.byteLength === expected.byteLength && timingSafeEqual(proof, expected)) {
        proven = epoch;
      }
    }
    return proven;
  }

  /**
   * Ends the connections whose token aged out by `nowMs` (module header): run every
   * linkPingIntervalMs; tests call it with their clock's time.
   */
  closeExpired(nowMs = this.#tokenClock()): void {
    const current = this.tokenEpochAt(nowMs);
    for (const [socket, connection] of this.#connections) {
      const epoch = connection.tokenEpoch;
      if (epoch === undefined || connection.expiring || current <= epoch + 1) continue;
      this.#expire(socket, connection, epoch);
    }
  }

  #token(scope: LinkScope, epoch: number): Buffer {
    return createHmac("sha256", this.#secret).update(`${scope} ${epoch}`).digest();
  }

  /**
   * A connection whose token aged out: it takes no more requests (`no-responder`) and
   * is ended once the replies it awaits are sent, or destroyed after linkTokenDrainMs.
   */
  #expire(socket: Socket, connection: Connection, epoch: number): void {
    connection.expiring = true;
    this.#stats.expired++;
    this.#logger.info(
      { from: socket.remoteAddress, tokenEpoch: epoch, unanswered: connection.unanswered },
      "closing a link whose token aged out",
    );
    if (connection.unanswered === 0) {
      void endGracefully(socket, connection.writer);
      return;
    }
    // Held back at the cap: read on, so that what arrives is answered no-responder.
    if (socket.isPaused()) socket.resume();
    connection.drainTimer = setTimeout(() => {
      if (!socket.destroyed) this.#closeBadly(socket, "replies in flight past its token's end");
    }, linkTokenDrainMs);
    connection.drainTimer.unref();
  }

  /**
   * Routes `subject` to `deliver` until the returned function is called. A subject is
   * served by one subscription at a time, as on NATS (no queue groups on link scopes).
   */
  route(subject: string, scope: LinkScope, deliver: LinkDeliver): () => void {
    if (!subject.startsWith(linkScopePrefixes[scope])) {
      throw new BallastError(
        ErrorCode.InvalidArgument,
        `${subject} is not of the link scope ${scope}`,
      );
    }
    const entry = { scope, deliver };
    this.#routes.set(subject, entry);
    return () => {
      if (this.#routes.get(subject) === entry) this.#routes.delete(subject);
    };
  }

  /** Removes every route: what arrives from now on is answered `no-responder`. */
  unrouteAll(): void {
    this.#routes.clear();
  }

  stats(): LinkServerStats {
    return { ...structuredClone(this.#stats), open: this.#connections.size };
  }

  /**
   * Stops listening and closes every connection, gracefully: replies already given to a
   * writer (the last handlers' at shutdown) are flushed and the connection ended, so that
   * their senders get them rather than Unavailable for requests that were handled. A
   * connection not closed by its peer within linkCloseGraceMs is destroyed.
   */
  async close(): Promise<void> {
    this.#closing = true;
    this.#routes.clear();
    clearInterval(this.#silenceCheck);
    const listenerClosed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    await Promise.all(
      [...this.#connections].map(([socket, { writer }]) => endGracefully(socket, writer)),
    );
    await listenerClosed;
  }

  #accept(socket: Socket): void {
    // Accepted as the listener closed: the listener's close waits for every connection.
    if (this.#closing) {
      socket.destroy();
      return;
    }
    if (this.#connections.size >= this.#connectionsMax) {
      this.#turnAway(socket, `${this.address} is at its cap of ${this.#connectionsMax} links`);
      return;
    }
    if (this.#handshaking >= this.#handshakesMax) {
      this.#turnAway(
        socket,
        `${this.address} is at its cap of ${this.#handshakesMax} links not yet through hello`,
      );
      return;
    }
    const decoder = new LinkFrameDecoder();
    const writer = new FrameWriter(socket);
    const nonce = randomBytes(linkNonceBytes);
    const connection: Connection = {
      heardAtMs: performance.now(),
      writer,
      nonce,
      unanswered: 0,
      tokenEpoch: undefined,
      expiring: false,
      drainTimer: undefined,
    };
    this.#connections.set(socket, connection);
    this.#stats.accepted++;
    this.#handshaking++;
    let handshaking = true;
    const handshakeOver = () => {
      if (!handshaking) return;
      handshaking = false;
      this.#handshaking--;
    };
    socket.setNoDelay(true);
    let scope: LinkScope | undefined;
    const helloTimer = setTimeout(
      () => this.#closeBadly(socket, "no hello in time"),
      linkHelloTimeoutMs,
    );
    writer.write(encodeLinkFrame({ kind: "challenge", nonce }));
    socket.on("error", () => undefined);
    socket.on("close", () => {
      handshakeOver();
      clearTimeout(helloTimer);
      clearTimeout(connection.drainTimer);
      this.#connections.delete(socket);
    });
    socket.on("data", (chunk: Buffer) => {
      // Ending (closing): nothing more is taken; what was answered is on its way.
      if (socket.writableEnded) return;
      connection.heardAtMs = performance.now();
      let frames: LinkFrame[];
      try {
        frames = decoder.push(chunk);
      } catch (error) {
        this.#closeBadly(socket, (error as Error).message);
        return;
      }
      // Nobody unproven makes this process hold a large frame.
      if (scope === undefined && frames.length === 0 && decoder.buffered > linkHelloBytesMax) {
        this.#closeBadly(socket, "a hello too long");
        return;
      }
      for (const frame of frames) {
        if (socket.destroyed) return;
        if (scope === undefined) {
          clearTimeout(helloTimer);
          scope = this.#hello(socket, connection, nonce, frame);
          if (scope === undefined) return;
          handshakeOver();
          continue;
        }
        this.#frame(socket, connection, scope, frame);
      }
    });
  }

  /** The scope a valid hello opens, or undefined after refusing it. */
  #hello(
    socket: Socket,
    connection: Connection,
    nonce: Uint8Array,
    frame: LinkFrame,
  ): LinkScope | undefined {
    const writer = connection.writer;
    let reason: string | undefined;
    if (frame.kind !== "hello") reason = `expected hello, got ${frame.kind}`;
    else if (frame.version !== linkProtocolVersion) {
      reason = `link version ${frame.version}; this node speaks ${linkProtocolVersion}`;
    } else if (!linkScopes.includes(frame.scope)) reason = "unknown scope";
    else {
      connection.tokenEpoch = this.provenEpoch(frame.scope, nonce, frame.proof);
      if (connection.tokenEpoch === undefined) reason = "wrong or expired token";
    }
    if (reason !== undefined || frame.kind !== "hello") {
      this.#stats.refused++;
      this.#logger.warn({ reason, from: socket.remoteAddress }, "refused a link");
      writer.write(encodeLinkFrame({ kind: "refused", reason: reason ?? "refused" }));
      socket.end();
      return undefined;
    }
    writer.write(encodeLinkFrame({ kind: "hello-ok" }));
    return frame.scope;
  }

  #frame(socket: Socket, connection: Connection, scope: LinkScope, frame: LinkFrame): void {
    const writer = connection.writer;
    if (frame.kind === "ping") {
      writer.write(pongFrame);
      return;
    }
    if (frame.kind === "renew") {
      this.#renew(socket, connection, scope, frame.proof);
      return;
    }
    if (frame.kind !== "request" && frame.kind !== "publish") {
      this.#closeBadly(socket, `a ${frame.kind} frame from a sender`);
      return;
    }
    if (connection.expiring) {
      // Its token aged out: not handled (a publish is dropped, as by a link closed).
      if (frame.kind === "request") {
        this.#stats.noResponders++;
        writer.write(encodeLinkFrame({ kind: "no-responder", id: frame.id }));
      }
      return;
    }
    if (!frame.subject.startsWith(linkScopePrefixes[scope])) {
      this.#closeBadly(socket, `${frame.subject} is outside the link's scope ${scope}`);
      return;
    }
    const route = this.#routes.get(frame.subject);
    if (frame.kind === "publish") {
      this.#stats.publishes[scope]++;
      this.#received?.add(1, { scope, kind: "publish" });
      // Nothing serves it here: dropped, as NATS drops a message nobody subscribes to.
      route?.deliver({
        subject: frame.subject,
        data: frame.payload,
        reply: undefined,
        viaLink: true,
        headers: frame.traceparent === undefined ? undefined : new LinkHeaders(frame.traceparent),
        respond: answerNothing,
      });
      return;
    }
    this.#stats.requests[scope]++;
    this.#received?.add(1, { scope, kind: "request" });
    const id = frame.id;
    if (route === undefined) {
      this.#stats.noResponders++;
      writer.write(encodeLinkFrame({ kind: "no-responder", id }));
      return;
    }
    connection.unanswered++;
    if (connection.unanswered >= this.#unansweredMax && !socket.isPaused()) socket.pause();
    route.deliver(
      new LinkRequest(
        this.#answer,
        socket,
        connection,
        id,
        frame.subject,
        frame.payload,
        frame.traceparent,
      ),
    );
  }

  /**
   * Sends the reply to request `id` of a connection (LinkRequest.respond, once): `data`,
   * one part or several, each written to the socket by reference.
   */
  readonly #answer: Answer = (socket, connection, id, data) => {
    connection.unanswered--;
    if (socket.isPaused() && connection.unanswered < this.#unansweredMax) {
      connection.heardAtMs = performance.now();
      socket.resume();
    }
    if (socket.destroyed || socket.writableEnded) return false;
    connection.writer.write(encodeLinkFrame({ kind: "reply", id } satisfies LinkFrameHead, data));
    if (socket.writableLength > linkWriteBufferBytesMax) {
      this.#closeBadly(socket, "the sender does not read its replies");
    } else if (connection.expiring && connection.unanswered === 0) {
      void endGracefully(socket, connection.writer);
    }
    return true;
  };

  /**
   * A renewal on the link (module header): a proof of a token of this scope for the
   * connection's nonce, taken as a hello's is; the link then ages by the newer of its
   * tokens. One that aged out already is ending: nothing is answered, its sender sees the
   * link close. A wrong proof is a sender that is not what it claims: closed.
   */
  #renew(socket: Socket, connection: Connection, scope: LinkScope, proof: Uint8Array): void {
    if (connection.expiring) return;
    const epoch = this.provenEpoch(scope, connection.nonce, proof);
    if (epoch === undefined) {
      this.#stats.refused++;
      this.#closeBadly(socket, "a renewal with a wrong or expired token");
      return;
    }
    connection.tokenEpoch = Math.max(connection.tokenEpoch ?? epoch, epoch);
    this.#stats.renewed++;
    connection.writer.write(renewedFrame);
  }

  #turnAway(socket: Socket, reason: string): void {
    this.#stats.turnedAway++;
    socket.on("error", () => undefined);
    // Told why, then closed once the refusal is handed to the kernel: the sender's link
    // fails with the cap's name, not as if this server had crashed. Nothing is read.
    socket.write(Buffer.concat(encodeLinkFrame({ kind: "refused", reason })), () =>
      socket.destroy(),
    );
    const now = performance.now();
    if (now - this.#turnedAwayLoggedAtMs < linkTurnedAwayLogIntervalMs) return;
    this.#turnedAwayLoggedAtMs = now;
    this.#logger.warn(
      {
        from: socket.remoteAddress,
        open: this.#connections.size,
        handshaking: this.#handshaking,
        connectionsMax: this.#connectionsMax,
        handshakesMax: this.#handshakesMax,
        turnedAway: this.#stats.turnedAway,
      },
      "turned away a link connection at the caps",
    );
  }

  #closeBadly(socket: Socket, reason: string): void {
    if (socket.destroyed) return;
    this.#stats.closedBadly++;
    this.#logger.warn({ reason, from: socket.remoteAddress }, "closed a link");
    socket.destroy();
  }
}

const pongFrame = encodeLinkFrame({ kind: "pong" });
const renewedFrame = encodeLinkFrame({ kind: "renewed" });

/** One open connection, as the server keeps it. */
/** How a LinkRequest sends its reply: one function per server, not a closure per request. */
type Answer = (
  socket: Socket,
  connection: Connection,
  id: number,
  data: readonly Uint8Array[],
) => boolean;

/**
 * A request delivered over a link. A class rather than an object with a closure per
 * request: under tsx (keepNames) every closure made costs a name definition, which
 * showed in profiles of the hot path.
 */
class LinkRequest implements LinkMessage {
  readonly reply = "link";
  readonly viaLink = true;
  readonly headers: LinkHeaders | undefined;
  #answered = false;

  constructor(
    private readonly answer: Answer,
    private readonly socket: Socket,
    private readonly connection: Connection,
    private readonly id: number,
    readonly subject: string,
    readonly data: Uint8Array,
    traceparent: string | undefined,
  ) {
    this.headers = traceparent === undefined ? undefined : new LinkHeaders(traceparent);
  }

  respond(data: Uint8Array): boolean {
    return this.respondParts([data]);
  }

  /** The reply in parts, sent one after another by reference: none may change until sent. */
  respondParts(parts: readonly Uint8Array[]): boolean {
    if (this.#answered) return false;
    this.#answered = true;
    return this.answer(this.socket, this.connection, this.id, parts);
  }
}

/** A publish gets no answer. */
function answerNothing(): boolean {
  return false;
}

interface Connection {
  /** When it last sent anything (performance.now()). */
  heardAtMs: number;
  writer: FrameWriter;
  /** The challenge it was sent: hellos and renewals prove tokens for it. */
  nonce: Uint8Array;
  /** Requests delivered and not yet answered. */
  unanswered: number;
  /** The epoch of the newest token its hello or a renewal proved (undefined until then). */
  tokenEpoch: number | undefined;
  /** Its token aged out: it is being ended (LinkServer.#expire). */
  expiring: boolean;
  drainTimer: ReturnType<typeof setTimeout> | undefined;
}

/** Flushes and ends `socket`; destroys it if it has not closed within linkCloseGraceMs. */
async function endGracefully(socket: Socket, writer: FrameWriter): Promise<void> {
  if (socket.destroyed) return;
  const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
  writer.flush();
  socket.end();
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    closed,
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, linkCloseGraceMs);
    }),
  ]);
  clearTimeout(timer);
  socket.destroy();
}

/**
 * Writes frames to a socket, corked until the end of the turn so that the frames of one
 * turn (a batch of replies) go out in one writev, as the NATS client's flush does.
 */
export class FrameWriter {
  #corked = false;
  readonly #uncork = () => {
    this.#corked = false;
    this.socket.uncork();
  };

  constructor(private readonly socket: Socket) {}

  write(parts: readonly Uint8Array[]): void {
    if (this.socket.destroyed || this.socket.writableEnded) return;
    if (!this.#corked) {
      this.#corked = true;
      this.socket.cork();
      process.nextTick(this.#uncork);
    }
    for (const part of parts) this.socket.write(part);
  }

  /** Sends what this turn wrote now rather than at its end (before `end`). */
  flush(): void {
    if (!this.#corked) return;
    this.#corked = false;
    this.socket.uncork();
  }
}
