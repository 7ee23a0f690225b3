import { pack } from "msgpackr";
import { describe, expect, test } from "vitest";
import {
  BallastError,
  decodeReply,
  ErrorCode,
  encodeError,
  encodeResult,
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
