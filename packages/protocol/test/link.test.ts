import fc from "fast-check";
import { describe, expect, test } from "vitest";
import {
  BallastError,
  decodeReply,
  ErrorCode,
  encodeLinkFrame,
  encodeMessageParts,
  encodeResult,
  type LinkFrame,
  LinkFrameDecoder,
  LinkOfferResult,
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
    expect(linkScopeOf(subjects.node.build("n"))).toBe("node");
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
