// The service shell every Ballast process shares. It owns the subscriptions, decodes
// each message at the edge, opens a server span parented on the sender's trace context,
// hands the typed message to the actor's one dispatch function, and answers with the
// reply envelope. It publishes heartbeats, answers `node.info.v1` on the node's inbox,
// and shuts down in order: stop taking messages, finish what is in flight, close the
// actor's resources, then close NATS and flush traces.
//
// Concurrency: each subscription is a nats.js callback subscription (`Deliveries`):
// messages reach the actor's dispatch one after another in delivery order, and up to
// `inflightMax` handlers of one subscription run at once; the rest wait, in order, up to
// `backlogMessagesMax` messages and `backlogBytesMax` bytes; past those, a request is
// answered Unavailable at once and a publish is dropped (shed, counted, logged).
// Actors rely on the order of dispatch (a primary applies one connection's requests in
// order), not on handlers finishing in order.
//
// Failure model: a handler that throws answers with an error reply (its BallastError
// code, or Internal) and the service goes on; a bad message never reaches the actor.
// A subscription the server refuses (a permissions violation) is different: the
// service can no longer do its work, and running on while its heartbeats say it is
// alive would hide that from the cluster. It is logged and `failed` settles, on which
// runService stops the process with exit code 1; nothing about it is left to become an
// unhandled rejection (which would end the process with a bare stack trace).
//
// Links (link-server.ts): a subject served with a link scope is also routed from the
// service's link listener, into the same deliveries, decode, dispatch and reply as its
// NATS subscription; the shell answers `link.offer.v1` on it (where to connect, and the
// token) before the actor's dispatch. Stopping a subject removes its link route first.

import {
  BallastError,
  decodeMessage,
  ErrorCode,
  encodeError,
  encodeResult,
  encodeResultParts,
  errorBody,
  isReplyInbox,
  type LinkScope,
  linkScopePrefixes,
  linkTokenValidMsMax,
  type Message,
  type MessageType,
  type ServiceKind,
  subjects,
} from "@ballast/protocol";
import type { Subscription } from "@nats-io/transport-node";
import {
  type Counter,
  createNoopMeter,
  type Meter,
  context as otelContext,
  type Span,
  type Tracer,
  trace,
} from "@opentelemetry/api";
import { type Bus, drainNats } from "./bus.ts";
import {
  backlogBytesMax,
  backlogCompactSlotsMin,
  backlogMessagesMax,
  ballastVersion,
  closersGraceMs,
  handlersInflightMax,
  natsCloseGraceMs,
  repliesRefusedLogIntervalMs,
  shutdownGraceMs,
} from "./constants.ts";
import { SealKeys } from "./link-seal.ts";
import { LinkServer, type LinkServerStats } from "./link-server.ts";
import { RepeatLog } from "./log-repeat.ts";
import type { Logger } from "./logger.ts";
import { settlesWithin } from "./settle.ts";
import { extractTraceContext, type HeaderCarrier, SpanKind, SpanStatusCode } from "./tracing.ts";

/** What a handler learns about the message beyond its content. */
export interface MessageContext {
  subject: string;
  /** True when the sender waits for a reply. */
  isRequest: boolean;
}

/** An actor's single dispatch point: a switch on `message.type`. */
export type Dispatch<M extends Message = Message> = (
  message: M,
  context: MessageContext,
) => unknown | Promise<unknown>;

export interface ServeOptions<T extends MessageType> {
  /** The message types this subject takes; anything else answers UnexpectedMessageType. */
  accept: readonly T[];
  /** A NATS queue group: one member of the group receives each message. */
  queue?: string;
  /** Messages handled at once on this subscription. */
  inflightMax?: number;
  /**
   * Open a span per message (default). Off for high-rate background traffic such as
   * heartbeats, whose spans would bury the ones worth reading. "when-carried": only for a
   * message whose sender put a trace context in its headers (replication: the notes of
   * a traced request carry one, acknowledgements and empty rounds none).
   */
  traced?: boolean | "when-carried";
  /**
   * Also take this subject's messages over links of this scope (link-server.ts), and
   * answer `link.offer.v1` on it. The subject must be of the scope's family.
   */
  link?: LinkScope;
  /**
   * A reply with large data that goes back over a link is sent in parts, the data by
   * reference (`encodeResultParts`), not copied into one encoding: a primary's answer
   * to a 1 MiB read spent about 40 % of its busy time in that copy. Only for handlers
   * whose results are never written again once returned: their bytes wait in the
   * socket's queue, maybe for several turns, until the kernel takes them. Replies over
   * NATS are encoded whole as before.
   */
  repliesByReference?: boolean;
}

/**
 * A delivered message, from NATS (its Msg) or a link (LinkMessage): what the shell reads
 * of it. A request has a non-empty `reply`; `respond` sends the reply envelope back.
 */
export interface Inbound {
  readonly subject: string;
  readonly data: Uint8Array;
  readonly reply?: string | undefined;
  /** True for a message that came by link: its reply goes back on the link, not to `reply`. */
  readonly viaLink?: boolean;
  readonly headers?: (HeaderCarrier & { has(key: string): boolean }) | undefined;
  respond(data: Uint8Array): boolean;
  /**
   * Sends the reply envelope as parts, one after another, each by reference (a link's
   * reply): none may change until sent. Absent where a reply goes as one buffer (NATS).
   */
  respondParts?(parts: readonly Uint8Array[]): boolean;
}

/** Where this service listens for links: `advertise` is the host senders are told. */
export interface LinkListenOptions {
  host: string;
  port: number;
  advertise: string;
  /** How long link tokens live (default linkTokenLifetimeMs; tests set short ones). */
  tokenLifetimeMs?: number;
}

export interface ServiceOptions {
  kind: ServiceKind;
  nodeId: string;
  bus: Bus;
  /** Undefined with tracing off (no exporter): no span is made. */
  tracer: Tracer | undefined;
  logger: Logger;
  heartbeatIntervalMs: number;
  /** The process's meter (metrics.ts); a no-op one when metrics are off. */
  meter?: Meter;
  /** Its data directory's id (data-dir.ts), sent in every heartbeat. */
  disk?: string;
}

type Closer = () => void | Promise<void>;

/** A subscription that can be stopped before the service stops. */
export interface Served {
  stop(): Promise<void>;
}

interface Route {
  accept: ReadonlySet<MessageType>;
  dispatch: Dispatch;
  traced: boolean | "when-carried";
  /** ServeOptions.repliesByReference. */
  byReference: boolean;
}

export class Service {
  readonly kind: ServiceKind;
  readonly nodeId: string;
  readonly bus: Bus;
  readonly logger: Logger;
  readonly startedAtMs = Date.now();
  /** On the monotonic clock: uptime from it cannot go negative when the wall clock steps back. */
  readonly #startedAtMonotonicMs = performance.now();
  /** Its data directory's id, if it has one (data-dir.ts). */
  readonly disk: string | undefined;
  /** Undefined with tracing off: actors check it before making a span. */
  readonly tracer: Tracer | undefined;
  /** Where the actor's instruments come from; a no-op meter when metrics are off. */
  readonly meter: Meter;
  /** Requests this service answered with an error, by message type and error code. */
  private readonly failures: Counter;
  /** Messages dropped unread because their reply subject is not an inbox (isReplyInbox). */
  private readonly repliesRefused: Counter;
  /** Dropped for their reply subject since the last line logged (at most one a repliesRefusedLogIntervalMs). */
  private repliesRefusedSinceLog = 0;
  private repliesRefusedLoggedAtMs = Number.NEGATIVE_INFINITY;
  /**
   * Failed requests by message type and error code: a client retrying against a fault
   * that lasts (a replica refused, a partition unavailable) fails the same way request
   * after request. Each kind is a line when it begins, then one per
   * logRepeatIntervalMs with the count left out; every failure stays a debug line and
   * is counted in `ballast_requests_failed`.
   */
  private readonly requestFailures = new RepeatLog();
  /** Messages shed by a full backlog (`Deliveries`), and one line per subject per interval. */
  private readonly shed: Counter;
  private readonly shedLog = new RepeatLog();
  private readonly heartbeatIntervalMs: number;
  private readonly subscriptions: Subscription[] = [];
  private readonly loops: Promise<void>[] = [];
  private readonly closers: Closer[] = [];
  private readonly subjectsServed: string[] = [];
  private describe: () => Record<string, unknown> = () => ({});
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private heartbeatSequence = 0;
  private stopping: Promise<void> | undefined;
  /**
   * Set by a stop that went on without waiting for everything: a handler still running
   * past its grace, or a closer past its. That work may still write the service's files,
   * so the data directory must stay locked until the process is gone (run.ts).
   */
  #workLeftAtStop = false;
  #failed: (reason: string) => void = () => undefined;
  /**
   * Resolves (never rejects) with the reason once the service cannot do its work any
   * more: a subscription refused by the server. runService then stops it (failed).
   */
  readonly failed: Promise<string> = new Promise((resolve) => {
    this.#failed = resolve;
  });
  #linkServer: LinkServer | undefined;
  /** Seals tokens in offers (link-seal.ts); made with the listener. */
  #sealKeys: SealKeys | undefined;

  constructor(options: ServiceOptions) {
    this.kind = options.kind;
    this.nodeId = options.nodeId;
    this.bus = options.bus;
    this.tracer = options.tracer;
    this.meter = options.meter ?? noopMeter;
    this.failures = this.meter.createCounter("ballast_requests_failed", {
      description: "NATS requests this service answered with an error, by type and code",
    });
    this.repliesRefused = this.meter.createCounter("ballast_replies_refused", {
      description:
        "NATS messages dropped unhandled because their reply subject is not an _INBOX one",
    });
    this.shed = this.meter.createCounter("ballast_messages_shed", {
      description:
        "messages turned away because their subscription's backlog was full (requests answered Unavailable, publishes dropped)",
    });
    this.logger = options.logger;
    this.heartbeatIntervalMs = options.heartbeatIntervalMs;
    this.disk = options.disk;
  }

  get isStopping(): boolean {
    return this.stopping !== undefined;
  }

  /** Subjects this service subscribes to, for node info and probing tools. */
  get subjects(): readonly string[] {
    return this.subjectsServed;
  }

  /** Supplies the kind-specific part of `node.info.v1` replies. */
  setDescription(describe: () => Record<string, unknown>): void {
    this.describe = describe;
  }

  /**
   * Listens for links; subjects served with a `link` scope from now on are routed from
   * it. Returns the address offers name (`advertise:port`).
   */
  async listenLinks(options: LinkListenOptions): Promise<string> {
    if (this.#linkServer !== undefined) return this.#linkServer.address;
    this.#sealKeys ??= new SealKeys();
    this.#linkServer = await LinkServer.listen({
      ...options,
      logger: this.logger,
      meter: this.meter,
    });
    this.logger.info({ link: this.#linkServer.address }, "listening for links");
    return this.#linkServer.address;
  }

  /** What this process received over links (undefined when it does not listen). */
  linkServerStats(): LinkServerStats | undefined {
    return this.#linkServer?.stats();
  }

  /**
   * Stops taking links: closes the listener and every link (replies already given are
   * flushed first, within linkCloseGraceMs), so that requests still in hand from them
   * can no longer be answered there (their senders fail them Unavailable, as a crash
   * would) and senders go back to NATS. Offers then name no address.
   */
  async closeLinks(): Promise<void> {
    const server = this.#linkServer;
    this.#linkServer = undefined;
    await server?.close();
  }

  /**
   * Answers `link.offer.v1` on a subject of `scope`: where to connect, the token sealed
   * to the asker's key (link-seal.ts), and how long it has left.
   */
  private linkOffer(scope: LinkScope, askerKey: Uint8Array) {
    const server = this.#linkServer;
    const keys = this.#sealKeys;
    if (server === undefined || keys === undefined) return { nodeId: this.nodeId, scope };
    const { token, validMs } = server.offerToken(scope);
    return {
      nodeId: this.nodeId,
      scope,
      address: server.address,
      key: keys.publicKey,
      sealed: keys.seal(askerKey, token),
      tokenValidMs: Math.min(Math.floor(validMs), linkTokenValidMsMax),
      renewsInPlace: true,
    };
  }

  /** Registers cleanup to run at shutdown, after in-flight messages finish; last in, first run. */
  onClose(closer: Closer): void {
    this.closers.push(closer);
  }

  /**
   * Subscribes to `subject` and hands each valid message to `dispatch`. The node's own
   * inbox is served by `serveInbox`, which adds `node.info.v1`.
   */
  serve<T extends MessageType>(
    subject: string,
    options: ServeOptions<T>,
    dispatch: Dispatch<Extract<Message, { type: T }>>,
  ): Served {
    const scope = options.link;
    // Before subscribing: a refusal must leave nothing behind.
    if (scope !== undefined) {
      if (!subject.startsWith(linkScopePrefixes[scope])) {
        throw new BallastError(
          ErrorCode.InvalidArgument,
          `${subject} is not of the link scope ${scope}`,
        );
      }
      // A link reaches the one process that offered it: a queue group's share of
      // messages would not hold (one subscription per subject, as on NATS).
      if (options.queue !== undefined) {
        throw new BallastError(
          ErrorCode.InvalidArgument,
          `${subject}: a subject served with a link scope cannot have a queue group`,
        );
      }
    }
    const route: Route = {
      accept: new Set<MessageType>(
        scope === undefined ? options.accept : [...options.accept, "link.offer.v1"],
      ),
      dispatch:
        scope === undefined
          ? (dispatch as Dispatch)
          : (message, context) =>
              message.type === "link.offer.v1"
                ? this.linkOffer(scope, message.key)
                : (dispatch as Dispatch)(message, context),
      traced: options.traced ?? true,
      byReference: options.repliesByReference ?? false,
    };
    const deliveries = new Deliveries(
      (raw) => this.handle(raw, route),
      options.inflightMax ?? handlersInflightMax,
      this.logger,
      (error) => this.subscriptionRefused(subject, error),
      {
        messagesMax: backlogMessagesMax,
        bytesMax: backlogBytesMax,
        shed: (raw, waiting) => this.shedMessage(subject, raw, waiting),
      },
    );
    const subscription = this.bus.connection.subscribe(subject, {
      ...(options.queue === undefined ? {} : { queue: options.queue }),
      callback: deliveries.deliver,
    });
    const unroute =
      scope === undefined || this.#linkServer === undefined
        ? undefined
        : this.#linkServer.route(subject, scope, (message) => deliveries.deliver(null, message));
    deliveries.closeWith(subscription);
    this.subscriptions.push(subscription);
    this.subjectsServed.push(subject);
    const loop = deliveries.finished;
    this.loops.push(loop);
    return {
      stop: async () => {
        // Links first: from now on a link request here is answered no-responder (not
        // handled), and its sender resends it over NATS.
        unroute?.();
        const index = this.subscriptions.indexOf(subscription);
        if (index < 0) return;
        this.subscriptions.splice(index, 1);
        this.subjectsServed.splice(this.subjectsServed.indexOf(subject), 1);
        // Messages already delivered are still handled; nothing new arrives. Within the
        // shutdown grace, as the service's own stop: a handler that never settles must
        // not hold its caller (a closer, a leader stepping down, a demotion) for good.
        const drained = subscription.drain().then(
          () => loop,
          () => loop,
        );
        if (!(await settlesWithin(drained, shutdownGraceMs))) {
          // Kept among the loops: the service's own stop waits for it again, and counts
          // it as work left (the data directory stays locked while it may write).
          this.logger.warn(
            { subject, graceMs: shutdownGraceMs },
            "in-flight messages of a stopped subject did not finish in time",
          );
          return;
        }
        const at = this.loops.indexOf(loop);
        if (at >= 0) this.loops.splice(at, 1);
      },
    };
  }

  /**
   * Serves the node's inbox: `node.info.v1` plus the actor's own types; with `link`
   * ("node"), over links too (a sled's chunk traffic), and with `repliesByReference`
   * (ServeOptions) large replies over links in parts.
   */
  serveInbox<T extends MessageType>(
    accept: readonly T[],
    dispatch: Dispatch<Extract<Message, { type: T }>>,
    options: { link?: "node"; repliesByReference?: boolean } = {},
  ): Served {
    return this.serve(
      subjects.node.build(this.kind, this.nodeId),
      { accept: [...accept, "node.info.v1" as const], ...options },
      (message, context) => {
        if (message.type === "node.info.v1") return this.info();
        return (dispatch as Dispatch)(message, context);
      },
    );
  }

  info() {
    return {
      kind: this.kind,
      nodeId: this.nodeId,
      pid: process.pid,
      startedAtMs: this.startedAtMs,
      uptimeMs: Math.floor(performance.now() - this.#startedAtMonotonicMs),
      version: ballastVersion,
      subjects: [...this.subjectsServed],
      details:
        this.#linkServer === undefined && this.bus.linkStats().scopes.length === 0
          ? this.describe()
          : this.withLinks(this.describe()),
    };
  }

  private withLinks(details: Record<string, unknown>): Record<string, unknown> {
    return {
      ...details,
      links: {
        address: this.#linkServer?.address,
        received: this.#linkServer?.stats(),
        sent: this.bus.linkStats(),
      },
    };
  }

  /** The server ended a subscription with an error: the service fails (module header). */
  private subscriptionRefused(subject: string, error: Error): void {
    const reason = `NATS ended the subscription to ${subject}: ${error.message}`;
    this.logger.fatal({ subject, error: error.message }, "a subscription failed; stopping");
    this.#failed(reason);
  }

  /** Starts heartbeats; the first goes out at once so that membership sees us quickly. */
  startHeartbeats(): void {
    const subject = subjects.heartbeat.build(this.kind, this.nodeId);
    const beat = () => {
      if (this.bus.connection.isClosed()) return;
      this.bus.publish(
        subject,
        {
          type: "heartbeat.v1",
          kind: this.kind,
          nodeId: this.nodeId,
          pid: process.pid,
          startedAtMs: this.startedAtMs,
          sentAtMs: Date.now(),
          sequence: this.heartbeatSequence++,
          version: ballastVersion,
          intervalMs: this.heartbeatIntervalMs,
          ...(this.disk === undefined ? {} : { disk: this.disk }),
        },
        { untraced: true },
      );
    };
    beat();
    this.heartbeatTimer = setInterval(beat, this.heartbeatIntervalMs);
  }

  /**
   * Whether the stop went on past work it had stopped waiting for (a handler or a closer
   * past its grace), which may still touch the service's files. Meaningful once `stop`
   * has resolved.
   */
  get workLeftAtStop(): boolean {
    return this.#workLeftAtStop;
  }

  /** Stops in order; safe to call more than once (later calls wait for the first). */
  stop(reason: string): Promise<void> {
    this.stopping ??= this.stopInOrder(reason);
    return this.stopping;
  }

  private async stopInOrder(reason: string): Promise<void> {
    this.logger.info({ reason }, "shutting down");
    if (this.heartbeatTimer !== undefined) clearInterval(this.heartbeatTimer);
    // Links first: what arrives by link from now on is answered no-responder.
    this.#linkServer?.unrouteAll();
    // Draining a subscription stops delivery and lets the loop handle what was already
    // delivered; the loops end once their in-flight handlers have finished.
    // Within the grace, drains included (a silent server never answers their flush).
    const drained = Promise.allSettled(
      this.subscriptions.map((subscription) => subscription.drain()),
    ).then(() => Promise.allSettled(this.loops));
    const finished = await settlesWithin(drained, shutdownGraceMs);
    if (!finished) {
      this.#workLeftAtStop = true;
      this.logger.warn({ graceMs: shutdownGraceMs }, "in-flight messages did not finish in time");
    }
    // After the handlers: their replies to link requests have been written.
    await this.closeLinks();
    if (!(await settlesWithin(this.runClosers(), closersGraceMs))) {
      this.#workLeftAtStop = true;
      this.logger.warn(
        { graceMs: closersGraceMs },
        "a resource did not close in time; stopping without it (as a crash would)",
      );
    }
    if (!(await drainNats(this.bus.connection, natsCloseGraceMs))) {
      this.logger.warn(
        { graceMs: natsCloseGraceMs },
        "the NATS connection did not drain (in time); closed it without",
      );
    }
    this.logger.info("stopped");
  }

  /** The closers, last registered first, each after the one before has settled. */
  private async runClosers(): Promise<void> {
    for (const closer of this.closers.reverse()) {
      try {
        await closer();
      } catch (error) {
        this.logger.error({ error: String(error) }, "a resource failed to close");
      }
    }
  }

  /**
   * Handles one delivered message: decode, span (when traced), dispatch, reply. The
   * actor's dispatch is called before this returns (so messages reach it in delivery
   * order); the result is a promise only while the handler is still running, so a
   * handler that answers at once costs no promise here. Never throws for a bad message
   * or a failing handler: those become error replies.
   */
  /**
   * A message its subscription's backlog had no room for: a request is answered
   * Unavailable (not handled, so its sender may resend it anywhere), a publish dropped.
   */
  private shedMessage(subject: string, raw: Inbound, waiting: BacklogWaiting): void {
    this.shed.add(1);
    const isRequest = raw.reply !== undefined && raw.reply !== "";
    if (isRequest && (raw.viaLink === true || isReplyInbox(raw.reply as string))) {
      raw.respond(
        encodeError(
          new BallastError(
            ErrorCode.Unavailable,
            `${this.kind} ${this.nodeId} is busy: ${waiting.messages} messages (${waiting.bytes} bytes) wait for a handler on ${subject}; try again`,
          ),
        ),
      );
    }
    const due = this.shedLog.due(subject, performance.now());
    if (due === undefined) return;
    this.logger.warn(
      {
        subject,
        waitingMessages: waiting.messages,
        waitingBytes: waiting.bytes,
        ...(due.first ? {} : { repeatsSuppressed: due.suppressed }),
      },
      "backlog full: turning messages away (requests answered Unavailable) until handlers catch up",
    );
  }

  private handle(raw: Inbound, route: Route): Promise<void> | undefined {
    const isRequest = raw.reply !== undefined && raw.reply !== "";
    if (isRequest && raw.viaLink !== true && !isReplyInbox(raw.reply as string)) {
      // Answering would publish our reply, as our NATS user, on a subject the sender
      // chose and may not publish on itself (the control bucket's keys, another
      // service's subjects). Nothing is run either: a request whose answer we withhold
      // must not take effect.
      this.repliesRefused.add(1);
      this.repliesRefusedSinceLog++;
      const now = performance.now();
      if (now - this.repliesRefusedLoggedAtMs < repliesRefusedLogIntervalMs) return undefined;
      this.logger.warn(
        {
          subject: raw.subject,
          reply: raw.reply,
          bytes: raw.data.byteLength,
          droppedSinceLastLine: this.repliesRefusedSinceLog,
        },
        "dropped a request whose reply subject is not an inbox",
      );
      this.repliesRefusedLoggedAtMs = now;
      this.repliesRefusedSinceLog = 0;
      return undefined;
    }
    let message: Message;
    try {
      message = decodeMessage(raw.data, { accept: route.accept });
    } catch (error) {
      this.logger.warn(
        { subject: raw.subject, bytes: raw.data.byteLength, ...errorBody(error) },
        "refused a message",
      );
      if (isRequest) raw.respond(encodeError(error));
      return undefined;
    }
    if (
      this.tracer === undefined ||
      !route.traced ||
      (route.traced === "when-carried" && !raw.headers?.has("traceparent"))
    ) {
      return this.run(raw, isRequest, message, route, undefined);
    }
    return this.handleTraced(raw, isRequest, message, route, this.tracer);
  }

  private async handleTraced(
    raw: Inbound,
    isRequest: boolean,
    message: Message,
    route: Route,
    tracer: Tracer,
  ): Promise<void> {
    const parent = extractTraceContext(raw.headers);
    const span = tracer.startSpan(
      `handle ${message.type}`,
      {
        kind: isRequest ? SpanKind.SERVER : SpanKind.CONSUMER,
        attributes: { "messaging.destination.name": raw.subject, "ballast.node": this.nodeId },
      },
      parent,
    );
    try {
      await otelContext.with(trace.setSpan(parent, span), () =>
        this.run(raw, isRequest, message, route, span),
      );
    } finally {
      span.end();
    }
  }

  /**
   * Calls the actor and answers; a throw (or a rejection) becomes an error reply, never a
   * crash. A result that is not a promise is answered at once.
   */
  private run(
    raw: Inbound,
    isRequest: boolean,
    message: Message,
    route: Route,
    span: Span | undefined,
  ): Promise<void> | undefined {
    let result: unknown;
    try {
      result = route.dispatch(message, { subject: raw.subject, isRequest });
    } catch (error) {
      this.fail(raw, isRequest, message, error, span);
      return undefined;
    }
    if (isPromiseLike(result)) {
      return Promise.resolve(result).then(
        (value) => this.answer(raw, isRequest, message, value, route, span),
        (error) => this.fail(raw, isRequest, message, error, span),
      );
    }
    this.answer(raw, isRequest, message, result, route, span);
    return undefined;
  }

  private answer(
    raw: Inbound,
    isRequest: boolean,
    message: Message,
    result: unknown,
    route: Route,
    span: Span | undefined,
  ): void {
    if (!isRequest) return;
    try {
      if (route.byReference && raw.respondParts !== undefined) {
        raw.respondParts(encodeResultParts(result ?? null));
      } else {
        raw.respond(encodeResult(result ?? null));
      }
    } catch (error) {
      // A result that cannot be encoded or sent (too large for NATS) answers as an error.
      this.fail(raw, isRequest, message, error, span);
    }
  }

  private fail(
    raw: Inbound,
    isRequest: boolean,
    message: Message,
    error: unknown,
    span: Span | undefined,
  ): void {
    const body = errorBody(error);
    this.failures.add(1, { type: message.type, code: body.code });
    span?.setStatus({ code: SpanStatusCode.ERROR, message: body.message });
    span?.setAttribute("ballast.error.code", body.code);
    const level = body.code === ErrorCode.Internal ? "error" : "warn";
    const due = this.requestFailures.due(`${message.type}/${body.code}`, performance.now());
    if (due === undefined) this.logger.debug({ type: message.type, ...body }, "request failed");
    else {
      this.logger[level](
        {
          type: message.type,
          ...body,
          ...(due.first ? {} : { repeatsSuppressed: due.suppressed }),
        },
        "request failed",
      );
    }
    if (isRequest) raw.respond(encodeError(error));
  }
}

/**
 * The deliveries of one subscription. It is a callback subscription: nats.js calls
 * `deliver` from its socket reader for each message, in order, with no async iterator
 * between (the iterator's `for await` cost about 15 µs of CPU per message, a tenth of a
 * hop). Each message starts its handler at once, in delivery order, while fewer than
 * `inflightMax` handlers run; the others wait in `backlog`, in order, for a slot, and
 * nats.js holds nothing. That is the concurrency of the loop it replaces: handlers are
 * started one after another in delivery order (a primary applies one connection's
 * requests in order because their dispatches start in order) and run concurrently up
 * to the bound. With a `bound`, what waits is bounded too (messages and bytes): nats.js
 * reads its socket whatever the handlers do, so a receiver slower than its senders kept
 * every message they sent; a message past the bound goes to `bound.shed` instead, never
 * to the handler (those admitted keep their order).
 *
 * `finished` resolves once the subscription has closed (drained, unsubscribed, refused
 * by the server, or its connection closed) and every message delivered before that has
 * been handled. It never rejects: it is awaited only when the subject is stopped, so a
 * rejection would go unhandled until then and end the process. A subscription error (a
 * permissions violation) goes to `onError` instead.
 */
/** What waits in a subscription's backlog (`Deliveries`). */
export interface BacklogWaiting {
  messages: number;
  bytes: number;
}

/** The bound of a subscription's backlog, and what is done with a message past it. */
export interface BacklogBound {
  messagesMax: number;
  bytesMax: number;
  /** Called (synchronously, in `deliver`) with each message the backlog has no room for. */
  shed: (message: Inbound, waiting: BacklogWaiting) => void;
}

export class Deliveries {
  readonly finished: Promise<void>;
  /** nats.js's callback: bound once, so a delivery makes no closure. */
  readonly deliver: (error: Error | null, message: Inbound) => void;
  private readonly backlog: Inbound[] = [];
  private backlogHead = 0;
  /** Bytes of the data of the messages waiting in `backlog` (not yet started). */
  private backlogBytes = 0;
  private inflight = 0;
  private closed = false;
  private resolveFinished: () => void = () => undefined;
  private readonly settled: () => void;
  private readonly settledBadly: (error: unknown) => void;

  constructor(
    private readonly handle: (raw: Inbound) => Promise<void> | undefined,
    private readonly inflightMax: number,
    private readonly logger: Logger,
    private readonly onError: (error: Error) => void,
    private readonly bound?: BacklogBound,
  ) {
    this.finished = new Promise((resolve) => {
      this.resolveFinished = resolve;
    });
    this.deliver = (error, message) => {
      if (error !== null) {
        if (this.closed) return;
        this.closed = true;
        this.onError(error);
        this.pump();
        return;
      }
      if (this.inflight >= this.inflightMax || this.backlogHead < this.backlog.length) {
        const waiting = this.backlog.length - this.backlogHead;
        const bytes = this.bound === undefined ? 0 : message.data.byteLength;
        if (
          this.bound !== undefined &&
          waiting > 0 &&
          (waiting >= this.bound.messagesMax || this.backlogBytes + bytes > this.bound.bytesMax)
        ) {
          this.bound.shed(message, { messages: waiting, bytes: this.backlogBytes });
          return;
        }
        this.backlog.push(message);
        this.backlogBytes += bytes;
        return;
      }
      this.start(message);
    };
    this.settled = () => {
      this.inflight--;
      this.pump();
    };
    this.settledBadly = (error) => {
      this.inflight--;
      this.unexpected(error);
      this.pump();
    };
  }

  /** Slots the backlog holds, handled ones included (for tests: bounded by what waits). */
  get backlogSlots(): number {
    return this.backlog.length;
  }

  /** Watches the subscription's end: `finished` waits for the handlers still running. */
  closeWith(subscription: Subscription): void {
    void subscription.closed.then(() => {
      this.closed = true;
      this.pump();
    });
  }

  private start(message: Inbound): void {
    let handled: Promise<void> | undefined;
    try {
      handled = this.handle(message);
    } catch (error) {
      this.unexpected(error);
      return;
    }
    if (handled === undefined) return;
    this.inflight++;
    handled.then(this.settled, this.settledBadly);
  }

  private pump(): void {
    while (this.inflight < this.inflightMax && this.backlogHead < this.backlog.length) {
      const message = this.backlog[this.backlogHead] as Inbound;
      this.backlog[this.backlogHead++] = undefined as unknown as Inbound;
      if (this.bound !== undefined) this.backlogBytes -= message.data.byteLength;
      if (this.backlogHead === this.backlog.length) {
        this.backlog.length = 0;
        this.backlogHead = 0;
      } else if (
        this.backlogHead >= backlogCompactSlotsMin &&
        this.backlogHead * 2 >= this.backlog.length
      ) {
        // A backlog that never empties (backlogCompactSlotsMin): drop the handled slots,
        // at a constant cost per message (no more are kept than dropped).
        this.backlog.splice(0, this.backlogHead);
        this.backlogHead = 0;
      }
      this.start(message);
    }
    if (this.closed && this.inflight === 0 && this.backlogHead === this.backlog.length) {
      this.resolveFinished();
    }
  }

  /** The error reply itself could not be sent (the connection closed under it). */
  private unexpected(error: unknown): void {
    this.logger.error({ error: String(error) }, "a message's handling failed outside its handler");
  }
}

function isPromiseLike(value: unknown): value is PromiseLike<unknown> {
  return (
    typeof value === "object" &&
    value !== null &&
    typeof (value as { then?: unknown }).then === "function"
  );
}

const noopMeter = createNoopMeter();
