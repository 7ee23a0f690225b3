// The chaos checker catches what it must (a lost write, a stale read, a torn block, a
// value never written, a block of another offset) and accepts what a correct store may
// do (a read concurrent with a write returning either value, an indeterminate write
// that took effect or not, even late).

import fc from "fast-check";
import { describe, expect, test } from "vitest";
import { type BlockOp, checkBlock, checkHistory, linearizable } from "../src/chaos/checker.ts";
import {
  type BlockValue,
  decodeBlock,
  encodeBlock,
  payloadBlockBytes,
  volumeTagOf,
} from "../src/chaos/payload.ts";

const data = (sequence: number): BlockValue => ({ kind: "data", writer: 1, sequence });
const zero: BlockValue = { kind: "zero" };

let nextId = 0;
function op(
  kind: "write" | "read",
  value: BlockValue,
  invokeMs: number,
  completeMs: number | undefined,
  outcome: BlockOp["outcome"] = "ok",
  block = 0,
): BlockOp {
  const entry: BlockOp = {
    id: nextId++,
    process: kind === "write" ? "writer" : "reader",
    kind,
    volume: "vol",
    block,
    value,
    invokeMs,
    outcome,
  };
  if (completeMs !== undefined) entry.completeMs = completeMs;
  return entry;
}

describe("payloads", () => {
  const tag = volumeTagOf("vol");
  test("a block decodes as what was written, and zeros as zero", () => {
    expect(decodeBlock(encodeBlock(tag, 7, 3, 9), tag, 7)).toEqual({
      kind: "data",
      writer: 3,
      sequence: 9,
    });
    expect(decodeBlock(new Uint8Array(payloadBlockBytes), tag, 7)).toEqual({ kind: "zero" });
  });

  test("a torn block, a block of another offset or volume, and garbage are told apart", () => {
    const torn = encodeBlock(tag, 7, 3, 9);
    torn.set(encodeBlock(tag, 7, 3, 10).subarray(2048), 2048);
    expect(decodeBlock(torn, tag, 7).kind).toBe("torn");
    const half = encodeBlock(tag, 7, 3, 9);
    half.fill(0, 1024);
    expect(decodeBlock(half, tag, 7).kind).toBe("torn");
    expect(decodeBlock(encodeBlock(tag, 8, 3, 9), tag, 7).kind).toBe("foreign");
    expect(decodeBlock(encodeBlock(volumeTagOf("other"), 7, 3, 9), tag, 7).kind).toBe("foreign");
    expect(decodeBlock(new Uint8Array(payloadBlockBytes).fill(0xab), tag, 7).kind).toBe("garbage");
  });
});

describe("the checker flags", () => {
  test("a lost write: zeros read after a write was acknowledged", () => {
    const history = [op("write", data(1), 0, 10), op("read", zero, 20, 30)];
    const violation = checkBlock(history);
    expect(violation?.kind).toBe("lost-write");
    expect(violation?.history).toHaveLength(2);
  });

  test("a stale read: an older value after a newer write was acknowledged", () => {
    const history = [
      op("write", data(1), 0, 10),
      op("write", data(2), 20, 30),
      op("read", data(1), 40, 50),
    ];
    expect(checkBlock(history)?.kind).toBe("stale-read");
  });

  test("a stale read after a newer value was read (non-monotonic reads)", () => {
    const history = [
      op("write", data(1), 0, 10),
      op("write", data(2), 20, undefined, "unknown"),
      op("read", data(2), 30, 40),
      op("read", data(1), 50, 60),
    ];
    const violation = checkBlock(history);
    expect(violation?.kind).toBe("stale-read");
    expect(violation?.read.value).toEqual(data(1));
  });

  test("a torn block", () => {
    const history = [
      op("write", data(1), 0, 10),
      op("read", { kind: "torn", writer: 1, sequence: 1 }, 20, 30),
    ];
    expect(checkBlock(history)?.kind).toBe("torn");
  });

  test("a value never written to that block, and a write answered failed that took effect", () => {
    expect(checkBlock([op("read", data(5), 0, 10)])?.kind).toBe("never-written");
    const failed = checkBlock([op("write", data(1), 0, 10, "fail"), op("read", data(1), 20, 30)]);
    expect(failed?.kind).toBe("never-written");
    expect(failed?.message).toContain("failed");
  });

  test("a block of another offset", () => {
    const read = op(
      "read",
      { kind: "foreign", volumeTag: 1, block: 9, writer: 1, sequence: 1 },
      0,
      10,
    );
    expect(checkBlock([read])?.kind).toBe("foreign");
  });

  test("violations are shrunk to the operations that matter", () => {
    const history = [
      op("write", data(1), 0, 10),
      op("read", data(1), 12, 14),
      op("write", data(2), 20, 30),
      op("read", data(2), 32, 34),
      op("write", data(3), 40, 50),
      op("read", data(1), 60, 70),
    ];
    const violation = checkBlock(history)!;
    expect(violation.kind).toBe("stale-read");
    // The first write and the stale read, and a later acknowledged write it missed.
    expect(violation.history.length).toBeLessThanOrEqual(3);
    expect(violation.history.some((entry) => entry === violation.read)).toBe(true);
  });
});

describe("the checker accepts", () => {
  test("a read concurrent with a write returns either value", () => {
    for (const value of [zero, data(1)]) {
      expect(checkBlock([op("write", data(1), 0, 20), op("read", value, 5, 15)])).toBeUndefined();
    }
  });

  test("an indeterminate write may have happened, late, or not at all", () => {
    const before = [op("write", data(1), 0, 10), op("write", data(2), 20, undefined, "unknown")];
    for (const value of [data(1), data(2)]) {
      expect(checkBlock([...before, op("read", value, 100, 110)])).toBeUndefined();
    }
    // Not yet, then yes: it took effect between the two reads.
    expect(
      checkBlock([...before, op("read", data(1), 100, 110), op("read", data(2), 200, 210)]),
    ).toBeUndefined();
  });

  test("trims and write-zeroes read as zeros", () => {
    const history = [
      op("write", data(1), 0, 10),
      op("write", zero, 20, 30),
      op("read", zero, 40, 50),
    ];
    expect(checkBlock(history)).toBeUndefined();
  });

  test("blocks are checked separately", () => {
    const result = checkHistory([
      op("write", data(1), 0, 10, "ok", 1),
      op("read", data(1), 20, 30, "ok", 1),
      op("read", zero, 20, 30, "ok", 2),
    ]);
    expect(result).toMatchObject({ blocks: 2, operations: 3, violations: [] });
  });

  test("histories of a correct register are linearizable (property)", () => {
    // A sequential register with random latencies and overlapping readers.
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            read: fc.boolean(),
            start: fc.integer({ min: 0, max: 1000 }),
            latency: fc.integer({ min: 1, max: 50 }),
            point: fc.double({ min: 0, max: 1, noNaN: true }),
          }),
          { maxLength: 40 },
        ),
        (specs) => {
          // Each op takes effect at invoke + point * latency; writes are sequential
          // (single writer): shift each write to start after the previous one ended.
          let writerFree = 0;
          let sequence = 0;
          const timed = specs.map((spec) => {
            const start = spec.read ? spec.start : Math.max(spec.start, writerFree);
            const end = start + spec.latency;
            if (!spec.read) writerFree = end + 1;
            return {
              ...spec,
              start,
              end,
              at: start + spec.point * spec.latency,
              sequence: ++sequence,
            };
          });
          const byEffect = [...timed].sort((a, b) => a.at - b.at);
          let value: BlockValue = zero;
          const history: BlockOp[] = [];
          for (const entry of byEffect) {
            if (entry.read) history.push(op("read", value, entry.start, entry.end));
            else {
              value = data(entry.sequence);
              history.push(op("write", value, entry.start, entry.end));
            }
          }
          expect(linearizable(history)).toBe(true);
        },
      ),
      { numRuns: 300 },
    );
  });
});
