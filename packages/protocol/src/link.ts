// Links: a second transport for the same messages, a TCP byte stream straight from a
// sender to the process that serves a subject, so that the write path's hot messages
// (volume I/O to a primary, replication between head nodes) need not cross nats-server
// (docs/performance.md, "Links"). NATS stays the way every message can always go, the
// channel that hands out links (`link.offer.v1`) and the fallback. What travels on a
// link is exactly what NATS would carry: the message bytes `encodeMessageParts` makes,
// and the reply envelope bytes a NATS reply carries; only the framing is ours.
//
// A link is a stream of frames, each:
//
//   u32 big-endian  length of what follows (kind byte and body)
//   u8              kind
//   body            per kind:
//     challenge     nonce (linkNonceBytes random bytes)               (server → client, first)
//     hello         u8 version, u8 scope, u8 proof length, proof      (client → server)
//     hello-ok      empty                                             (server → client)
//     refused       UTF-8 reason                                      (server → client, then closes)
//     request       u32 id, u8 subject length, subject, u8 traceparent length (0 = none),
//                   traceparent, payload (the rest)                   (client → server)
//     publish       as request without the id; nothing answers it     (client → server)
//     reply         u32 id, payload (the reply envelope)              (server → client)
//     no-responder  u32 id: nothing here serves that subject; the request was NOT
//                   handled and may be sent again elsewhere           (server → client)
//     ping          empty: are you there?                             (client → server)
//     pong          empty: the answer to a ping, or unasked: a server that holds back
//                   reading a busy connection says it is there        (server → client)
//     renew         u8 proof length, proof: a newer token for this link (client → server)
//     renewed       empty: the renewal is taken                       (server → client)
//
// Pings exist because much of what a link carries is publishes (replication notes and
// acknowledgements), which nothing answers: without them a link whose peer stopped
// reading or whose packets vanish (no FIN, no RST) would swallow messages for as long as
// TCP keeps retrying, while NATS would have carried them. Each side closes a link it has
// not heard from for a while (runtime constants: linkPingIntervalMs, linkSilenceMsMax).
//
// A server sends `challenge` first: a nonce of its own, fresh for each connection. The
// client answers with `hello`, whose proof is HMAC-SHA256(token, nonce): the token (from
// an offer over NATS) never crosses the link, and a proof seen on the wire opens no
// other connection. Tokens age: an offer says how long its token has left
// (`tokenValidMs`), a server refuses an aged one and ends a link opened with one (runtime
// link-server.ts), and a sender renews before then: over the link itself with `renew`
// when the offer says the server takes it (`renewsInPlace`), whose proof is the new
// token's HMAC of this connection's nonce, as a hello's; a server answers `renewed`
// and from then on ages the link by the new token (no second connection: a server
// at its connection cap still takes it). A client sends nothing else until
// `hello-ok`, and one `renew` at a time. Links are not
// encrypted (no TLS): what they carry can be read on the path, as on a nats:// URL.
// Subjects and the traceparent are ASCII without spaces or wildcards; ids are the
// client's, echoed back.
//
// Failure model: bytes arrive in arbitrary chunks (a frame split over reads, several
// frames in one); the decoder reassembles them. A frame that breaks any rule above (a
// length over `linkFrameBytesMax` or too short for its kind, an unknown kind, a bad
// subject) is an InvalidMessage BallastError and nothing else; the connection that sent
// it is closed, since a byte stream has no way to resynchronise.

import { BallastError, ErrorCode } from "./errors.ts";
import { natsPayloadBytesMax } from "./limits.ts";
import { subjectRoot } from "./subjects.ts";

/**
 * The link framing's version; `hello` carries it and a server refuses any other.
 * 2: the server's `challenge` and the hello's proof (1 carried the token itself).
 */
export const linkProtocolVersion = 2;

/** Room for a frame's own fields (kind, id, subject, traceparent) beyond its payload. */
export const linkFrameHeaderBytesMax = 1024;

/** The largest frame, length prefix excluded: what NATS would carry, plus the frame's fields. */
export const linkFrameBytesMax = natsPayloadBytesMax + linkFrameHeaderBytesMax;

/** Subjects and traceparents are length-prefixed by one byte. */
export const linkSubjectLengthMax = 255;
export const linkTraceparentLengthMax = 255;

/** The longest token an offer may hand out (ours are 32 bytes: HMAC-SHA256). */
export const linkTokenBytesMax = 64;

/**
 * The longest time an offer may say its token has left (`tokenValidMs`): tokens age
 * (runtime's linkTokenLifetimeMs, 10 min, gives at most 20), and a sender refreshes
 * half to three quarters through; a day bounds what a confused server can make a sender believe.
 */
export const linkTokenValidMsMax = 24 * 60 * 60_000;

/** The longest proof a hello may carry (ours are 32 bytes: HMAC-SHA256). */
export const linkProofBytesMax = 64;

/** A challenge's nonce: random bytes, new for each connection. */
export const linkNonceBytes = 32;

/** The longest refusal reason sent. */
export const linkReasonBytesMax = 512;

/**
 * What a link may carry: each scope is one family of subjects. A scope's token is handed
 * to whoever may publish on a subject of its family over NATS (the offer is asked on the
 * subject itself), so a scope must never be wider than one family of permissions.ts.
 * `node` is the node inboxes (a sled's chunk writes and reads from head nodes): only
 * trusted services (coordinator, head nodes, operator) may publish on that family, so a
 * node-scope link lets its holder send nothing NATS would not. Its index (2) is on the
 * wire in `hello`; new scopes go at the end.
 */
export const linkScopes = ["volume", "replica", "node"] as const;
export type LinkScope = (typeof linkScopes)[number];

/** The subject prefix of each scope: a link of that scope carries only these subjects. */
export const linkScopePrefixes: { readonly [S in LinkScope]: string } = {
  volume: `${subjectRoot}.volume.`,
  replica: `${subjectRoot}.replica.`,
  node: `${subjectRoot}.node.`,
};

/** The scope whose family `subject` belongs to, if any. */
export function linkScopeOf(subject: string): LinkScope | undefined {
  for (const scope of linkScopes) {
    if (subject.startsWith(linkScopePrefixes[scope])) return scope;
  }
  return undefined;
}

export type LinkFrame =
  | { kind: "challenge"; nonce: Uint8Array }
  | { kind: "hello"; version: number; scope: LinkScope; proof: Uint8Array }
  | { kind: "hello-ok" }
  | { kind: "refused"; reason: string }
  | {
      kind: "request";
      id: number;
      subject: string;
      traceparent: string | undefined;
      payload: Uint8Array;
    }
  | { kind: "publish"; subject: string; traceparent: string | undefined; payload: Uint8Array }
  | { kind: "reply"; id: number; payload: Uint8Array }
  | { kind: "no-responder"; id: number }
  | { kind: "ping" }
  | { kind: "pong" }
  | { kind: "renew"; proof: Uint8Array }
  | { kind: "renewed" };

export type LinkFrameKind = LinkFrame["kind"];

/** A frame without its payload, whose parts are given apart (`encodeLinkFrame`). */
export type LinkFrameHead = LinkFrame extends infer F
  ? F extends LinkFrame
    ? Omit<F, "payload">
    : never
  : never;

const kindCodes: { readonly [K in LinkFrameKind]: number } = {
  hello: 1,
  "hello-ok": 2,
  refused: 3,
  request: 4,
  publish: 5,
  reply: 6,
  "no-responder": 7,
  ping: 8,
  pong: 9,
  challenge: 10,
  renew: 11,
  renewed: 12,
};
const kindsByCode: readonly (LinkFrameKind | undefined)[] = (() => {
  const byCode: (LinkFrameKind | undefined)[] = [];
  for (const [kind, code] of Object.entries(kindCodes)) byCode[code] = kind as LinkFrameKind;
  return byCode;
})();

/** Subject and traceparent characters: printable ASCII without space, `*` and `>`. */
function isTokenText(text: string): boolean {
  for (let index = 0; index < text.length; index += 1) {
    const code = text.charCodeAt(index);
    if (code <= 0x20 || code >= 0x7f || code === 0x2a || code === 0x3e) return false;
  }
  return true;
}

function invalid(message: string): BallastError {
  return new BallastError(ErrorCode.InvalidMessage, `bad link frame: ${message}`);
}

function checkText(what: string, text: string, lengthMax: number, empty: boolean): void {
  if (text.length > lengthMax || (!empty && text.length === 0) || !isTokenText(text)) {
    throw invalid(
      `${what} ${JSON.stringify(text.slice(0, 80))} is not 1 to ${lengthMax} ASCII characters without spaces or wildcards`,
    );
  }
}

function checkId(id: number): void {
  if (!Number.isInteger(id) || id < 0 || id > 0xffff_ffff) throw invalid(`id ${id} is not a u32`);
}

/**
 * Encodes a frame as parts to write in order: the frame's fields in one buffer, then the
 * payload's parts as they are (a large write is not copied). Throws InvalidMessage for a
 * frame that breaks the rules (the same the decoder enforces), PayloadTooLarge for one
 * over `linkFrameBytesMax`.
 */
export function encodeLinkFrame(
  frame: LinkFrame | LinkFrameHead,
  payload?: readonly Uint8Array[],
): Uint8Array[] {
  const parts: readonly Uint8Array[] =
    payload ?? ("payload" in frame && frame.payload instanceof Uint8Array ? [frame.payload] : []);
  let payloadBytes = 0;
  for (const part of parts) payloadBytes += part.byteLength;
  let head: Buffer;
  switch (frame.kind) {
    case "challenge":
      if (frame.nonce.byteLength !== linkNonceBytes) throw invalid("a nonce of the wrong size");
      head = Buffer.allocUnsafe(5 + linkNonceBytes);
      head.set(frame.nonce, 5);
      break;
    case "hello": {
      if (frame.proof.byteLength > linkProofBytesMax) throw invalid("proof too long");
      head = Buffer.allocUnsafe(4 + 1 + 3 + frame.proof.byteLength);
      head[5] = frame.version & 0xff;
      head[6] = linkScopes.indexOf(frame.scope);
      head[7] = frame.proof.byteLength;
      head.set(frame.proof, 8);
      break;
    }
    case "renew":
      if (frame.proof.byteLength > linkProofBytesMax) throw invalid("proof too long");
      head = Buffer.allocUnsafe(4 + 1 + 1 + frame.proof.byteLength);
      head[5] = frame.proof.byteLength;
      head.set(frame.proof, 6);
      break;
    case "hello-ok":
    case "ping":
    case "pong":
    case "renewed":
      head = Buffer.allocUnsafe(5);
      break;
    case "refused": {
      const reason = Buffer.from(frame.reason, "utf8").subarray(0, linkReasonBytesMax);
      head = Buffer.allocUnsafe(5 + reason.byteLength);
      head.set(reason, 5);
      break;
    }
    case "request":
    case "publish": {
      checkText("subject", frame.subject, linkSubjectLengthMax, false);
      const traceparent = frame.traceparent ?? "";
      checkText("traceparent", traceparent, linkTraceparentLengthMax, true);
      const idBytes = frame.kind === "request" ? 4 : 0;
      head = Buffer.allocUnsafe(5 + idBytes + 2 + frame.subject.length + traceparent.length);
      let at = 5;
      if (frame.kind === "request") {
        checkId(frame.id);
        head.writeUInt32BE(frame.id, at);
        at += 4;
      }
      head[at++] = frame.subject.length;
      at += head.write(frame.subject, at, "latin1");
      head[at++] = traceparent.length;
      head.write(traceparent, at, "latin1");
      break;
    }
    case "reply":
    case "no-responder":
      checkId(frame.id);
      head = Buffer.allocUnsafe(9);
      head.writeUInt32BE(frame.id, 5);
      break;
    default: {
      const never: never = frame;
      throw invalid(`unknown kind ${String((never as LinkFrameHead).kind)}`);
    }
  }
  const length = head.byteLength - 4 + payloadBytes;
  if (length > linkFrameBytesMax) {
    throw new BallastError(
      ErrorCode.PayloadTooLarge,
      `a link frame of ${length} bytes is over the limit of ${linkFrameBytesMax}`,
    );
  }
  head.writeUInt32BE(length, 0);
  head[4] = kindCodes[frame.kind];
  if (frame.kind === "reply" || frame.kind === "request" || frame.kind === "publish") {
    return [head, ...parts];
  }
  return [head];
}

/**
 * The buffers link decoders allocated to assemble a frame that spanned chunks (by
 * ArrayBuffer, held weakly). Each holds one frame and nothing else, the decoder wrote it
 * once before handing the frame out and keeps no reference: no one else writes into it
 * or reuses it, so whoever receives a view of it may keep that view instead of a copy
 * (`isAssembledByLink`).
 */
const assembledBuffers = new WeakSet<ArrayBufferLike>();

/**
 * Whether `bytes` lies in a buffer a link decoder assembled a frame into (see
 * `assembledBuffers`): memory of its own that nobody writes into or reuses. False for
 * anything else, a view of a socket's read, a NATS message or a pooled buffer included:
 * those are not proven private and must be copied to be kept.
 */
export function isAssembledByLink(bytes: Uint8Array): boolean {
  return assembledBuffers.has(bytes.buffer);
}

/**
 * A frame of at least this many bytes (its length prefix included) whose length is known
 * and whose bytes have not all come is read straight into a buffer of its own by a
 * reader that asks `readTarget` (see there); below it a frame is gathered from the
 * reader's chunks as usual. 64 KiB: a socket read's default size, so smaller frames
 * mostly come whole in one read anyway.
 */
export const linkDirectReadBytesMin = 64 * 1024;

/**
 * Reassembles frames from a byte stream given in arbitrary chunks. `push` returns the
 * frames completed by a chunk, in order, and throws InvalidMessage at the first bad one;
 * after a throw the decoder is spent (every later push throws), as the stream is.
 * A payload that lies within one chunk is a view of it, not a copy; one that spans
 * chunks is a view of a buffer assembled for its frame alone (`isAssembledByLink`).
 *
 * A reader that can choose where its reads land (a socket's `onread`) may ask
 * `readTarget` for the rest of a large frame's own buffer, read into it, and report
 * the bytes with `pushed`: the frame's bytes are then copied at most once (what came
 * before the frame's length was known), not gathered from the socket's chunks.
 */
export class LinkFrameDecoder {
  #chunks: Buffer[] = [];
  #buffered = 0;
  #failed: BallastError | undefined;
  /** The buffer of the large frame under way, once `readTarget` made it; else undefined. */
  #assembly: Buffer | undefined;
  /** Bytes of `#assembly` filled. */
  #filled = 0;

  /** Bytes held toward the next frame. */
  get buffered(): number {
    return this.#buffered;
  }

  push(chunk: Uint8Array): LinkFrame[] {
    if (this.#failed !== undefined) throw this.#failed;
    try {
      return this.#push(chunk);
    } catch (error) {
      throw this.#fail(error);
    }
  }

  /**
   * Where the next bytes of the stream may be read to: the unfilled rest of the buffer
   * of the frame under way, when its length is known, it is of `linkDirectReadBytesMin`
   * bytes or more and not all of it has come (the buffer is made here, of the frame's
   * exact size, with the bytes held so far copied in); else undefined, and the next
   * bytes go to `push`. The target ends where the frame does, so no read into it can
   * take bytes of the next frame. After a read into it, call `pushed` before anything
   * else.
   */
  readTarget(): Uint8Array | undefined {
    if (this.#failed !== undefined) return undefined;
    if (this.#assembly === undefined) {
      if (this.#buffered < 4) return undefined;
      const length = this.#peekLength();
      // A length out of range is refused by the next push, which sees it too.
      if (length < 1 || length > linkFrameBytesMax) return undefined;
      const bytes = 4 + length;
      if (bytes < linkDirectReadBytesMin || this.#buffered >= bytes) return undefined;
      // Every byte held belongs to this frame (fewer than it needs are held).
      const assembly = Buffer.allocUnsafeSlow(bytes);
      assembledBuffers.add(assembly.buffer);
      let at = 0;
      for (const chunk of this.#chunks) {
        assembly.set(chunk, at);
        at += chunk.byteLength;
      }
      this.#chunks = [];
      this.#assembly = assembly;
      this.#filled = at;
    }
    return this.#assembly.subarray(this.#filled);
  }

  /**
   * Takes `bytes` bytes read into the start of the last `readTarget`; returns the frame
   * they complete, if they do (as `push` returns frames).
   */
  pushed(bytes: number): LinkFrame[] {
    if (this.#failed !== undefined) throw this.#failed;
    try {
      const assembly = this.#assembly;
      if (
        assembly === undefined ||
        !Number.isInteger(bytes) ||
        bytes < 0 ||
        this.#filled + bytes > assembly.byteLength
      ) {
        throw invalid(`${bytes} bytes pushed beyond the frame's read target`);
      }
      this.#filled += bytes;
      this.#buffered += bytes;
      return this.#completeAssembly();
    } catch (error) {
      throw this.#fail(error);
    }
  }

  /** Spends the decoder on `error`; returns the error every later push throws. */
  #fail(error: unknown): BallastError {
    this.#failed =
      error instanceof BallastError && error.code === ErrorCode.InvalidMessage
        ? error
        : invalid(String((error as Error)?.message ?? error));
    this.#chunks = [];
    this.#buffered = 0;
    this.#assembly = undefined;
    return this.#failed;
  }

  /** The assembled frame, once its buffer is full (and the decoder past it); else none. */
  #completeAssembly(): LinkFrame[] {
    const assembly = this.#assembly!;
    if (this.#filled < assembly.byteLength) return [];
    this.#assembly = undefined;
    this.#buffered -= assembly.byteLength;
    return [decodeBody(assembly.subarray(4))];
  }

  #push(chunk: Uint8Array): LinkFrame[] {
    let frames: LinkFrame[] = [];
    if (chunk.byteLength === 0) return frames;
    const assembly = this.#assembly;
    if (assembly !== undefined) {
      // A chunk given to push while a read target is out: its first bytes are the frame's.
      const taken = Math.min(assembly.byteLength - this.#filled, chunk.byteLength);
      assembly.set(chunk.subarray(0, taken), this.#filled);
      this.#filled += taken;
      this.#buffered += taken;
      frames = this.#completeAssembly();
      if (taken === chunk.byteLength) return frames;
      chunk = chunk.subarray(taken);
    }
    this.#chunks.push(
      Buffer.isBuffer(chunk)
        ? chunk
        : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength),
    );
    this.#buffered += chunk.byteLength;
    for (;;) {
      if (this.#buffered < 4) return frames;
      const length = this.#peekLength();
      if (length < 1 || length > linkFrameBytesMax) {
        throw invalid(`length ${length} is not between 1 and ${linkFrameBytesMax}`);
      }
      if (this.#buffered < 4 + length) return frames;
      frames.push(decodeBody(this.#take(4 + length).subarray(4)));
    }
  }

  #peekLength(): number {
    const first = this.#chunks[0]!;
    if (first.byteLength >= 4) return first.readUInt32BE(0);
    const head = Buffer.allocUnsafe(4);
    let at = 0;
    for (const chunk of this.#chunks) {
      const n = Math.min(4 - at, chunk.byteLength);
      chunk.copy(head, at, 0, n);
      at += n;
      if (at === 4) break;
    }
    return head.readUInt32BE(0);
  }

  /** Removes and returns the next `bytes` bytes: a view when they lie in one chunk. */
  #take(bytes: number): Buffer {
    this.#buffered -= bytes;
    const first = this.#chunks[0]!;
    if (first.byteLength >= bytes) {
      const taken = first.subarray(0, bytes);
      if (first.byteLength === bytes) this.#chunks.shift();
      else this.#chunks[0] = first.subarray(bytes);
      return taken;
    }
    const taken = Buffer.allocUnsafe(bytes);
    // A frame of 4 KiB or more gets an ArrayBuffer of its own (below that, allocUnsafe
    // hands out a slice of Node's shared pool, which is never marked): checked, not assumed.
    if (taken.byteOffset === 0 && taken.buffer.byteLength === bytes) {
      assembledBuffers.add(taken.buffer);
    }
    let at = 0;
    while (at < bytes) {
      const chunk = this.#chunks[0]!;
      const n = Math.min(bytes - at, chunk.byteLength);
      chunk.copy(taken, at, 0, n);
      at += n;
      if (n === chunk.byteLength) this.#chunks.shift();
      else this.#chunks[0] = chunk.subarray(n);
    }
    return taken;
  }
}

/**
 * Throws InvalidMessage unless the frame's body has at least `bytes` bytes. A function of
 * its own, not a closure made per frame: under tsx (keepNames) every closure made costs a
 * name definition, which showed in profiles of the hot path.
 */
function needBytes(body: Buffer, kind: string | undefined, bytes: number): void {
  if (body.byteLength < bytes) {
    throw invalid(`a ${kind} frame of ${body.byteLength} bytes is too short`);
  }
}

/** One frame's kind and body (the length prefix removed). */
function decodeBody(body: Buffer): LinkFrame {
  const kind = kindsByCode[body[0]!];
  switch (kind) {
    case "challenge":
      if (body.byteLength !== 1 + linkNonceBytes) throw invalid("challenge of the wrong length");
      return { kind, nonce: body.subarray(1) };
    case "hello": {
      needBytes(body, kind, 4);
      const scope = linkScopes[body[2]!];
      if (scope === undefined) throw invalid(`unknown scope ${body[2]}`);
      const proofBytes = body[3]!;
      if (proofBytes > linkProofBytesMax) throw invalid(`proof of ${proofBytes} bytes`);
      if (body.byteLength !== 4 + proofBytes) throw invalid("hello of the wrong length");
      return { kind, version: body[1]!, scope, proof: body.subarray(4) };
    }
    case "renew": {
      needBytes(body, kind, 2);
      const proofBytes = body[1]!;
      if (proofBytes > linkProofBytesMax) throw invalid(`proof of ${proofBytes} bytes`);
      if (body.byteLength !== 2 + proofBytes) throw invalid("renew of the wrong length");
      return { kind, proof: body.subarray(2) };
    }
    case "hello-ok":
    case "ping":
    case "pong":
    case "renewed":
      if (body.byteLength !== 1) throw invalid(`${kind} with a body`);
      return { kind };
    case "refused":
      if (body.byteLength - 1 > linkReasonBytesMax) throw invalid("refusal reason too long");
      return { kind, reason: body.toString("utf8", 1) };
    case "request":
    case "publish": {
      let at = 1;
      let id = 0;
      if (kind === "request") {
        needBytes(body, kind, 5);
        id = body.readUInt32BE(1);
        at = 5;
      }
      needBytes(body, kind, at + 1);
      const subjectLength = body[at++]!;
      needBytes(body, kind, at + subjectLength + 1);
      const subject = body.toString("latin1", at, at + subjectLength);
      at += subjectLength;
      checkText("subject", subject, linkSubjectLengthMax, false);
      const traceLength = body[at++]!;
      needBytes(body, kind, at + traceLength);
      const traceparent = body.toString("latin1", at, at + traceLength);
      at += traceLength;
      checkText("traceparent", traceparent, linkTraceparentLengthMax, true);
      const payload = body.subarray(at);
      const carried = traceparent === "" ? undefined : traceparent;
      return kind === "request"
        ? { kind, id, subject, traceparent: carried, payload }
        : { kind, subject, traceparent: carried, payload };
    }
    case "reply":
      needBytes(body, kind, 5);
      return { kind, id: body.readUInt32BE(1), payload: body.subarray(5) };
    case "no-responder":
      if (body.byteLength !== 5) throw invalid("no-responder of the wrong length");
      return { kind, id: body.readUInt32BE(1) };
    case undefined:
      throw invalid(`unknown kind ${body[0]}`);
    default: {
      const never: never = kind;
      throw invalid(`unknown kind ${String(never)}`);
    }
  }
}
