import fc from "fast-check";
import { describe, expect, test } from "vitest";
import {
  BallastError,
  decodeReply,
  ErrorCode,
  encodeLinkFrame,
  encodeMessageParts,
  encodeResult,
  isAssembledByLink,
  type LinkFrame,
  LinkFrameDecoder,
  LinkOfferResult,
  linkDirectReadBytesMin,
  linkFrameBytesMax,
  linkScopeOf,
  linkScopes,
  subjects,
} from "../src/index.ts";
import { plain } from "./arbitraries.ts";

const subject = fc.stringMatching(/^[a-z0-9.-]{1,60}$/);
const traceparent = fc.option(fc.stringMatching(/^[0-9a-f-]{1,55}$/), { nil: undefined });
const id = fc.integer({ min: 0, max: 0xffff_ffff });
const payload = fc.uint8Array({ maxLength: 300 });

const anyFrame: fc.Arbitrary<LinkFrame> = fc.oneof(
  fc.record({
    kind: fc.constant("hello" as const),
    version: fc.integer({ min: 0, max: 255 }),
    scope: fc.constantFrom(...linkScopes),
    proof: fc.uint8Array({ maxLength: 64 }),
  }),
  fc.record({
    kind: fc.constant("challenge" as const),
    nonce: fc.uint8Array({ minLength: 32, maxLength: 32 }),
  }),
  fc.constant({ kind: "hello-ok" as const }),
  fc.constant({ kind: "ping" as const }),
  fc.constant({ kind: "pong" as const }),
  fc.constant({ kind: "renewed" as const }),
  fc.record({ kind: fc.constant("renew" as const), proof: fc.uint8Array({ maxLength: 64 }) }),
  fc.record({ kind: fc.constant("refused" as const), reason: fc.string({ maxLength: 100 }) }),
  fc.record({ kind: fc.constant("request" as const), id, subject, traceparent, payload }),
  fc.record({ kind: fc.constant("publish" as const), subject, traceparent, payload }),
  fc.record({ kind: fc.constant("reply" as const), id, payload }),
  fc.record({ kind: fc.constant("no-responder" as const), id }),
);

function concat(parts: readonly Uint8Array[]): Uint8Array {
  return Buffer.concat(parts);
}

function stream(frames: readonly LinkFrame[]): Uint8Array {
  return concat(frames.flatMap((frame) => encodeLinkFrame(frame)));
}

/** Splits `bytes` at the given cut points (any order, any values). */
function split(bytes: Uint8Array, cuts: readonly number[]): Uint8Array[] {
  const points = [...new Set(cuts.map((cut) => cut % (bytes.byteLength + 1)))].sort(
    (a, b) => a - b,
  );
  const chunks: Uint8Array[] = [];
  let from = 0;
  for (const point of [...points, bytes.byteLength]) {
    chunks.push(bytes.subarray(from, point));
    from = point;
  }
  return chunks;
}

function codeOf(run: () => unknown): string | undefined {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(BallastError);
    return (error as BallastError).code;
  }
  return undefined;
}

describe("link frames", () => {
  test("any sequence of frames, split anywhere, decodes to the same frames", () => {
    fc.assert(
      fc.property(
        fc.array(anyFrame, { maxLength: 8 }),
        fc.array(fc.nat(), { maxLength: 12 }),
        (frames, cuts) => {
          const decoder = new LinkFrameDecoder();
          const decoded = split(stream(frames), cuts).flatMap((chunk) => decoder.push(chunk));
          const expected = frames.map((frame) =>
            frame.kind === "refused" ? { ...frame, reason: roundTripReason(frame.reason) } : frame,
          );
          expect(plain(decoded)).toEqual(plain(expected));
          expect(decoder.buffered).toBe(0);
        },
      ),
      { numRuns: 500 },
    );
  });

  test("a request carries the bytes encodeMessageParts makes and a reply the envelope", () => {
    const message = {
      type: "volume.write.v1" as const,
      volume: "v",
      partition: 0,
      epoch: 1,
      writes: [{ offset: 0, data: new Uint8Array(100 * 1024).fill(3) }],
    };
    const parts = encodeMessageParts(message);
    const to = subjects.volume.build("v", 0);
    const bytes = concat(
      encodeLinkFrame({ kind: "request", id: 7, subject: to, traceparent: undefined }, parts),
    );
    const [frame] = new LinkFrameDecoder().push(bytes);
    expect(frame?.kind === "request" && Buffer.from(frame.payload).equals(concat(parts))).toBe(
      true,
    );
    const reply = encodeResult({ flushedOpNum: 5 });
    const [back] = new LinkFrameDecoder().push(
      concat(encodeLinkFrame({ kind: "reply", id: 7, payload: reply })),
    );
    expect(back?.kind === "reply" && back.id).toBe(7);
    expect(back?.kind === "reply" && decodeReply("volume.flush.v1", back.payload)).toEqual({
      flushedOpNum: 5,
    });
  });

  test("a reader that reads large frames into their read targets decodes the same frames", () => {
    // Replies and requests around the direct-read threshold, between small frames; the
    // reader reads where the decoder says (as a socket's onread would), in reads of any
    // size, and otherwise pushes chunks of any size.
    const sized = (bytes: number, seed: number) => {
      const payload = new Uint8Array(bytes).fill(seed);
      for (let index = 0; index < bytes; index += 997) payload[index] = index & 0xff;
      return payload;
    };
    const largeFrame: fc.Arbitrary<LinkFrame> = fc
      .tuple(
        fc.constantFrom(
          linkDirectReadBytesMin - 20,
          linkDirectReadBytesMin,
          linkDirectReadBytesMin + 1,
          150 * 1024,
        ),
        fc.nat(255),
        id,
        fc.boolean(),
      )
      .map(
        ([bytes, seed, frameId, isReply]): LinkFrame =>
          isReply
            ? { kind: "reply", id: frameId, payload: sized(bytes, seed) }
            : {
                kind: "request",
                id: frameId,
                subject: "volume.v.0",
                traceparent: undefined,
                payload: sized(bytes, seed),
              },
      );
    fc.assert(
      fc.property(
        fc.array(fc.oneof(anyFrame, largeFrame), { minLength: 1, maxLength: 6 }),
        fc.array(fc.integer({ min: 1, max: 200 * 1024 }), { minLength: 1, maxLength: 20 }),
        (frames, reads) => {
          const bytes = stream(frames);
          const decoder = new LinkFrameDecoder();
          const decoded: LinkFrame[] = [];
          const completedByReads: LinkFrame[] = [];
          for (let at = 0, turn = 0; at < bytes.byteLength; turn += 1) {
            const wanted = Math.min(reads[turn % reads.length]!, bytes.byteLength - at);
            const target = decoder.readTarget();
            if (target === undefined) {
              decoded.push(...decoder.push(bytes.slice(at, at + wanted)));
              at += wanted;
            } else {
              const n = Math.min(wanted, target.byteLength);
              target.set(bytes.subarray(at, at + n));
              const completed = decoder.pushed(n);
              completedByReads.push(...completed);
              decoded.push(...completed);
              at += n;
            }
          }
          const expected = frames.map((frame) =>
            frame.kind === "refused" ? { ...frame, reason: roundTripReason(frame.reason) } : frame,
          );
          expect(plain(decoded)).toEqual(plain(expected));
          expect(decoder.buffered).toBe(0);
          expect(decoder.readTarget()).toBeUndefined();
          // A frame read through a target lies in a buffer of its own.
          for (const frame of completedByReads) {
            expect(frame.kind === "reply" || frame.kind === "request").toBe(true);
            if (frame.kind === "reply" || frame.kind === "request") {
              expect(frame.payload.byteLength).toBeGreaterThanOrEqual(linkDirectReadBytesMin - 20);
              expect(isAssembledByLink(frame.payload)).toBe(true);
            }
          }
        },
      ),
      { numRuns: 60 },
    );
  });

  test("a read target is offered only for a large frame not yet all held", () => {
    const large = concat(
      encodeLinkFrame({ kind: "reply", id: 1, payload: new Uint8Array(linkDirectReadBytesMin) }),
    );
    const small = concat(encodeLinkFrame({ kind: "reply", id: 2, payload: new Uint8Array(1000) }));
    const decoder = new LinkFrameDecoder();
    expect(decoder.readTarget()).toBeUndefined(); // nothing held: the length is unknown
    expect(decoder.push(small.subarray(0, 10))).toEqual([]);
    expect(decoder.readTarget()).toBeUndefined(); // a small frame
    expect(decoder.push(small.subarray(10))).toHaveLength(1);
    expect(decoder.push(large.subarray(0, 3))).toEqual([]);
    expect(decoder.readTarget()).toBeUndefined(); // its length not yet known
    expect(decoder.push(large.subarray(3, 100))).toEqual([]);
    const target = decoder.readTarget();
    // The rest of the frame exactly: a read into it cannot take the next frame's bytes.
    expect(target?.byteLength).toBe(large.byteLength - 100);
    expect(decoder.buffered).toBe(100);
    // Bytes pushed while the target is out go to the frame too.
    expect(decoder.push(large.subarray(100, 200))).toEqual([]);
    expect(decoder.readTarget()?.byteLength).toBe(large.byteLength - 200);
    // More bytes than the target holds are refused, and the decoder is spent.
    expect(codeOf(() => decoder.pushed(large.byteLength))).toBe(ErrorCode.InvalidMessage);
    expect(decoder.readTarget()).toBeUndefined();
    expect(codeOf(() => decoder.push(small))).toBe(ErrorCode.InvalidMessage);
    // Bytes pushed with no target out are refused.
    expect(codeOf(() => new LinkFrameDecoder().pushed(1))).toBe(ErrorCode.InvalidMessage);
  });

  test("garbage never throws anything but InvalidMessage, and the decoder stays failed", () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 6 }), (chunks) => {
        const decoder = new LinkFrameDecoder();
        let failed = false;
        for (const chunk of chunks) {
          const code = codeOf(() => decoder.push(chunk));
          if (code !== undefined) {
            expect(code).toBe(ErrorCode.InvalidMessage);
            failed = true;
          } else if (failed && chunk.byteLength > 0) {
            throw new Error("a failed decoder took more bytes");
          }
        }
      }),
      { numRuns: 2000 },
    );
  });

  test("mutated valid streams decode or fail with InvalidMessage only", () => {
    fc.assert(
      fc.property(
        fc.array(anyFrame, { minLength: 1, maxLength: 4 }),
        fc.nat(),
        fc.integer({ min: 0, max: 255 }),
        (frames, at, value) => {
          const bytes = Buffer.from(stream(frames));
          bytes[at % bytes.byteLength] = value;
          const code = codeOf(() => new LinkFrameDecoder().push(bytes));
          if (code !== undefined) expect(code).toBe(ErrorCode.InvalidMessage);
        },
      ),
      { numRuns: 2000 },
    );
  });

  test("named bad inputs are refused", () => {
    const bad = (bytes: number[]) =>
      codeOf(() => new LinkFrameDecoder().push(Uint8Array.from(bytes)));
    expect(bad([0, 0, 0, 0])).toBe(ErrorCode.InvalidMessage); // length 0
    const over = linkFrameBytesMax + 1;
    expect(bad([over >>> 24, (over >>> 16) & 255, (over >>> 8) & 255, over & 255])).toBe(
      ErrorCode.InvalidMessage,
    );
    expect(bad([0, 0, 0, 1, 99])).toBe(ErrorCode.InvalidMessage); // unknown kind
    expect(bad([0, 0, 0, 2, 2, 0])).toBe(ErrorCode.InvalidMessage); // hello-ok with a body
    expect(bad([0, 0, 0, 2, 10, 0])).toBe(ErrorCode.InvalidMessage); // a one-byte nonce
    expect(bad([0, 0, 0, 2, 12, 0])).toBe(ErrorCode.InvalidMessage); // renewed with a body
    expect(bad([0, 0, 0, 1, 11])).toBe(ErrorCode.InvalidMessage); // renew without a proof length
    expect(bad([0, 0, 0, 3, 11, 2, 7])).toBe(ErrorCode.InvalidMessage); // proof cut short
    expect(bad([0, 0, 0, 3, 11, 65, 7])).toBe(ErrorCode.InvalidMessage); // proof too long
    expect(bad([0, 0, 0, 4, 4, 0, 0, 0])).toBe(ErrorCode.InvalidMessage); // short request
    // A publish whose subject holds a space or a wildcard.
    expect(bad([0, 0, 0, 5, 5, 2, 0x61, 0x20, 0])).toBe(ErrorCode.InvalidMessage);
    expect(bad([0, 0, 0, 5, 5, 2, 0x61, 0x3e, 0])).toBe(ErrorCode.InvalidMessage);
    expect(bad([0, 0, 0, 3, 5, 0, 0])).toBe(ErrorCode.InvalidMessage); // empty subject
    // A frame not yet complete is no error.
    expect(bad([0, 0, 1, 0, 4])).toBeUndefined();
  });

  test("encoding refuses what decoding would", () => {
    const frame = (to: string) => ({
      kind: "publish" as const,
      subject: to,
      traceparent: undefined,
      payload: new Uint8Array(),
    });
    expect(codeOf(() => encodeLinkFrame(frame("a b")))).toBe(ErrorCode.InvalidMessage);
    expect(codeOf(() => encodeLinkFrame(frame("x".repeat(256))))).toBe(ErrorCode.InvalidMessage);
    expect(
      codeOf(() =>
        encodeLinkFrame({ kind: "reply", id: 1, payload: new Uint8Array(linkFrameBytesMax) }),
      ),
    ).toBe(ErrorCode.PayloadTooLarge);
  });

  test("scopes name their subject families", () => {
    expect(linkScopeOf(subjects.volume.build("v", 3))).toBe("volume");
    expect(linkScopeOf(subjects.replica.build("v", 3, "n"))).toBe("replica");
    expect(linkScopeOf(subjects.partitionControl.build("v", 3))).toBeUndefined();
    expect(linkScopeOf(subjects.node.build("sled", "n"))).toBe("node");
    expect(linkScopeOf(subjects.heartbeat.build("sled", "n"))).toBeUndefined();
  });
});

/** A reason is cut to its byte limit and read back as UTF-8. */
function roundTripReason(reason: string): string {
  return Buffer.from(reason, "utf8").subarray(0, 512).toString("utf8");
}

describe("link offers", () => {
  test("an offer's address names a port a socket can connect to", () => {
    const offer = (address: string) =>
      LinkOfferResult.safeParse({ nodeId: "n1", scope: "volume", address }).success;
    expect(offer("head-1:7400")).toBe(true);
    expect(offer("127.0.0.1:65535")).toBe(true);
    expect(offer("127.0.0.1:65536")).toBe(false);
    expect(offer("127.0.0.1:99999")).toBe(false);
    expect(offer("127.0.0.1:0")).toBe(false);
    expect(offer("127.0.0.1")).toBe(false);
  });
});
