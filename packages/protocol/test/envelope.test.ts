import fc from "fast-check";
import { pack } from "msgpackr";
import { describe, expect, test } from "vitest";
import {
  BallastError,
  decodeReply,
  ErrorCode,
  encodeError,
  encodeResult,
  encodeResultParts,
  isBallastError,
} from "../src/index.ts";

describe("reply envelope", () => {
  test("a result round-trips and is validated against the request's result schema", () => {
    const result = decodeReply("volume.write.v1", encodeResult({ opNumFirst: 7, opNumLast: 9 }));
    expect(result).toEqual({ opNumFirst: 7, opNumLast: 9 });
  });

  test("a result of the wrong shape is refused as invalid", () => {
    expect(() => decodeReply("volume.write.v1", encodeResult({ opNumFirst: "9" }))).toThrow(
      expect.objectContaining({ code: ErrorCode.InvalidMessage }),
    );
  });

  test("an error keeps its code, message and details across the wire", () => {
    const sent = new BallastError(ErrorCode.WrongEpoch, "epoch 3 is not current (current is 4)", {
      details: { epoch: 3, currentEpoch: 4 },
    });
    try {
      decodeReply("volume.write.v1", encodeError(sent));
      expect.unreachable();
    } catch (error) {
      expect(isBallastError(error, ErrorCode.WrongEpoch)).toBe(true);
      const received = error as BallastError;
      expect(received.message).toBe(sent.message);
      expect(received.details).toMatchObject({ epoch: 3, currentEpoch: 4, remote: true });
      expect(received.retryable).toBe(true);
    }
  });

  test("a plain Error becomes Internal", () => {
    expect(() => decodeReply("node.info.v1", encodeError(new Error("boom")))).toThrow(
      expect.objectContaining({ code: ErrorCode.Internal, message: "boom" }),
    );
  });

  test("an unknown error code from a newer peer is read as Internal", () => {
    const bytes = pack({ ok: false, error: { code: "SomethingNew", message: "m" } });
    expect(() => decodeReply("node.info.v1", bytes)).toThrow(
      expect.objectContaining({ code: ErrorCode.Internal }),
    );
  });

  test("a reply that is not an envelope is refused", () => {
    expect(() => decodeReply("node.info.v1", pack({ hello: 1 }))).toThrow(
      expect.objectContaining({ code: ErrorCode.InvalidMessage }),
    );
    expect(() => decodeReply("node.info.v1", new Uint8Array([0xc1]))).toThrow(
      expect.objectContaining({ code: ErrorCode.MalformedMessage }),
    );
  });
});

describe("a reply in parts", () => {
  /** Byte arrays around the thresholds: by reference from 16 KiB, large data from 64 KiB. */
  const piece = fc
    .tuple(
      fc.constantFrom(0, 1, 4096, 16_383, 16_384, 65_536, 300_000, 1024 * 1024),
      fc.integer({ min: 0, max: 255 }),
      fc.integer({ min: 0, max: 64 }),
    )
    .map(([length, seed, offset]) => {
      // Views at an offset into a larger buffer too, as a cached chunk's ranges are.
      const buffer = new Uint8Array(length + offset);
      for (let at = 0; at < buffer.length; at += 997) buffer[at] = (seed + at) & 0xff;
      return buffer.subarray(offset);
    });
  const range = fc.record({
    offset: fc.integer({ min: 0, max: 2 ** 40 }),
    length: fc.integer({ min: 1, max: 2 ** 22 }),
  });
  const readResult = fc.oneof(
    fc.record({ data: fc.array(piece, { maxLength: 6 }) }),
    fc.array(piece, { maxLength: 6 }).chain((data) =>
      fc.record({
        data: fc.constant(data),
        unmapped: fc.array(fc.array(range, { maxLength: 3 }), {
          minLength: data.length,
          maxLength: data.length,
        }),
      }),
    ),
  );

  test("any read result sent in parts is the bytes of the reply encoded whole, and decodes the same", () => {
    fc.assert(
      fc.property(readResult, (result) => {
        const parts = encodeResultParts(result);
        const sent = Buffer.concat(parts);
        expect(sent.equals(Buffer.from(encodeResult(result)))).toBe(true);
        const decoded = decodeReply("volume.read.v1", sent);
        expect(decoded.data).toHaveLength(result.data.length);
        for (const [index, data] of decoded.data.entries()) {
          expect(Buffer.from(data).equals(Buffer.from(result.data[index]!))).toBe(true);
        }
        expect(decoded.unmapped).toEqual("unmapped" in result ? result.unmapped : undefined);
      }),
      { numRuns: 150 },
    );
  });
});
