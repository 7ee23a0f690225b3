// decodeFlushRecord checks a record's pieces by hand and the rest with zod: it must accept
// exactly what the FlushRecord schema accepts (and the pieces-in-fours rule), and return
// the same record.

import fc from "fast-check";
import { Packr, Unpackr } from "msgpackr";
import { describe, expect, it } from "vitest";
import { decodeFlushRecord, FlushRecord } from "../src/replica/flush-record.ts";

const packr = new Packr({ useRecords: false, moreTypes: false });
const unpackr = new Unpackr({ useRecords: false, moreTypes: false, mapsAsObjects: true });

/** Numbers a piece may or may not hold, and a few things that are not numbers. */
const pieceValue = fc.oneof(
  { weight: 8, arbitrary: fc.nat() },
  {
    weight: 1,
    arbitrary: fc.constantFrom(-1, 1.5, 2 ** 53, 2 ** 53 - 1, -0, Number.NaN, -(2 ** 53)),
  },
  { weight: 1, arbitrary: fc.constantFrom("1", null, true, [1]) },
);

const record = fc.record(
  {
    throughOpNum: fc.oneof(fc.nat(), fc.constant(-1)),
    chunk: fc.oneof(
      fc.constant(null),
      fc.record({
        chunkNumber: fc.nat(),
        sledChunkId: fc.constantFrom("c-1", ""),
        copies: fc.constantFrom(["sled-1", "sled-2"], []),
        bytes: fc.constantFrom(4096, 0),
      }),
    ),
    pieces: fc.oneof(
      { weight: 6, arbitrary: fc.array(fc.nat(), { maxLength: 40 }) },
      { weight: 3, arbitrary: fc.array(pieceValue, { maxLength: 40 }) },
      { weight: 1, arbitrary: fc.constantFrom("pieces", null, 7, { 0: 1 }) },
    ),
    drop: fc.array(fc.nat(), { maxLength: 3 }),
  },
  { requiredKeys: ["chunk", "throughOpNum"] },
);

describe("decodeFlushRecord", () => {
  it("accepts what the schema accepts, with pieces in fours, and returns the same record", () => {
    fc.assert(
      fc.property(record, (value) => {
        const packed = packr.pack(value);
        // What the schema makes of the bytes (msgpack has no -0, for one).
        const expected = FlushRecord.safeParse(unpackr.unpack(packed));
        const valid = expected.success && expected.data.pieces.length % 4 === 0;
        let decoded: FlushRecord | undefined;
        try {
          decoded = decodeFlushRecord(packed);
        } catch {
          decoded = undefined;
        }
        expect(decoded !== undefined).toBe(valid);
        if (decoded !== undefined && expected.success) expect(decoded).toEqual(expected.data);
      }),
      { numRuns: 2000 },
    );
  });

  it("reads a record of a full chunk's pieces", () => {
    const pieces = Array.from({ length: 4096 }, (_, index) => index * 7);
    const value = {
      throughOpNum: 99,
      chunk: { chunkNumber: 3, sledChunkId: "c-3", copies: ["a", "b"], bytes: 4 << 20 },
      pieces,
    };
    expect(decodeFlushRecord(packr.pack(value))).toEqual(value);
  });
});
