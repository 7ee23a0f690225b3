// The sender's end of links (protocol link.ts, link-server.ts): which subjects have a
// link, the connections they share, and one request or publish over a connection. The
// Bus decides what goes where (bus.ts); this module only keeps the routes and moves bytes.
//
// Model: a route maps one exact subject to a connection (one per address and scope,
// shared by every subject routed there). Routes are learned by asking `link.offer.v1`
// over NATS on the subject itself, at most once per subject per linkOfferRetryMs (or
// linkOfferRefusedRetryMs when the server takes no links), in the background: until a
// route exists, and whenever one is forgotten, messages go over NATS. Those times are
// kept for at most linkOfferTimesKeptMax subjects: with that many still to come, a
// subject not among them asks nothing until one is past (never is one dropped early,
// which would ask offers as fast as messages come), so a sender asks at most that many
// offers per linkOfferRetryMs, renewals aside; each message that would have asked is
// counted (`not-asked`), as nothing else shows it. A route is made only once its
// connection has had `hello-ok`, so a request never waits on a handshake.
// Routes are bounded: one not used for linkRouteIdleMs is dropped when the next route is
// learned, and past linkRoutesMax one not used lately makes room (a clock sweep over a
// used bit, the only work a send adds: one store). A dropped route is as if never
// learned: the next message goes over NATS and asks a fresh offer, whose connection is
// usually still open.
// A link that fails to open backs its address off (linkConnectBackoffBaseMs doubling to
// linkConnectBackoffMaxMs, jittered), and its subjects' offers with it, so that a dead or
// refusing server is not dialled every second per subject. So does one that closes
// within linkStableMs of its hello-ok without its sender ending it (a flapping link);
// one that stayed open that long resets the count when it closes. A backoff whose time
// is linkRouteIdleMs past is forgotten as routes are learned or links fail to open, so
// that addresses no longer offered (a server restarted on another port) are not kept.
//
// Tokens age (link-server.ts): an offer says how long its token surely has left. Between
// half and three quarters through (drawn, so that the senders of one server do not all
// renew at its epoch boundary: constants.ts), a new offer is asked over NATS on a
// subject the link carries. If it names the same address and says the server renews in
// place (`renewsInPlace`), the new token is proven on the link itself (`renew`, answered
// `renewed` within linkConnectTimeoutMs): nothing moves, and no second connection is
// needed, which a server at its connection cap would turn away. From an older server,
// a second connection is opened with the new token and, once it has had `hello-ok`, the
// routes move to it and the old one is retired: it takes no new message and is ended
// (FIN after what was written) once its last reply is in, so nothing in flight fails
// and nothing waits on the handshake. A renewal that fails is tried again
// after linkOfferRetryMs, jittered; a link whose token ran out unrenewed is retired, and its
// subjects go over NATS (and ask offers there) as if never linked. A sender that lost
// its NATS access thus loses its links with its tokens; the server enforces the same.
//
// Failure model: a connection that closes (the server died, refused, or found a frame it
// did not like) fails its waiting requests with Unavailable and takes its routes with it;
// a request not answered by its deadline fails with Timeout. Neither is ever resent here:
// it may have been handled. Only `no-responder` (the server says nothing there serves the
// subject: not handled) is told apart (LinkNotHandled), for the Bus to resend over NATS.

import { connect, type Socket } from "node:net";
import {
  BallastError,
  ErrorCode,
  encodeLinkFrame,
  type LinkFrame,
  LinkFrameDecoder,
  type LinkScope,
  linkProtocolVersion,
  linkScopeOf,
} from "@ballast/protocol";
import {
  linkCloseGraceMs,
  linkConnectBackoffBaseMs,
  linkConnectBackoffMaxMs,
  linkConnectTimeoutMs,
  linkOfferRefusedRetryMs,
  linkOfferRetryMs,
  linkOfferTimesKeptMax,
  linkPingIntervalMs,
  linkReadBufferBytes,
  linkRouteIdleMs,
  linkRoutesMax,
  linkSilenceMsMax,
  linkStableMs,
  linkStallMsMin,
  linkTokenRenewFractionMax,
  linkTokenRenewFractionMin,
  linkWriteBufferBytesMax,
} from "./constants.ts";
import { FrameWriter, linkProof } from "./link-server.ts";

/** A request the server did not handle (nothing serves its subject there): safe to resend. */
export class LinkNotHandled extends Error {
  override readonly name = "LinkNotHandled";
}

interface Waiting {
  subject: string;
  deadlineMs: number;
  resolve: (reply: Uint8Array) => void;
  reject: (error: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

/** One TCP connection to one server's link listener, for one scope. */
export class LinkConnection {
  readonly key: string;
  /** `host:port`, as the offer named it. */
  readonly address: string;
  /** Resolves on hello-ok; rejects (Unavailable) if the link cannot be opened. */
  readonly ready: Promise<void>;
  readonly #socket: Socket;
  readonly #writer: FrameWriter;
  readonly #decoder = new LinkFrameDecoder();
  readonly #waiting = new Map<number, Waiting>();
  readonly #onClose: (connection: LinkConnection) => void;
  readonly #scope: LinkScope;
  readonly #token: Uint8Array;
  #helloSent = false;
  /** The server's challenge: a renewal proves its token for it, as the hello did. */
  #nonce: Uint8Array | undefined;
  /** A renewal sent and not yet answered (`renew`). */
  #renewal: { settle: (error?: Error) => void; timer: ReturnType<typeof setTimeout> } | undefined;
  #idNext = 0;
  #open = false;
  #closed = false;
  /** Retired (`retire`): ended once nothing waits on it. */
  #retiring = false;
  /** Ended: a FIN sent, nothing more may be written. */
  #ended = false;
  #endTimer: ReturnType<typeof setTimeout> | undefined;
  /** When anything last arrived from the server (performance.now()). */
  #heardAtMs = performance.now();
  readonly #pinger: ReturnType<typeof setInterval>;
  #settleReady: (error?: Error) => void = () => undefined;

  constructor(
    address: string,
    scope: LinkScope,
    token: Uint8Array,
    onClose: (connection: LinkConnection) => void,
  ) {
    this.key = linkKey(address, scope);
    this.address = address;
    this.#onClose = onClose;
    this.#scope = scope;
    this.#token = token;
    const colon = address.lastIndexOf(":");
    const host = address.slice(0, colon).replace(/^\[(.*)\]$/, "$1");
    const port = Number(address.slice(colon + 1));
    this.ready = new Promise<void>((resolve, reject) => {
      this.#settleReady = (error) => {
        this.#settleReady = () => undefined;
        if (error === undefined) resolve();
        else reject(error);
      };
    });
    this.ready.catch(() => undefined);
    // The socket reads where the decoder says: the rest of a large reply's own buffer
    // while one is under way (so a 1 MiB read's reply is not gathered from 64 KiB
    // chunks and copied again: 12 % of the gateway's busy time at 1 MiB reads), else a
    // buffer of this connection's, whose bytes are copied out before the next read.
    const scratch = Buffer.allocUnsafeSlow(linkReadBufferBytes);
    let target: Uint8Array | undefined;
    this.#socket = connect({
      host,
      port,
      noDelay: true,
      onread: {
        buffer: () => {
          target = this.#decoder.readTarget();
          return target ?? scratch;
        },
        callback: (bytes: number, buffer: Uint8Array) => {
          if (buffer === target) this.#data(undefined, bytes);
          else this.#data(Buffer.from(buffer.subarray(0, bytes)));
          return true; // false would pause the socket
        },
      },
    });
    this.#writer = new FrameWriter(this.#socket);
    const timer = setTimeout(
      () => this.close(`no hello-ok from ${address} within ${linkConnectTimeoutMs} ms`),
      linkConnectTimeoutMs,
    );
    this.ready.then(
      () => clearTimeout(timer),
      () => clearTimeout(timer),
    );
    this.#socket.on("error", (error) => this.close(`link to ${address}: ${error.message}`));
    this.#socket.on("close", () => this.close(`link to ${address} closed`));
    // The hello waits for the server's challenge (protocol link.ts).
    // Publishes get no answers: pings tell a live server from one that stopped reading
    // or a path that swallows packets (protocol link.ts, "ping").
    let checkedAtMs = performance.now();
    this.#pinger = setInterval(() => {
      const now = performance.now();
      const lateMs = now - checkedAtMs - linkPingIntervalMs;
      checkedAtMs = now;
      if (!this.#open) return;
      if (lateMs > linkStallMsMin) this.#heardAtMs = now; // this process stalled
      const silentMs = now - this.#heardAtMs;
      if (silentMs > linkSilenceMsMax) {
        this.close(`nothing heard from ${address} for ${Math.round(silentMs)} ms`);
        return;
      }
      this.#writer.write(pingFrame);
    }, linkPingIntervalMs);
    this.#pinger.unref();
  }

  /** Open: hello-ok seen, neither closed nor ended. */
  get open(): boolean {
    return this.#open && !this.#closed && !this.#ended;
  }

  /**
   * Takes no more work from its owner (its routes moved elsewhere, or its token ran
   * out): what was written still goes out, the replies awaited still come, and once none
   * is awaited the connection is ended gracefully (module header).
   */
  retire(): void {
    if (this.#closed || this.#retiring) return;
    this.#retiring = true;
    this.#endIfDone();
  }

  /** Retired and nothing awaited: a FIN after what was written; closed when the server's comes. */
  #endIfDone(): void {
    if (!this.#retiring || this.#ended || this.#closed || this.#waiting.size > 0) return;
    this.#ended = true;
    this.#writer.flush();
    this.#socket.end();
    this.#endTimer = setTimeout(() => this.close("retired"), linkCloseGraceMs);
    this.#endTimer.unref();
  }

  /**
   * Proves `token` on this link (`renew`, module header); resolves once the server
   * answered `renewed`, rejects (Unavailable) if the link is not open or closes first,
   * or if no answer comes within linkConnectTimeoutMs. One at a time.
   */
  renew(token: Uint8Array): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const nonce = this.#nonce;
      if (!this.open || nonce === undefined) {
        reject(new BallastError(ErrorCode.Unavailable, `link to ${this.address} is not open`));
        return;
      }
      if (this.#renewal !== undefined) {
        reject(new BallastError(ErrorCode.Unavailable, "a renewal is already under way"));
        return;
      }
      const timer = setTimeout(
        () =>
          this.#renewal?.settle(
            new BallastError(
              ErrorCode.Unavailable,
              `no renewal answered by ${this.address} within ${linkConnectTimeoutMs} ms`,
            ),
          ),
        linkConnectTimeoutMs,
      );
      timer.unref();
      this.#renewal = {
        timer,
        settle: (error) => {
          clearTimeout(timer);
          this.#renewal = undefined;
          if (error === undefined) resolve();
          else reject(error);
        },
      };
      this.#writer.write(encodeLinkFrame({ kind: "renew", proof: linkProof(token, nonce) }));
    });
  }

  /** Requests waiting for their replies. */
  get waiting(): number {
    return this.#waiting.size;
  }

  /**
   * Sends a request; resolves with the reply envelope's bytes. Rejects with LinkNotHandled
   * (no-responder), or a BallastError Unavailable (the link closed, before or after the
   * request was written) or Timeout (no reply by the deadline).
   */
  request(
    subject: string,
    payload: readonly Uint8Array[],
    traceparent: string | undefined,
    deadlineMs: number,
  ): Promise<Uint8Array> {
    return new Promise<Uint8Array>((resolve, reject) => {
      if (!this.open) {
        reject(unavailable(subject, "the link is closed"));
        return;
      }
      const id = this.#idNext;
      this.#idNext = (this.#idNext + 1) >>> 0;
      const timer = setTimeout(() => {
        if (!this.#waiting.delete(id)) return;
        reject(linkTimeout(subject, deadlineMs));
        this.#endIfDone();
      }, deadlineMs);
      this.#waiting.set(id, { subject, deadlineMs, resolve, reject, timer });
      try {
        this.#writer.write(encodeLinkFrame({ kind: "request", id, subject, traceparent }, payload));
      } catch (error) {
        clearTimeout(timer);
        this.#waiting.delete(id);
        reject(error);
        return;
      }
      this.#checkBacklog();
    });
  }

  /** Sends a publish; false (nothing sent) when the link is not open. */
  publish(
    subject: string,
    payload: readonly Uint8Array[],
    traceparent: string | undefined,
  ): boolean {
    if (!this.open) return false;
    this.#writer.write(encodeLinkFrame({ kind: "publish", subject, traceparent }, payload));
    this.#checkBacklog();
    return true;
  }

  /** Closes the link; waiting requests fail with Unavailable. Safe to call again. */
  close(reason = "closed"): void {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#pinger);
    clearTimeout(this.#endTimer);
    this.#socket.destroy();
    this.#settleReady(new BallastError(ErrorCode.Unavailable, reason));
    this.#renewal?.settle(new BallastError(ErrorCode.Unavailable, reason));
    for (const waiting of this.#waiting.values()) {
      clearTimeout(waiting.timer);
      waiting.reject(unavailable(waiting.subject, reason));
    }
    this.#waiting.clear();
    this.#onClose(this);
  }

  /** A peer that does not read: close before the backlog grows without bound. */
  #checkBacklog(): void {
    if (this.#socket.writableLength > linkWriteBufferBytesMax) {
      this.close(`more than ${linkWriteBufferBytesMax} bytes unsent on the link`);
    }
  }

  /** `chunk` read, or (undefined) `targetBytes` read into the decoder's read target. */
  #data(chunk: Buffer | undefined, targetBytes = 0): void {
    this.#heardAtMs = performance.now();
    let frames: LinkFrame[];
    try {
      frames = chunk === undefined ? this.#decoder.pushed(targetBytes) : this.#decoder.push(chunk);
    } catch (error) {
      this.close((error as Error).message);
      return;
    }
    for (const frame of frames) {
      switch (frame.kind) {
        case "challenge":
          if (this.#helloSent) {
            this.close("a second challenge from the server");
            return;
          }
          this.#helloSent = true;
          this.#nonce = frame.nonce;
          this.#writer.write(
            encodeLinkFrame({
              kind: "hello",
              version: linkProtocolVersion,
              scope: this.#scope,
              proof: linkProof(this.#token, frame.nonce),
            }),
          );
          break;
        case "hello-ok":
          if (!this.#helloSent) {
            this.close("hello-ok before any challenge");
            return;
          }
          this.#open = true;
          this.#settleReady();
          break;
        case "refused":
          this.close(`link refused: ${frame.reason}`);
          return;
        case "reply":
        case "no-responder": {
          const waiting = this.#waiting.get(frame.id);
          if (waiting === undefined) break; // past its deadline
          this.#waiting.delete(frame.id);
          clearTimeout(waiting.timer);
          if (frame.kind === "reply") waiting.resolve(frame.payload);
          else waiting.reject(new LinkNotHandled(`nothing serves ${waiting.subject} there`));
          this.#endIfDone();
          break;
        }
        case "pong":
          break;
        case "renewed":
          // None waiting: the answer to one that gave up waiting (a server that read it
          // late, held back at its cap of unanswered requests). Harmless, as a late reply.
          this.#renewal?.settle();
          break;
        case "hello":
        case "request":
        case "publish":
        case "ping":
        case "renew":
          this.close(`a ${frame.kind} frame from a server`);
          return;
        default: {
          const never: never = frame;
          this.close(`unknown frame ${String(never)}`);
          return;
        }
      }
    }
  }
}

const pingFrame = encodeLinkFrame({ kind: "ping" });

function linkKey(address: string, scope: LinkScope): string {
  return `${scope} ${address}`;
}

function unavailable(subject: string, reason: string): BallastError {
  return new BallastError(ErrorCode.Unavailable, `request on ${subject} failed: ${reason}`, {
    details: { subject },
  });
}

function linkTimeout(subject: string, deadlineMs: number): BallastError {
  return new BallastError(
    ErrorCode.Timeout,
    `no reply on ${subject} within the deadline of ${deadlineMs} ms`,
    { details: { subject, deadlineMs } },
  );
}

/** What an offer said: where to connect and with what token, or that there is no link. */
export interface LinkOffer {
  address?: string | undefined;
  scope: LinkScope;
  token?: Uint8Array | undefined;
  /** How long from the answer the token surely opens links; undefined: it does not age. */
  validMs?: number | undefined;
  /** The server takes a renewal on the link (`renew`); else a renewal opens a second one. */
  renewsInPlace?: boolean | undefined;
}

/**
 * How an offer ended, for the sender's metrics: a route learned, no link there, a
 * failure, a link's token renewed (its routes moved to a new connection), a link
 * given up because its token ran out unrenewed, or an offer due but not asked because
 * linkOfferTimesKeptMax subjects' times are all to come (#holdOffers; counted at each
 * message that would have asked, which goes over NATS).
 */
export type OfferOutcome = "linked" | "no-link" | "failed" | "renewed" | "expired" | "not-asked";

/** When a connection's token must be renewed, and the timers that do it. */
interface TokenLife {
  expiresAtMs: number;
  renewTimer: ReturnType<typeof setTimeout> | undefined;
  expireTimer: ReturnType<typeof setTimeout>;
  /** Renewals tried (each asks on the next of the link's subjects). */
  tries: number;
}

/**
 * The routes of one sender: subject → open connection, and the discovery that makes
 * them. `ask` sends `link.offer.v1` over NATS on the subject (never over a link).
 */
/** A subject's route, and whether it was used since the last sweep looked at it. */
interface Route {
  connection: LinkConnection;
  used: boolean;
}

export class LinkRoutes {
  /** In the order learned (or last spared by a sweep): the oldest are looked at first. */
  readonly #routes = new Map<string, Route>();
  /** When idle routes were last dropped. */
  #sweptAtMs: number;
  /** When the address backoffs long past were last forgotten. */
  #backoffSweptAtMs: number;
  readonly #connections = new Map<string, LinkConnection>();
  /** Connections retired (routes moved away or token run out), until they close. */
  readonly #retired = new Set<LinkConnection>();
  /** Connections a renewal opened and has not yet taken into use or closed. */
  readonly #renewing = new Set<LinkConnection>();
  /** The aging tokens of connections (those whose offer said how long they have). */
  readonly #tokenLives = new Map<LinkConnection, TokenLife>();
  /**
   * Per subject, the time before which no offer is asked again: at most
   * linkOfferTimesKeptMax subjects (#holdOffers). A time only ever moves later.
   */
  readonly #notBefore = new Map<string, number>();
  /** No time in #notBefore is earlier than this (a bound, not always one held). */
  #notBeforeEarliestMs = Number.POSITIVE_INFINITY;
  /** When each connection this made had its hello-ok (on `nowMs`), until it closes. */
  readonly #openedAt = new Map<LinkConnection, number>();
  /** Per connection key, failures to open in a row and when the next try may be. */
  readonly #backoff = new Map<string, { failures: number; notBeforeMs: number }>();
  #closed = false;
  #lastFailure: string | undefined;
  /** While set (the sender's NATS connection is down), no route is used or made. */
  #suspended = false;

  constructor(
    private readonly ask: (subject: string) => Promise<LinkOffer>,
    private readonly onOffer: (outcome: OfferOutcome) => void = () => undefined,
    private readonly nowMs: () => number = () => performance.now(),
    /** Uniform in [0, 1): the backoff's jitter. */
    private readonly random: () => number = Math.random,
    private readonly limits: { routeIdleMs: number; routesMax: number } = {
      routeIdleMs: linkRouteIdleMs,
      routesMax: linkRoutesMax,
    },
  ) {
    this.#sweptAtMs = nowMs();
    this.#backoffSweptAtMs = this.#sweptAtMs;
  }

  /** The open connection for `subject`, or undefined (and, if due, an offer asked). */
  route(subject: string): LinkConnection | undefined {
    if (this.#suspended) return undefined;
    const route = this.#routes.get(subject);
    if (route !== undefined) {
      if (route.connection.open) {
        route.used = true;
        return route.connection;
      }
      this.#routes.delete(subject);
    }
    this.#discover(subject);
    return undefined;
  }

  /** Forgets `subject`'s route if it is still `connection`; the next message goes over NATS. */
  forget(subject: string, connection: LinkConnection): void {
    if (this.#routes.get(subject)?.connection === connection) this.#routes.delete(subject);
  }

  /**
   * Forgets every route and makes none until `resume`: the sender lost NATS, so what it
   * learned over NATS (who serves a subject) may be stale and nothing can be learned
   * anew; its messages go to NATS, as if it had no links. Connections stay open, to be
   * routed again by the next offers.
   */
  suspend(): void {
    this.#suspended = true;
    this.#routes.clear();
  }

  /** Routes may be learned again (NATS is back). */
  resume(): void {
    this.#suspended = false;
  }

  /** Subjects routed now (for tests and node info). */
  get routed(): number {
    return this.#routes.size;
  }

  /** Addresses (and scopes) whose links failed to open lately (for tests). */
  get addressesBackedOff(): number {
    return this.#backoff.size;
  }

  /** Subjects whose next offer waits for a time (for tests): at most linkOfferTimesKeptMax. */
  get offerTimesKept(): number {
    return this.#notBefore.size;
  }

  /**
   * Why the last link that failed to open or renew did (a server at its cap says so), for
   * node info: the sender's messages went over NATS meanwhile, so nothing else shows it.
   */
  get lastFailure(): string | undefined {
    return this.#lastFailure;
  }

  close(): void {
    this.#closed = true;
    for (const connection of [...this.#connections.values(), ...this.#retired, ...this.#renewing]) {
      connection.close("the bus closed");
    }
    this.#routes.clear();
  }

  #discover(subject: string): void {
    if (this.#closed) return;
    const now = this.nowMs();
    if ((this.#notBefore.get(subject) ?? Number.NEGATIVE_INFINITY) > now) return;
    // No room to remember the asking: not asked now (its messages go over NATS, as they
    // do while no route exists), lest it be asked again at its every message. Counted,
    // as nothing else shows a sender stuck there.
    if (!this.#holdOffers(subject, now + linkOfferRetryMs)) {
      this.onOffer("not-asked");
      return;
    }
    void this.#learn(subject).then(
      (outcome) => {
        if (outcome === "no-link")
          this.#holdOffers(subject, this.nowMs() + linkOfferRefusedRetryMs);
        this.onOffer(outcome);
      },
      () => this.onOffer("failed"),
    );
  }

  async #learn(subject: string): Promise<OfferOutcome> {
    const askedAtMs = this.nowMs();
    let offer: LinkOffer;
    try {
      offer = await this.ask(subject);
    } catch (error) {
      // An older server does not know the type: it takes no links.
      return error instanceof BallastError && error.code === ErrorCode.UnexpectedMessageType
        ? "no-link"
        : "failed";
    }
    // Closed meanwhile: a new socket now would keep a finished process alive.
    if (this.#closed || this.#suspended) return "failed";
    if (offer.address === undefined || offer.token === undefined) return "no-link";
    if (linkScopeOf(subject) !== offer.scope) return "no-link";
    const key = linkKey(offer.address, offer.scope);
    let connection = this.#connections.get(key);
    if (connection === undefined) {
      const backoff = this.#backoff.get(key);
      if (backoff !== undefined && backoff.notBeforeMs > this.nowMs()) {
        this.#holdOffers(subject, backoff.notBeforeMs);
        return "failed";
      }
      connection = new LinkConnection(offer.address, offer.scope, offer.token, (closed) =>
        this.#closedConnection(closed),
      );
      this.#connections.set(key, connection);
      this.#ageToken(connection, askedAtMs, offer.validMs);
      // Once per connection, before any subject waiting on it hears. The backoff is kept
      // until the link proves stable (#closedConnection).
      const opened = connection;
      opened.ready.then(
        () => {
          // Closed already (by a frame read with its hello-ok): it flapped.
          if (opened.open) this.#openedAt.set(opened, this.nowMs());
          else if (!this.#closed) this.#openFailed(key);
        },
        () => this.#openFailed(key),
      );
    }
    try {
      await connection.ready;
    } catch (error) {
      this.#lastFailure = (error as Error).message;
      const backoff = this.#backoff.get(key);
      if (backoff !== undefined) this.#holdOffers(subject, backoff.notBeforeMs);
      return "failed";
    }
    if (this.#closed || this.#suspended || !connection.open) return "failed";
    this.#makeRoom(subject);
    this.#routes.set(subject, { connection, used: true });
    return "linked";
  }

  /**
   * Before `subject` is routed: drops the routes idle since the last sweep, if that was
   * linkRouteIdleMs ago (and the address backoffs long past: #forgetOldBackoffs), then,
   * while the table is full, one not used since the sweep last passed it.
   */
  #makeRoom(subject: string): void {
    const now = this.nowMs();
    if (now - this.#sweptAtMs >= this.limits.routeIdleMs) {
      this.#sweptAtMs = now;
      for (const [known, route] of this.#routes) {
        if (route.used) route.used = false;
        else this.#routes.delete(known);
      }
      this.#forgetOldBackoffs();
    }
    if (this.#routes.has(subject)) return; // replaced, not added
    while (this.#routes.size > 0 && this.#routes.size >= this.limits.routesMax) {
      for (const [known, route] of this.#routes) {
        this.#routes.delete(known);
        if (!route.used) break;
        // Used since last looked at: spared once, to the back of the line.
        route.used = false;
        this.#routes.set(known, route);
      }
    }
  }

  /**
   * Forgets the address backoffs whose time is linkRouteIdleMs past (nothing was dialled
   * there since), at most once per that interval: nothing else ends those of an address
   * no longer offered (a server restarted on another port). Run as a route is learned
   * and as a link fails to open, so that a sender whose links never open (a firewall
   * between it and the servers) keeps no more than those failed lately either.
   */
  #forgetOldBackoffs(): void {
    const now = this.nowMs();
    if (now - this.#backoffSweptAtMs < this.limits.routeIdleMs) return;
    this.#backoffSweptAtMs = now;
    for (const [key, backoff] of this.#backoff) {
      if (backoff.notBeforeMs + this.limits.routeIdleMs <= now) this.#backoff.delete(key);
    }
  }

  /** A link to `key` did not open: the next try there waits longer (module header). */
  #openFailed(key: string): void {
    this.#forgetOldBackoffs();
    const failures = (this.#backoff.get(key)?.failures ?? 0) + 1;
    const ceilingMs = Math.min(
      linkConnectBackoffMaxMs,
      linkConnectBackoffBaseMs * 2 ** Math.min(failures - 1, 30),
    );
    const delayMs = ceilingMs * (0.5 + 0.5 * this.random());
    this.#backoff.set(key, { failures, notBeforeMs: this.nowMs() + delayMs });
  }

  /**
   * No offer for `subject` before `notBeforeMs` (asked now, refused, or its server's
   * address backed off), unless a later time is held already. A subject not held takes
   * room among linkOfferTimesKeptMax: the times already past are forgotten to make it
   * (one past is as if never held); if none is past, nothing is held and this is false.
   * Never is a time not yet past dropped for another: that subject would be asked again
   * at its next message, and again once dropped in turn, so that at the cap offers would
   * go out as fast as messages. A time not held only means asking sooner, never
   * connecting sooner (the address backoff is kept apart, #backoff).
   */
  #holdOffers(subject: string, notBeforeMs: number): boolean {
    const held = this.#notBefore.get(subject);
    if (held === undefined && this.#notBefore.size >= linkOfferTimesKeptMax) {
      if (!this.#forgetPastOfferTimes()) return false;
    }
    const kept = Math.max(held ?? notBeforeMs, notBeforeMs);
    this.#notBefore.set(subject, kept);
    this.#notBeforeEarliestMs = Math.min(this.#notBeforeEarliestMs, kept);
    return true;
  }

  /**
   * Forgets the offer times already past; true if any was. Looks only when the earliest
   * may be past, so that at the cap, with every time to come, a message pays no scan.
   */
  #forgetPastOfferTimes(): boolean {
    const now = this.nowMs();
    if (this.#notBeforeEarliestMs > now) return false;
    const size = this.#notBefore.size;
    let earliestMs = Number.POSITIVE_INFINITY;
    for (const [subject, notBefore] of this.#notBefore) {
      if (notBefore <= now) this.#notBefore.delete(subject);
      else earliestMs = Math.min(earliestMs, notBefore);
    }
    this.#notBeforeEarliestMs = earliestMs;
    return this.#notBefore.size < size;
  }

  #closedConnection(connection: LinkConnection): void {
    if (this.#connections.get(connection.key) === connection)
      this.#connections.delete(connection.key);
    const retired = this.#retired.delete(connection);
    const openedAtMs = this.#openedAt.get(connection);
    this.#openedAt.delete(connection);
    // Not ended by this sender: a link that flapped backs its address off, one that
    // stayed open resets it (module header).
    if (openedAtMs !== undefined && !retired && !this.#closed) {
      if (this.nowMs() - openedAtMs < linkStableMs) this.#openFailed(connection.key);
      else this.#backoff.delete(connection.key);
    }
    this.#endTokenLife(connection);
    for (const [subject, routed] of this.#routes) {
      if (routed.connection === connection) this.#routes.delete(subject);
    }
  }

  /**
   * Renews `connection`'s token at a drawn point between linkTokenRenewFractionMin and
   * linkTokenRenewFractionMax of the `validMs` its offer (asked at `askedAtMs`) gave it,
   * and retires the connection if it runs out first (module header). A token that does
   * not age (no `validMs`) needs neither.
   */
  #ageToken(connection: LinkConnection, askedAtMs: number, validMs: number | undefined): void {
    if (validMs === undefined) return;
    // Measured from the asking, before the server counted: never later than its end.
    const expiresAtMs = askedAtMs + validMs;
    const now = this.nowMs();
    const fraction =
      linkTokenRenewFractionMin +
      (linkTokenRenewFractionMax - linkTokenRenewFractionMin) * this.random();
    const life: TokenLife = {
      expiresAtMs,
      renewTimer: setTimeout(
        () => void this.#renew(connection),
        Math.max(0, askedAtMs + validMs * fraction - now),
      ),
      expireTimer: setTimeout(() => this.#expire(connection), Math.max(0, expiresAtMs - now)),
      tries: 0,
    };
    life.renewTimer?.unref();
    life.expireTimer.unref();
    this.#tokenLives.set(connection, life);
  }

  #endTokenLife(connection: LinkConnection): void {
    const life = this.#tokenLives.get(connection);
    if (life === undefined) return;
    clearTimeout(life.renewTimer);
    clearTimeout(life.expireTimer);
    this.#tokenLives.delete(connection);
  }

  /**
   * Asks a new offer for `old`'s server over NATS, on one of the subjects it carries;
   * opens a connection with the token, moves `old`'s routes to it once it is open and
   * retires `old`. Tried again about every linkOfferRetryMs until the token runs out.
   */
  async #renew(old: LinkConnection): Promise<void> {
    const life = this.#tokenLives.get(old);
    if (life === undefined) return;
    life.renewTimer = undefined;
    const carried: string[] = [];
    for (const [subject, route] of this.#routes) {
      if (route.connection === old) carried.push(subject);
    }
    const current = () =>
      !this.#closed && !this.#suspended && this.#connections.get(old.key) === old && old.open;
    // Nothing to ask on (no route yet, or none left: then it runs out and closes), or
    // NATS is down: looked at again later.
    if (carried.length === 0 || !current()) {
      this.#renewLater(old, life);
      return;
    }
    const subject = carried[life.tries++ % carried.length]!;
    const askedAtMs = this.nowMs();
    let next: LinkConnection | undefined;
    try {
      const offer = await this.ask(subject);
      if (
        offer.renewsInPlace === true &&
        current() &&
        offer.address === old.address &&
        offer.scope === linkScopeOf(subject) &&
        offer.token !== undefined
      ) {
        await old.renew(offer.token);
        if (current() && this.#tokenLives.get(old) === life) {
          this.#endTokenLife(old);
          this.#ageToken(old, askedAtMs, offer.validMs);
          this.onOffer("renewed");
          return;
        }
        throw new Error("the link renewed is gone");
      }
      if (
        current() &&
        offer.address === old.address &&
        offer.scope === linkScopeOf(subject) &&
        offer.token !== undefined
      ) {
        next = new LinkConnection(offer.address, offer.scope, offer.token, (closed) =>
          this.#closedConnection(closed),
        );
        // Closed by `close` if the bus closes during the handshake.
        this.#renewing.add(next);
        await next.ready;
        this.#renewing.delete(next);
        if (current() && next.open) {
          this.#connections.set(old.key, next);
          this.#openedAt.set(next, this.#openedAt.get(old) ?? this.nowMs());
          this.#ageToken(next, askedAtMs, offer.validMs);
          for (const route of this.#routes.values()) {
            if (route.connection === old) route.connection = next;
          }
          this.#retire(old);
          this.onOffer("renewed");
          return;
        }
      }
    } catch (error) {
      // Asked in vain (NATS refused or silent) or the new link did not open: try again.
      this.#lastFailure = `renewing ${old.address}: ${(error as Error).message}`;
    }
    if (next !== undefined) {
      this.#renewing.delete(next);
      next.close("not needed: the link it would renew is gone");
    }
    this.onOffer("failed");
    this.#renewLater(old, life);
  }

  /**
   * Tries `old`'s renewal again in about linkOfferRetryMs (half to one and a half of it:
   * senders turned away together do not come back together), while its token lives.
   */
  #renewLater(old: LinkConnection, life: TokenLife): void {
    if (this.#tokenLives.get(old) !== life || this.#closed) return;
    const delayMs = linkOfferRetryMs * (0.5 + this.random());
    life.renewTimer = setTimeout(() => void this.#renew(old), delayMs);
    life.renewTimer.unref();
  }

  /** `connection`'s token ran out unrenewed: its subjects go over NATS until offered anew. */
  #expire(connection: LinkConnection): void {
    if (!this.#tokenLives.has(connection)) return;
    this.#retire(connection);
    this.onOffer("expired");
  }

  /** Takes `connection` out of use (routes dropped) and ends it once nothing waits on it. */
  #retire(connection: LinkConnection): void {
    this.#endTokenLife(connection);
    if (this.#connections.get(connection.key) === connection)
      this.#connections.delete(connection.key);
    for (const [subject, routed] of this.#routes) {
      if (routed.connection === connection) this.#routes.delete(subject);
    }
    this.#retired.add(connection);
    connection.retire();
  }
}
