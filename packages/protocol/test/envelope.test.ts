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

  test("a head node's slow sleds in its node info are checked at the edge; other details pass", () => {
    const info = (details: Record<string, unknown>) =>
      encodeResult({
        kind: "headnode",
        nodeId: "head-1",
        pid: 1,
        startedAtMs: 0,
        uptimeMs: 0,
        version: "0.1.0",
        subjects: [],
        details,
      });
    const slowSleds = {
      slow: ["sled-2"],
      hedgedReads: 3,
      hedgedWrites: 2,
      holds: [{ sled: "sled-2", slowForMs: 4_000, holdLeftMs: 26_000, holdMs: 30_000 }],
    };
    expect(decodeReply("node.info.v1", info({ slowSleds, session: 7 })).details).toEqual({
      slowSleds,
      session: 7,
    });
    // From a head node that predates `holds`, and from services that have none.
    expect(
      decodeReply("node.info.v1", info({ slowSleds: { slow: [], hedgedReads: 0 } })).details,
    ).toEqual({ slowSleds: { slow: [], hedgedReads: 0 } });
    expect(decodeReply("node.info.v1", info({})).details).toEqual({});
    for (const bad of [
      { slow: "sled-2", hedgedReads: 0 },
      { slow: [], hedgedReads: -1 },
      { slow: [], hedgedReads: 0, hedgedWrites: 0.5 },
      { slow: ["sled-2"], hedgedReads: 0, holds: [{ sled: "sled-2", slowForMs: 1.5 }] },
    ]) {
      expect(() => decodeReply("node.info.v1", info({ slowSleds: bad }))).toThrow(
        expect.objectContaining({ code: ErrorCode.InvalidMessage }),
      );
    }
    // The status answer carries it on the head node's entry, checked the same way.
    const entry = {
      kind: "headnode",
      id: "head-1",
      pid: 1,
      healthy: true,
      startedAtMs: 0,
      lastHeartbeatAtMs: 0,
      lastHeartbeatAgeMs: 0,
      version: "0.1.0",
    };
    const status = (service: Record<string, unknown>) =>
      encodeResult({
        coordinator: "coordinator-1",
        generatedAtMs: 0,
        services: [service],
        volumes: [],
      });
    expect(
      decodeReply("cluster.status.v1", status({ ...entry, slowSleds })).services[0]!.slowSleds,
    ).toEqual(slowSleds);
    expect(() =>
      decodeReply("cluster.status.v1", status({ ...entry, slowSleds: { slow: [1] } })),
    ).toThrow(expect.objectContaining({ code: ErrorCode.InvalidMessage }));
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
