// The bus: the one place a Ballast process talks to NATS. Requests carry a deadline and
// the caller's trace context; replies come back through the protocol's envelope, so a
// remote failure surfaces as a BallastError with the remote side's code. NATS-level
// faults (no responder, timeout, closed connection) become BallastErrors too, so a caller
// handles one error type.
//
// Links (link-client.ts): with `enableLinks`, a request or publish on a subject of an
// enabled scope goes over a direct TCP link to the process serving it once one is known,
// and over NATS until then; the same bytes either way, the same errors. A request the
// link's server did not handle (`no-responder`) is resent over NATS at once; one that
// may have been handled (the link closed, the deadline passed) fails as it would have
// on NATS (Unavailable, Timeout) and its route is forgotten, so the next request goes
// over NATS and asks for a link again. A reply over a link whose error says its server
// no longer serves the subject (NotPrimary, WrongEpoch, Unavailable, ShuttingDown) is
// the caller's as it came, and forgets the route too; and while the NATS connection is
// down no route is used at all (a node cut off from NATS sends as if it had no links).
// Switching transports mid-stream can reorder
// messages of one subject; every protocol on link scopes takes that (volume requests
// are independent and retried by the client, and a stale copy of a mutation that timed
// out here but is still unread at the primary is refused there by the ordering fence:
// headnode replica/ordering-fence.ts; replication tolerates lost and reordered
// messages: see the replica core's header).

import { readFileSync } from "node:fs";
import {
  BallastError,
  decodeReply,
  ErrorCode,
  encodeMessageParts,
  isNatsRole,
  type LinkScope,
  linkScopeOf,
  type Message,
  type MessageOf,
  type RequestType,
  type ResultOf,
  replyInboxOf,
} from "@ballast/protocol";
import {
  connect,
  createInbox,
  type Msg,
  type MsgHdrs,
  type NatsConnection,
  NoRespondersError,
  headers as natsHeaders,
  RequestError,
  TimeoutError,
} from "@nats-io/transport-node";
import type { Context, Counter, Meter, Tracer } from "@opentelemetry/api";
import {
  linkOfferDeadlineMs,
  natsCloseGraceMs,
  natsConnectTimeoutMs,
  natsPingIntervalMs,
  natsPingIntervalMsMax,
  natsPingIntervalMsMin,
  natsPingsOutMax,
  natsReconnectWaitMs,
  requestDeadlineMsDefault,
  requestDeadlineMsMax,
} from "./constants.ts";
import {
  type LinkConnection,
  LinkNotHandled,
  type LinkOffer,
  LinkRoutes,
  type OfferOutcome,
} from "./link-client.ts";
import { SealKeys } from "./link-seal.ts";
import { RepeatLog } from "./log-repeat.ts";
import type { Logger } from "./logger.ts";
import { settlesWithin } from "./settle.ts";
import { injectTraceContext, SpanKind, withSpan } from "./tracing.ts";

/** Who this connection is: a NATS user and password (one per role, see permissions.ts). */
export interface NatsCredentials {
  user: string;
  password: string;
}

/** How to reach NATS beyond the URL: credentials and, for tls:// servers, the CA. */
export interface NatsAccess {
  credentials?: NatsCredentials | undefined;
  /** PEM file of the CA that signed the servers' certificates (turns TLS on). */
  caFile?: string | undefined;
}

/**
 * Reads a credentials file: JSON `{ "user": …, "password": … }`, as `ballast up` writes
 * under its data directory (mode 0600) and an operator hands out for external clusters.
 */
export function readCredentialsFile(path: string): NatsCredentials {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    // The file system's message names the path and the reason, never the contents.
    throw new BallastError(
      ErrorCode.InvalidArgument,
      `cannot read NATS credentials from ${path}: ${(error as Error).message}`,
      { cause: error },
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    // V8's message quotes the text around the fault, which may be part of the password:
    // only the position is kept, and the parse error is not chained (a log of the cause
    // would print it).
    throw new BallastError(
      ErrorCode.InvalidArgument,
      `cannot read NATS credentials from ${path}: it is not valid JSON${jsonFaultPosition(error as Error, text)}`,
    );
  }
  const { user, password } = (parsed ?? {}) as Record<string, unknown>;
  if (typeof user !== "string" || typeof password !== "string" || user === "") {
    throw new BallastError(
      ErrorCode.InvalidArgument,
      `${path} must hold JSON {"user": "...", "password": "..."}`,
    );
  }
  return { user, password };
}

/**
 * " (at position N)" for a JSON.parse error whose message gives the offset of the fault,
 * " (it ends early)" for text that stops inside a value; "" when V8 names neither (its
 * "Unexpected token" message quotes the text instead).
 */
function jsonFaultPosition(error: Error, text: string): string {
  const position = /\bat position (\d+)\b/.exec(error.message);
  if (position !== null) return ` (at position ${position[1]})`;
  if (/unexpected end of JSON input/i.test(error.message)) {
    return text.trim() === "" ? " (the file is empty)" : " (it ends early)";
  }
  return "";
}

/**
 * `path` as the CA file of NATS's TLS, once it is known to be a readable file. Checked
 * before connecting: a missing CA file otherwise showed as whatever the first connect
 * attempt failed with ("server does not support 'tls'", a handshake error), after the
 * connect timeout.
 */
export function readableCaFile(path: string): string {
  try {
    readFileSync(path);
  } catch (error) {
    throw new BallastError(
      ErrorCode.InvalidArgument,
      `cannot read the NATS CA file ${path}: ${(error as Error).message}`,
      { cause: error },
    );
  }
  return path;
}

/**
 * Access from the environment: BALLAST_NATS_CREDS (a credentials file), else
 * BALLAST_NATS_USER with BALLAST_NATS_PASSWORD; BALLAST_NATS_CA for TLS. Used when the
 * caller gives none, so every tool that connects honours the same variables.
 */
export function natsAccessFromEnv(env: Readonly<Record<string, string | undefined>>): NatsAccess {
  const access: NatsAccess = {};
  if (env.BALLAST_NATS_CREDS) access.credentials = readCredentialsFile(env.BALLAST_NATS_CREDS);
  else if (env.BALLAST_NATS_USER) {
    access.credentials = { user: env.BALLAST_NATS_USER, password: env.BALLAST_NATS_PASSWORD ?? "" };
  }
  if (env.BALLAST_NATS_CA) access.caFile = readableCaFile(env.BALLAST_NATS_CA);
  return access;
}

export interface ConnectOptions {
  servers: string;
  /** Credentials and TLS; from the environment (natsAccessFromEnv) when absent. */
  access?: NatsAccess;
  /** Shown by the NATS server's monitoring as the connection name. */
  name: string;
  logger: Logger;
  /** Give up on the first connection after this long; later reconnects never give up. */
  connectTimeoutMs?: number;
  /**
   * How often to ping the server (natsPingIntervalMs when absent); after natsPingsOutMax
   * pings unanswered, the connection is taken for dead and replaced. Between
   * natsPingIntervalMsMin and natsPingIntervalMsMax.
   */
  pingIntervalMs?: number;
}

/**
 * Drains `connection` (what was published is flushed, then it closes), within
 * `graceMs`; past it, or when the drain fails, closes it without the flush. True when
 * the drain finished in time. On a server gone silent a drain waits for a PONG until
 * the pings run out (natsPingIntervalMs × natsPingsOutMax): a stopping process or a
 * finished command must not wait that long.
 */
export async function drainNats(
  connection: Pick<NatsConnection, "drain" | "close" | "isClosed">,
  graceMs: number = natsCloseGraceMs,
): Promise<boolean> {
  if (connection.isClosed()) return true;
  const drained = connection.drain().then(
    () => true,
    () => false,
  );
  if ((await settlesWithin(drained, graceMs)) && (await drained)) return true;
  // Not awaited: on a silent server the close's own flush could wait as well.
  void connection.close().catch(() => undefined);
  return false;
}

/**
 * Connects with unbounded reconnects; the first connection is retried up to a bound.
 * With several servers (a NATS cluster) the client fails over to any of them, and
 * learns the others from the cluster's gossip too.
 */
export async function connectNats(options: ConnectOptions): Promise<NatsConnection> {
  const servers = options.servers.split(",").map((server) => server.trim());
  const pingIntervalMs = options.pingIntervalMs ?? natsPingIntervalMs;
  if (
    !Number.isInteger(pingIntervalMs) ||
    pingIntervalMs < natsPingIntervalMsMin ||
    pingIntervalMs > natsPingIntervalMsMax
  ) {
    throw new BallastError(
      ErrorCode.InvalidArgument,
      `a NATS ping interval must be a whole number of ms from ${natsPingIntervalMsMin} to ${natsPingIntervalMsMax}, got ${pingIntervalMs}`,
    );
  }
  const access = options.access ?? natsAccessFromEnv(process.env);
  // A Ballast role's user may read only its own role's replies (permissions.ts); any
  // other user (an external NATS's) keeps nats.js's default prefix.
  const user = access.credentials?.user;
  const inboxPrefix = user !== undefined && isNatsRole(user) ? replyInboxOf(user) : undefined;
  const timeoutMs = options.connectTimeoutMs ?? natsConnectTimeoutMs;
  // A duration, so on the monotonic clock: a wall clock stepped back at start-up would
  // stretch it by the step, and one stepped forward would end it before any attempt.
  const deadline = performance.now() + timeoutMs;
  let lastError: unknown;
  let attempts = 0;
  while (performance.now() < deadline) {
    try {
      const connection = await connect({
        servers,
        name: options.name,
        maxReconnectAttempts: -1,
        reconnectTimeWait: natsReconnectWaitMs,
        pingInterval: pingIntervalMs,
        maxPingOut: natsPingsOutMax,
        timeout: Math.min(2000, Math.max(100, deadline - performance.now())),
        // Without this, every request builds a RequestError and a TimeoutError up front
        // to hold the caller's stack in case it fails (a tenth of the gateway's CPU on
        // the write path); a failed request is translated to a BallastError anyway.
        noAsyncTraces: true,
        ...(inboxPrefix === undefined ? {} : { inboxPrefix }),
        ...(access.credentials === undefined
          ? {}
          : { user: access.credentials.user, pass: access.credentials.password }),
        ...(access.caFile === undefined ? {} : { tls: { caFile: access.caFile } }),
      });
      tuneForLargeMessages(connection);
      watchStatus(connection, options.logger);
      return connection;
    } catch (error) {
      lastError = error;
      // Wrong credentials do not get better by waiting.
      if (isAuthorizationError(error)) break;
      if (attempts++ === 0) {
        options.logger.warn(
          { nats: options.servers, error: (error as Error).message },
          `waiting for NATS (giving up after ${timeoutMs} ms)`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, natsReconnectWaitMs));
    }
  }
  throw new BallastError(
    ErrorCode.Unavailable,
    `cannot connect to NATS at ${options.servers} within ${timeoutMs} ms: ${(lastError as Error)?.message ?? "no answer"}`,
    { cause: lastError },
  );
}

/**
 * A message of at least this many bytes is never copied whole by the NATS client on its
 * way out, and is received into a buffer of exactly its size (tuneForLargeMessages).
 */
export const natsLargeMessageBytesMin = 64 * 1024;

/** The parts of nats.js's parser and DenoBuffer `tuneForLargeMessages` relies on. */
interface ParserInternals {
  parse(buffer: Uint8Array): void;
  ma?: { size: number };
  msgBuf?: GrowableBuffer;
}
interface GrowableBuffer {
  readonly capacity: number;
  bytes(options: { copy: boolean }): Uint8Array;
  reset(): void;
  write(bytes: Uint8Array): number;
}
/** The parts of nats.js's protocol handler and DataBuffer it relies on. */
interface ProtocolInternals {
  parser?: object;
  flushPending(): void;
  infoReceived?: boolean;
  connected?: boolean;
  outbound?: { buffers?: Uint8Array[]; size(): number; reset(): void };
  transport?: {
    socket?: { cork?: () => void; uncork?: () => void };
    send?: (frame: Uint8Array) => void;
  };
}

const tuned = Symbol.for("ballast.nats.tunedForLargeMessages");

/**
 * Two changes to the NATS client's byte handling for large messages (1 MiB writes and
 * reads, 4 MiB chunks), made once per process on the client's classes:
 *
 * - **In**: a message whose payload spans several socket reads (any over 64 KiB) was
 *   gathered in a buffer that doubles as bytes arrive (`2 × capacity + needed`): 3.5 MiB
 *   allocated, zero-filled and 1.6 MiB copied for a 1 MiB message, on every process that
 *   receives one. The parser now gets, as soon as it knows the size, a buffer of exactly
 *   the payload's size (not zero-filled; every byte is written before it is read), so
 *   nothing grows and the payload is copied once, from the socket's reads.
 * - **Out**: the client concatenated everything pending into one new zero-filled buffer
 *   per flush (`DataBuffer.pack`), a copy of every large payload. Now runs of small
 *   buffers are still packed, but a buffer of at least `natsLargeMessageBytesMin` is
 *   handed to the socket as it is, all of one flush corked into one writev.
 *
 * Profiles of 1 MiB sequential I/O put the garbage collector at 33–42 % of the head
 * nodes', sleds' and gateway's busy time, largely from these buffers. The bytes on the
 * wire are the same. Each change checks for the internals it relies on and leaves the
 * client alone when they are not there (another nats.js version).
 */
export function tuneForLargeMessages(connection: NatsConnection): void {
  const protocol = (connection as unknown as { protocol?: ProtocolInternals }).protocol;
  if (protocol === undefined) return;
  const protocolClass = Object.getPrototypeOf(protocol) as ProtocolInternals & {
    [tuned]?: true;
  };
  if (protocolClass[tuned] === true) return;
  protocolClass[tuned] = true;
  const parser = protocol.parser;
  if (parser !== undefined) tuneParser(Object.getPrototypeOf(parser) as ParserInternals);
  if (typeof protocolClass.flushPending === "function") tuneFlush(protocolClass);
}

function tuneParser(parserClass: ParserInternals): void {
  const parse = parserClass.parse;
  if (typeof parse !== "function") return;
  parserClass.parse = function (this: ParserInternals, buffer: Uint8Array): void {
    parse.call(this, buffer);
    // A payload left unfinished at the end of this read is held in msgBuf, and `ma.size`
    // is its whole size: give it the room for all of it now.
    const held = this.msgBuf;
    const size = this.ma?.size ?? -1;
    if (held === undefined || size < natsLargeMessageBytesMin || held.capacity >= size) return;
    const Growable = held.constructor as new (room: ArrayBufferLike) => GrowableBuffer;
    const whole = new Growable(Buffer.allocUnsafeSlow(size).buffer);
    whole.reset();
    whole.write(held.bytes({ copy: false }));
    this.msgBuf = whole;
  };
}

function tuneFlush(protocolClass: ProtocolInternals): void {
  const flushPending = protocolClass.flushPending;
  protocolClass.flushPending = function (this: ProtocolInternals): void {
    const outbound = this.outbound;
    const socket = this.transport?.socket;
    const buffers = outbound?.buffers;
    if (
      !this.infoReceived ||
      !this.connected ||
      outbound === undefined ||
      !Array.isArray(buffers) ||
      typeof this.transport?.send !== "function" ||
      typeof socket?.cork !== "function" ||
      typeof socket.uncork !== "function" ||
      !buffers.some((buffer) => buffer.byteLength >= natsLargeMessageBytesMin)
    ) {
      flushPending.call(this);
      return;
    }
    const frames = packSmallRuns(buffers);
    outbound.reset();
    socket.cork();
    try {
      for (const frame of frames) this.transport.send(frame);
    } finally {
      socket.uncork();
    }
  };
}

/** The parts of nats.js's connection `publishParts` relies on. */
interface ConnectionInternals {
  _check?: (subject: string, sub: boolean, pub: boolean) => void;
  protocol?: {
    sendCommand?: (command: string, ...payloads: Uint8Array[]) => void;
    info?: { max_payload?: number };
    outBytes?: number;
    outMsgs?: number;
  };
}

const crlf = new Uint8Array([13, 10]);

/**
 * Publishes the message made of `parts` (in order), with a reply subject if given, as nats.js's
 * `publish` does, without first joining the parts into one buffer: the PUB (HPUB with
 * headers) line, the headers and every part go to the client's outbound queue as they
 * are, and from there to the socket (tuneForLargeMessages), so a large write or chunk
 * is not copied on its way out. The parts must not change until sent. One part, or a
 * client without the internals this needs, takes nats.js's `publish` (the parts joined).
 */
export function publishParts(
  connection: NatsConnection,
  subject: string,
  parts: readonly Uint8Array[],
  reply: string | undefined,
  headers: MsgHdrs | undefined,
): void {
  const internals = connection as unknown as ConnectionInternals;
  const protocol = internals.protocol;
  const sendCommand = protocol?.sendCommand;
  const maxPayload = protocol?.info?.max_payload;
  let bytes = 0;
  for (const part of parts) bytes += part.byteLength;
  const encodeHeaders = (headers as unknown as { encode?: () => Uint8Array } | undefined)?.encode;
  const headerBytes =
    headers === undefined || typeof encodeHeaders !== "function"
      ? undefined
      : encodeHeaders.call(headers);
  const total = bytes + (headerBytes?.byteLength ?? 0);
  if (
    parts.length === 1 ||
    typeof internals._check !== "function" ||
    protocol === undefined ||
    typeof sendCommand !== "function" ||
    typeof maxPayload !== "number" ||
    total > maxPayload ||
    (headers !== undefined && headerBytes === undefined)
  ) {
    const payload = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
    connection.publish(subject, payload, {
      ...(reply === undefined ? {} : { reply }),
      ...(headers === undefined ? {} : { headers }),
    });
    return;
  }
  // What nats.js checks before it publishes: an open connection, not draining, subjects
  // without whitespace.
  internals._check(subject, false, true);
  if (reply !== undefined) internals._check(reply, false, true);
  const to = reply === undefined ? subject : `${subject} ${reply}`;
  protocol.outBytes = (protocol.outBytes ?? 0) + total;
  protocol.outMsgs = (protocol.outMsgs ?? 0) + 1;
  if (headerBytes === undefined) {
    sendCommand.call(protocol, `PUB ${to} ${total}\r\n`, ...parts, crlf);
  } else {
    sendCommand.call(
      protocol,
      `HPUB ${to} ${headerBytes.byteLength} ${total}\r\n`,
      headerBytes,
      ...parts,
      crlf,
    );
  }
}

/**
 * `buffers` in order, each large one as it is and each run of small ones between them
 * packed into one buffer (a writev of many small pieces costs more than a copy).
 */
export function packSmallRuns(buffers: readonly Uint8Array[]): Uint8Array[] {
  const frames: Uint8Array[] = [];
  let runStart = 0;
  let runBytes = 0;
  const endRun = (end: number) => {
    if (end - runStart === 1) frames.push(buffers[runStart]!);
    else if (end > runStart) {
      const packed = Buffer.allocUnsafe(runBytes);
      let at = 0;
      for (let index = runStart; index < end; index += 1) {
        packed.set(buffers[index]!, at);
        at += buffers[index]!.byteLength;
      }
      frames.push(packed);
    }
    runBytes = 0;
  };
  for (let index = 0; index < buffers.length; index += 1) {
    const buffer = buffers[index]!;
    if (buffer.byteLength >= natsLargeMessageBytesMin) {
      endRun(index);
      frames.push(buffer);
      runStart = index + 1;
    } else {
      runBytes += buffer.byteLength;
    }
  }
  endRun(buffers.length);
  return frames;
}

function isAuthorizationError(error: unknown): boolean {
  return /authorization|authentication/i.test(String((error as Error)?.message ?? error));
}

async function watchStatus(connection: NatsConnection, logger: Logger): Promise<void> {
  const log = natsStatusLog(logger, () => performance.now());
  for await (const status of connection.status()) log(status);
}

/** The connection statuses natsStatusLog says something of. */
export type NatsStatusSeen =
  | { type: "disconnect" | "reconnecting" | "staleConnection" | "reconnect" }
  | { type: "error"; error?: unknown }
  | { type: string };

/**
 * What the log says of the NATS connection's statuses. The client tries again every
 * natsReconnectWaitMs (with its jitter) while the server is away and says "reconnecting"
 * at each attempt: a line each was 3 a second per process for as long as NATS was down.
 * Now: the loss once, a reminder per logRepeatIntervalMs with the attempts left out, and
 * the return once with how many there were. Errors: each distinct one once per interval.
 * `nowMs`: a monotonic clock (tests pass a fake one).
 */
export function natsStatusLog(
  logger: Pick<Logger, "info" | "warn" | "error">,
  nowMs: () => number,
  intervalMs?: number,
): (status: NatsStatusSeen) => void {
  const repeats = new RepeatLog(intervalMs);
  let attempts = 0;
  return (status) => {
    switch (status.type) {
      case "disconnect":
      case "reconnecting": {
        if (status.type === "reconnecting") attempts++;
        const due = repeats.due("lost", nowMs());
        if (due === undefined) break;
        logger.warn(
          due.first
            ? { nats: status.type }
            : { nats: status.type, attempts, repeatsSuppressed: due.suppressed },
          due.first
            ? "NATS connection lost; reconnecting"
            : "NATS connection still lost; reconnecting",
        );
        break;
      }
      case "staleConnection":
        // Then "disconnect": said apart, so a log shows why the connection was dropped.
        logger.warn(
          { nats: status.type, pingsOutMax: natsPingsOutMax },
          "NATS server stopped answering pings; dropping the connection",
        );
        break;
      case "reconnect":
        repeats.end("lost");
        logger.info({ nats: status.type, attempts }, "NATS connection restored");
        attempts = 0;
        repeats.forget((key) => key.startsWith("error/"));
        break;
      case "error": {
        const error = String((status as { error?: unknown }).error);
        const due = repeats.due(`error/${error}`, nowMs());
        if (due === undefined) break;
        logger.error(
          due.first
            ? { nats: status.type, error }
            : { nats: status.type, error, repeatsSuppressed: due.suppressed },
          "NATS error",
        );
        break;
      }
      default:
        break;
    }
  };
}

export interface RequestOptions {
  /** How long to wait for the reply; the request fails with Timeout after it. */
  deadlineMs?: number;
  /**
   * The message as `encodeMessageParts` encoded it, when the caller sends one message to
   * several places (a chunk to each of its sleds): encoded once, not once per request.
   * The bytes are sent as they are, so they must not change while any request is out.
   */
  encoded?: readonly Uint8Array[];
  /** Over NATS even where a link is known (a link offer: links are learned over NATS). */
  viaNats?: boolean;
}

/**
 * Why a message of a linked scope went over NATS rather than a link it had; for
 * "not-serving", why a link's route was forgotten after its reply (the reply itself is
 * the caller's, as it came).
 */
export type LinkFallbackReason = "no-responder" | "closed" | "timeout" | "not-sent" | "not-serving";

/**
 * Error codes in a reply over a link that say its server no longer serves the subject
 * as the sender needs (deposed, another epoch, a lease run out, stopping): the route is
 * forgotten, so that retries go over NATS, to whoever serves it now, and a link to that
 * one is asked for. Without this a node that answers but no longer serves (cut off from
 * NATS, say) would be sent every retry forever.
 */
const notServingCodes: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  ErrorCode.NotPrimary,
  ErrorCode.WrongEpoch,
  ErrorCode.Unavailable,
  ErrorCode.ShuttingDown,
]);

/** What a Bus sent by link and by NATS on its linked scopes (node info, tests). */
export interface LinkSendStats {
  scopes: LinkScope[];
  routed: number;
  /** Why the last link that failed to open or renew did (link-client.ts). */
  lastFailure?: string | undefined;
  link: { requests: number; publishes: number };
  nats: { requests: number; publishes: number };
  fallbacks: Record<LinkFallbackReason, number>;
  /**
   * Offers by outcome; `renewed` and `expired` count links' tokens, `not-asked` the
   * messages whose offer was due but found no room to keep its time (link-client.ts).
   */
  offers: Record<OfferOutcome, number>;
}

/** A request waiting for its reply (ReplyRouter). */
interface Waiting {
  subject: string;
  deadlineMs: number;
  resolve: (reply: Uint8Array) => void;
  reject: (error: BallastError) => void;
  timer: ReturnType<typeof setTimeout>;
}

/**
 * Where the replies to one Bus's requests arrive: one subscription on `<inbox>.*` for all
 * of them, and the requests waiting, by the token that ends their reply subject; each
 * has one timer for its deadline. nats.js's own `request` does the same with more: a
 * RequestOne, a deferred and a timeout object per request, and on every reply a
 * RequestError ("cancelled") whose stack trace nobody reads (6 % of the gateway's busy
 * time at QD1, where every write is its own request). The errors are those of
 * `translateNatsError`: no responder (the server's 503 status reply) and a closed
 * connection are Unavailable, no reply by the deadline is Timeout.
 */
class ReplyRouter {
  readonly #connection: NatsConnection;
  readonly #prefix: string;
  readonly #waiting = new Map<string, Waiting>();
  #tokenNext = 0;

  constructor(connection: NatsConnection) {
    this.#connection = connection;
    // Under the connection's own prefix (its role's: connectNats), as nats.js's requests.
    const options = (connection as { options?: { inboxPrefix?: string } }).options;
    this.#prefix = `${createInbox(options?.inboxPrefix)}.`;
    connection.subscribe(`${this.#prefix}*`, {
      callback: (error, message) => {
        if (error !== null) {
          this.#failAll(
            new BallastError(ErrorCode.Unavailable, `replies cannot arrive: ${error.message}`, {
              cause: error,
            }),
          );
          return;
        }
        this.#deliver(message);
      },
    });
    void this.#refusePermissionViolations(connection);
    // Requests in flight when the connection closes get no reply: fail them now rather
    // than at their deadlines.
    void connection
      .closed()
      .then(() =>
        this.#failAll(
          new BallastError(ErrorCode.Unavailable, "the NATS connection closed before the reply"),
        ),
      );
  }

  /** Publishes `payload` on `subject` with a reply subject of its own; resolves with the reply. */
  request(
    subject: string,
    payload: readonly Uint8Array[],
    deadlineMs: number,
    headers: MsgHdrs | undefined,
  ): Promise<Uint8Array> {
    const token = (this.#tokenNext++).toString(36);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this.#waiting.delete(token)) reject(timeoutError(subject, deadlineMs));
      }, deadlineMs);
      this.#waiting.set(token, { subject, deadlineMs, resolve, reject, timer });
      try {
        publishParts(this.#connection, subject, payload, this.#prefix + token, headers);
      } catch (error) {
        clearTimeout(timer);
        this.#waiting.delete(token);
        reject(translateNatsError(error, subject, deadlineMs));
      }
    });
  }

  #deliver(message: Msg): void {
    const token = message.subject.slice(this.#prefix.length);
    const waiting = this.#waiting.get(token);
    if (waiting === undefined) return; // late (past its deadline) or a stray
    this.#waiting.delete(token);
    clearTimeout(waiting.timer);
    if (message.data.length === 0 && message.headers?.code === 503) {
      waiting.reject(noResponderError(waiting.subject));
      return;
    }
    waiting.resolve(message.data);
  }

  /**
   * NATS drops a publish the user may not make and says so only on the connection's
   * status (`-ERR 'Permissions Violation for Publish to …'`): without this, a request on
   * a subject the role may not use (a client's volume delete) would wait out its whole
   * deadline and fail as a Timeout. Every request waiting on that subject fails at once
   * with PermissionDenied instead.
   */
  async #refusePermissionViolations(connection: NatsConnection): Promise<void> {
    const user = (connection as { options?: { user?: string } }).options?.user;
    try {
      for await (const status of connection.status()) {
        if (status.type !== "error") continue;
        const refused = status.error as { name?: string; operation?: string; subject?: string };
        if (refused.name !== "PermissionViolationError" || refused.operation !== "publish")
          continue;
        const subject = refused.subject;
        if (subject === undefined) continue;
        for (const [token, waiting] of this.#waiting) {
          if (waiting.subject !== subject) continue;
          this.#waiting.delete(token);
          clearTimeout(waiting.timer);
          waiting.reject(
            new BallastError(
              ErrorCode.PermissionDenied,
              `permission denied: NATS does not let ${user === undefined ? "this connection's user" : `user ${user}`} publish on ${subject}`,
              {
                cause: status.error,
                details: { subject, ...(user === undefined ? {} : { user }) },
              },
            ),
          );
        }
      }
    } catch {
      // The status stream ends with the connection; nothing is waiting then.
    }
  }

  #failAll(error: BallastError): void {
    for (const waiting of this.#waiting.values()) {
      clearTimeout(waiting.timer);
      waiting.reject(error);
    }
    this.#waiting.clear();
  }
}

/** Sends requests and publications with trace context, and decodes replies. */
export class Bus {
  readonly connection: NatsConnection;
  /** Made at the first request: the reply subscription is one per Bus. */
  #replies: ReplyRouter | undefined;
  /** Undefined with tracing off: requests then make no span and carry no headers. */
  private readonly tracer: Tracer | undefined;

  /** Requests that failed, by message type and error code (a no-op without metrics). */
  private readonly failures: Counter | undefined;
  readonly #meter: Meter | undefined;
  /** Set by enableLinks: the scopes that may go over links, and their routes. */
  #linkScopes: ReadonlySet<LinkScope> = new Set();
  #links: LinkRoutes | undefined;
  /** Opens the tokens offers carry (link-seal.ts). */
  #sealKeys: SealKeys | undefined;
  #linkSent: Counter | undefined;
  #linkFallbacks: Counter | undefined;
  #linkOffers: Counter | undefined;
  readonly #linkStats: LinkSendStats = {
    scopes: [],
    routed: 0,
    link: { requests: 0, publishes: 0 },
    nats: { requests: 0, publishes: 0 },
    fallbacks: { "no-responder": 0, closed: 0, timeout: 0, "not-sent": 0, "not-serving": 0 },
    offers: { linked: 0, "no-link": 0, failed: 0, renewed: 0, expired: 0, "not-asked": 0 },
  };

  constructor(connection: NatsConnection, tracer: Tracer | undefined, meter?: Meter) {
    this.connection = connection;
    this.tracer = tracer;
    this.#meter = meter;
    this.failures = meter?.createCounter("ballast_nats_request_errors", {
      description: "NATS requests this process sent that failed, by type and error code",
    });
  }

  /**
   * Sends messages of these scopes over links where one is known (module header). Called
   * once, before traffic; a later call adds scopes. The links close with the connection.
   */
  enableLinks(scopes: readonly LinkScope[]): void {
    this.#linkScopes = new Set([...this.#linkScopes, ...scopes]);
    this.#linkStats.scopes = [...this.#linkScopes];
    if (this.#links !== undefined) return;
    this.#linkSent = this.#meter?.createCounter("ballast_link_sent", {
      description: "messages of linked scopes this process sent, by scope, kind and transport",
    });
    this.#linkFallbacks = this.#meter?.createCounter("ballast_link_fallbacks", {
      description: "messages that had a link but went over NATS or failed with it, by reason",
    });
    this.#linkOffers = this.#meter?.createCounter("ballast_link_offers", {
      description: "link offers by outcome; not-asked: due, but no room to keep its time",
    });
    this.#sealKeys = new SealKeys();
    const links = new LinkRoutes(
      (subject) => this.#askOffer(subject),
      (outcome) => {
        this.#linkStats.offers[outcome]++;
        this.#linkOffers?.add(1, { outcome });
      },
    );
    this.#links = links;
    void this.connection.closed().then(() => links.close());
    void this.#suspendLinksWhileDisconnected(links);
  }

  /**
   * No routes while NATS is down: a node cut off from NATS may be cut off from the
   * cluster (its leases run out, others take over its partitions), and what it learned
   * over NATS is then stale. Its messages go to NATS (buffered by nats.js, or failing as
   * they would without links) until it reconnects and offers are asked anew.
   */
  async #suspendLinksWhileDisconnected(links: LinkRoutes): Promise<void> {
    try {
      for await (const status of this.connection.status()) {
        if (status.type === "disconnect" || status.type === "reconnecting") links.suspend();
        else if (status.type === "reconnect") links.resume();
      }
    } catch {
      // The status stream ends with the connection; so do the links.
    }
  }

  /** What went by link and by NATS, for node info and tests. */
  linkStats(): LinkSendStats {
    return {
      ...structuredClone(this.#linkStats),
      routed: this.#links?.routed ?? 0,
      lastFailure: this.#links?.lastFailure,
    };
  }

  /** Asks `subject`'s server for a link, over NATS, and opens the token it seals. */
  async #askOffer(subject: string): Promise<LinkOffer> {
    const keys = this.#sealKeys;
    if (keys === undefined) throw new Error("links are not enabled");
    const offer = await this.request<"link.offer.v1">(
      subject,
      { type: "link.offer.v1", key: keys.publicKey },
      { deadlineMs: linkOfferDeadlineMs, viaNats: true },
    );
    if (offer.address === undefined || offer.key === undefined || offer.sealed === undefined) {
      return { scope: offer.scope };
    }
    return {
      address: offer.address,
      scope: offer.scope,
      token: keys.open(offer.key, offer.sealed),
      validMs: offer.tokenValidMs,
      renewsInPlace: offer.renewsInPlace,
    };
  }

  /** The link for `subject`, if its scope is linked and a route is known. */
  #linkFor(subject: string): { scope: LinkScope; link: LinkConnection | undefined } | undefined {
    if (this.#links === undefined) return undefined;
    const scope = linkScopeOf(subject);
    if (scope === undefined || !this.#linkScopes.has(scope)) return undefined;
    return { scope, link: this.#links.route(subject) };
  }

  #countSent(scope: LinkScope, kind: "request" | "publish", transport: "link" | "nats"): void {
    this.#linkStats[transport][kind === "request" ? "requests" : "publishes"]++;
    this.#linkSent?.add(1, { scope, kind, transport });
  }

  #countFallback(scope: LinkScope, reason: LinkFallbackReason): void {
    this.#linkStats.fallbacks[reason]++;
    this.#linkFallbacks?.add(1, { scope, reason });
  }

  /** Sends a request and returns its validated result, or throws a BallastError. */
  request<T extends RequestType>(
    subject: string,
    message: MessageOf<T>,
    options: RequestOptions = {},
  ): Promise<ResultOf<T>> {
    const deadlineMs = options.deadlineMs ?? requestDeadlineMsDefault;
    if (!(deadlineMs > 0 && deadlineMs <= requestDeadlineMsMax)) {
      throw new BallastError(
        ErrorCode.InvalidArgument,
        `a request deadline must be between 1 and ${requestDeadlineMsMax} ms, got ${deadlineMs}`,
      );
    }
    const type = (message as Message).type as T;
    return withSpan(
      this.tracer,
      `send ${type}`,
      { kind: SpanKind.CLIENT, attributes: { "messaging.destination.name": subject } },
      async () => {
        let headers: ReturnType<typeof natsHeaders> | undefined;
        if (this.tracer !== undefined) {
          headers = natsHeaders();
          injectTraceContext(headers);
        }
        // In parts: large data goes to the socket from where it is (publishParts).
        const payload = options.encoded ?? encodeMessageParts(message as Message);
        let reply: Uint8Array | undefined;
        /** The link the reply came over, if it did. */
        let replyLink: { scope: LinkScope; link: LinkConnection } | undefined;
        try {
          const linked = options.viaNats ? undefined : this.#linkFor(subject);
          if (linked?.link !== undefined) {
            replyLink = { scope: linked.scope, link: linked.link };
            reply = await this.#requestByLink(
              linked.scope,
              linked.link,
              subject,
              payload,
              deadlineMs,
              headers,
            );
          }
          if (reply === undefined) {
            replyLink = undefined;
            if (linked !== undefined) this.#countSent(linked.scope, "request", "nats");
            this.#replies ??= new ReplyRouter(this.connection);
            reply = await this.#replies.request(subject, payload, deadlineMs, headers);
          }
        } catch (error) {
          const translated = translateNatsError(error, subject, deadlineMs);
          this.failures?.add(1, { type, code: translated.code });
          throw translated;
        }
        try {
          return decodeReply(type, reply);
        } catch (error) {
          const code = error instanceof BallastError ? error.code : ErrorCode.Internal;
          if (replyLink !== undefined && notServingCodes.has(code)) {
            this.#links?.forget(subject, replyLink.link);
            this.#countFallback(replyLink.scope, "not-serving");
          }
          this.failures?.add(1, { type, code });
          throw error;
        }
      },
    );
  }

  /**
   * One request over a link: the reply's bytes, or undefined when the server did not
   * handle it (`no-responder`: the caller sends it over NATS). Any other failure forgets
   * the route and is thrown: the request may have been handled, so it is never resent.
   */
  async #requestByLink(
    scope: LinkScope,
    link: LinkConnection,
    subject: string,
    payload: readonly Uint8Array[],
    deadlineMs: number,
    headers: MsgHdrs | undefined,
  ): Promise<Uint8Array | undefined> {
    const traceparent = headers?.get("traceparent") || undefined;
    try {
      const reply = await link.request(subject, payload, traceparent, deadlineMs);
      this.#countSent(scope, "request", "link");
      return reply;
    } catch (error) {
      if (error instanceof LinkNotHandled) {
        this.#links?.forget(subject, link);
        this.#countFallback(scope, "no-responder");
        return undefined;
      }
      const code = error instanceof BallastError ? error.code : undefined;
      // Anything else (a message too large for any transport) says nothing of the link.
      if (code !== ErrorCode.Timeout && code !== ErrorCode.Unavailable) throw error;
      this.#links?.forget(subject, link);
      this.#countFallback(scope, code === ErrorCode.Timeout ? "timeout" : "closed");
      throw error;
    }
  }

  /** Publishes a message that expects no reply, with trace context unless `untraced`. */
  publish(
    subject: string,
    message: Message,
    options: { untraced?: boolean; traceFrom?: Context } = {},
  ): void {
    // In parts: large data (notes to a secondary) goes to the socket from where it is.
    const payload = encodeMessageParts(message);
    let headers: MsgHdrs | undefined;
    if (!options.untraced && this.tracer !== undefined) {
      headers = natsHeaders();
      injectTraceContext(headers, options.traceFrom);
    }
    const linked = this.#linkFor(subject);
    if (linked !== undefined) {
      const traceparent = headers?.get("traceparent") || undefined;
      if (linked.link?.publish(subject, payload, traceparent)) {
        this.#countSent(linked.scope, "publish", "link");
        return;
      }
      if (linked.link !== undefined) this.#countFallback(linked.scope, "not-sent");
      this.#countSent(linked.scope, "publish", "nats");
    }
    publishParts(this.connection, subject, payload, undefined, headers);
  }
}

function translateNatsError(error: unknown, subject: string, deadlineMs: number): BallastError {
  if (error instanceof BallastError) return error;
  const cause = error instanceof RequestError && error.cause ? error.cause : error;
  if (
    cause instanceof NoRespondersError ||
    (error instanceof RequestError && error.isNoResponders())
  ) {
    return noResponderError(subject, error);
  }
  if (cause instanceof TimeoutError) return timeoutError(subject, deadlineMs, error);
  return new BallastError(
    ErrorCode.Unavailable,
    `request on ${subject} failed: ${(error as Error)?.message ?? String(error)}`,
    { cause: error, details: { subject } },
  );
}

function noResponderError(subject: string, cause?: unknown): BallastError {
  return new BallastError(ErrorCode.Unavailable, `no service is listening on ${subject}`, {
    ...(cause === undefined ? {} : { cause }),
    details: { subject },
  });
}

function timeoutError(subject: string, deadlineMs: number, cause?: unknown): BallastError {
  return new BallastError(
    ErrorCode.Timeout,
    `no reply on ${subject} within the deadline of ${deadlineMs} ms`,
    { ...(cause === undefined ? {} : { cause }), details: { subject, deadlineMs } },
  );
}
