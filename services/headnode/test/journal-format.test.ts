// The journal's on-disk format and segment scanning, without files: every header and
// record round-trips, every kind of bad byte is told apart (incomplete, mismatch,
// inconsistent), and no single flipped bit or cut anywhere is ever read as valid.

import { crc32c } from "@ballast/protocol";
import fc from "fast-check";
import { describe, expect, test } from "vitest";
import {
  formatVersion,
  payloadBytesMax,
  recordHeaderBytes,
  segmentHeaderBytes,
} from "../src/journal/constants.ts";
import {
  decodeRecordAt,
  decodeSegmentHeader,
  encodeRecord,
  encodeSegmentHeader,
  frameRecord,
  parseSegmentFileName,
  segmentFileName,
} from "../src/journal/format.ts";
import { findIntactRecordAfter, scanSegment } from "../src/journal/segment-scan.ts";

function segmentBytes(firstOpNum: number, payloads: Uint8Array[]): Uint8Array {
  const parts = [
    encodeSegmentHeader(firstOpNum),
    ...payloads.map((payload, index) => encodeRecord(firstOpNum + index, payload)),
  ];
  return Buffer.concat(parts);
}

function flipBit(bytes: Uint8Array, offset: number, bit = 0): void {
  bytes[offset] = (bytes[offset] ?? 0) ^ (1 << bit);
}

function withChecksum(header: Uint8Array): Uint8Array {
  const view = new DataView(header.buffer, header.byteOffset);
  view.setUint32(20, crc32c(header.subarray(0, 20)), true);
  return header;
}

const payloadArbitrary = fc.uint8Array({ maxLength: 300 });
const opNumArbitrary = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER - 1000 });

describe("segment file names", () => {
  test("carry the first op zero-padded to 20 digits, so that names sort in op order", () => {
    expect(segmentFileName(1)).toBe("segment-00000000000000000001.log");
    expect(segmentFileName(Number.MAX_SAFE_INTEGER)).toBe("segment-00009007199254740991.log");
    const opNums = [0, 9, 10, 99, 100, 12_345, 2 ** 40];
    const sortedByName = opNums.map(segmentFileName).sort();
    expect(sortedByName.map(parseSegmentFileName)).toEqual(opNums);
  });

  test("other names, and numbers past the safe integers, are not segments", () => {
    for (const name of [
      "segment-1.log",
      "segment-00000000000000000001.log.tmp",
      "segment-0000000000000000000a.log",
      "notes.txt",
      "segment-99999999999999999999.log",
    ]) {
      expect(parseSegmentFileName(name), name).toBeUndefined();
    }
  });
});

describe("the segment header", () => {
  test("round-trips its first op", () => {
    fc.assert(
      fc.property(opNumArbitrary, (firstOpNum) => {
        const decoded = decodeSegmentHeader(encodeSegmentHeader(firstOpNum));
        expect(decoded).toEqual({ kind: "valid", value: { formatVersion, firstOpNum } });
      }),
    );
  });

  test("cut short is incomplete, and says how many bytes it had", () => {
    const header = encodeSegmentHeader(7);
    for (let length = 0; length < segmentHeaderBytes; length++) {
      const decoded = decodeSegmentHeader(header.subarray(0, length));
      expect(decoded.kind).toBe("incomplete");
      expect(decoded.kind !== "valid" && decoded.reason).toContain(`${length} of 24 bytes`);
    }
  });

  test("with any bit flipped is a mismatch", () => {
    const header = encodeSegmentHeader(123_456);
    for (let bit = 0; bit < segmentHeaderBytes * 8; bit++) {
      const damaged = header.slice();
      flipBit(damaged, bit >> 3, bit & 7);
      expect(decodeSegmentHeader(damaged).kind, `bit ${bit}`).toBe("mismatch");
    }
  });

  test("of another format version is inconsistent even though its checksum holds", () => {
    const header = encodeSegmentHeader(1);
    new DataView(header.buffer).setUint32(8, formatVersion + 1, true);
    const decoded = decodeSegmentHeader(withChecksum(header));
    expect(decoded.kind).toBe("inconsistent");
    expect(decoded.kind !== "valid" && decoded.reason).toContain(
      `format version ${formatVersion + 1}`,
    );
  });

  test("with a first op past the safe integers is inconsistent", () => {
    const header = encodeSegmentHeader(1);
    new DataView(header.buffer).setBigUint64(12, 2n ** 60n, true);
    const decoded = decodeSegmentHeader(withChecksum(header));
    expect(decoded.kind).toBe("inconsistent");
    expect(decoded.kind !== "valid" && decoded.reason).toContain(String(2n ** 60n));
  });
});

describe("a record", () => {
  test("round-trips its op and payload", () => {
    fc.assert(
      fc.property(opNumArbitrary, payloadArbitrary, (opNum, payload) => {
        const bytes = encodeRecord(opNum, payload);
        expect(bytes.length).toBe(recordHeaderBytes + payload.length);
        const decoded = decodeRecordAt(bytes, 0);
        expect(decoded.kind).toBe("valid");
        if (decoded.kind !== "valid") return;
        expect(decoded.value.opNum).toBe(opNum);
        expect(decoded.value.payload).toEqual(payload);
        expect(decoded.value.endOffset).toBe(bytes.length);
      }),
    );
  });

  test("is never valid with any single bit flipped", () => {
    fc.assert(
      fc.property(opNumArbitrary, payloadArbitrary, fc.nat(), (opNum, payload, position) => {
        const bytes = encodeRecord(opNum, payload);
        const bit = position % (bytes.length * 8);
        flipBit(bytes, bit >> 3, bit & 7);
        expect(decodeRecordAt(bytes, 0).kind).not.toBe("valid");
      }),
    );
  });

  test("is incomplete when the file ends anywhere inside it", () => {
    fc.assert(
      fc.property(payloadArbitrary, fc.nat(), (payload, position) => {
        const bytes = encodeRecord(5, payload);
        const length = position % bytes.length;
        expect(decodeRecordAt(bytes.subarray(0, length), 0).kind).toBe("incomplete");
      }),
    );
  });

  test("with a payload length over the limit is a mismatch, not a huge read", () => {
    const bytes = encodeRecord(5, new Uint8Array(8));
    new DataView(bytes.buffer).setUint32(4, payloadBytesMax + 1, true);
    const decoded = decodeRecordAt(bytes, 0);
    expect(decoded.kind).toBe("mismatch");
    expect(decoded.kind !== "valid" && decoded.reason).toContain(String(payloadBytesMax + 1));
  });

  test("of zero bytes (a zero-filled tail) is a mismatch on its marker", () => {
    const decoded = decodeRecordAt(new Uint8Array(64), 0);
    expect(decoded.kind).toBe("mismatch");
    expect(decoded.kind !== "valid" && decoded.reason).toContain("marker is 0x00000000");
  });
});

describe("scanning a segment", () => {
  test("reads every record of an intact segment, with payloads copied", () => {
    const payloads = [new Uint8Array([1, 2, 3]), new Uint8Array(0), new Uint8Array([9])];
    const bytes = segmentBytes(40, payloads);
    const scan = scanSegment(bytes);
    expect(scan.damage).toBeUndefined();
    expect(scan.intactBytes).toBe(bytes.length);
    expect(scan.records.map((record) => record.opNum)).toEqual([40, 41, 42]);
    expect(scan.records.map((record) => record.payload)).toEqual(payloads);
    const H = recordHeaderBytes;
    expect(scan.records.map((record) => record.offset)).toEqual([24, 24 + H + 3, 24 + 2 * H + 3]);
    bytes.fill(0);
    expect(scan.records[0]?.payload).toEqual(new Uint8Array([1, 2, 3]));
  });

  test("stops at the first damage and reports the intact prefix", () => {
    const bytes = segmentBytes(1, [new Uint8Array(10), new Uint8Array(10), new Uint8Array(10)]);
    const second = 24 + recordHeaderBytes + 10;
    flipBit(bytes, second + recordHeaderBytes + 5); // inside the second record's payload
    const scan = scanSegment(bytes);
    expect(scan.records.map((record) => record.opNum)).toEqual([1]);
    expect(scan.intactBytes).toBe(second);
    expect(scan.damage).toMatchObject({ kind: "mismatch", offset: second, opNumExpected: 2 });
  });

  test("reports a valid record with the wrong op as inconsistent", () => {
    const bytes = Buffer.concat([
      encodeSegmentHeader(10),
      encodeRecord(10, new Uint8Array(1)),
      encodeRecord(12, new Uint8Array(1)),
    ]);
    const scan = scanSegment(bytes);
    expect(scan.records).toHaveLength(1);
    expect(scan.damage).toMatchObject({ kind: "inconsistent", offset: 24 + recordHeaderBytes + 1 });
    expect(scan.damage?.reason).toBe("the record holds op 12 where op 11 belongs");
  });

  test("reports a valid record whose sync start is neither its own op nor its predecessor's as inconsistent", () => {
    const bytes = Buffer.concat([
      encodeSegmentHeader(10),
      encodeRecord(10, new Uint8Array(1)),
      encodeRecord(11, new Uint8Array(1), 10),
      encodeRecord(12, new Uint8Array(1), 11),
    ]);
    const scan = scanSegment(bytes);
    expect(scan.records.map((record) => record.syncStartOpNum)).toEqual([10, 10]);
    expect(scan.damage).toMatchObject({ kind: "inconsistent", opNumExpected: 12 });
  });

  test("reads no record when the header is damaged", () => {
    const bytes = segmentBytes(1, [new Uint8Array(4)]);
    flipBit(bytes, 3);
    const scan = scanSegment(bytes);
    expect(scan.header).toBeUndefined();
    expect(scan.records).toEqual([]);
    expect(scan.damage).toMatchObject({ kind: "mismatch", offset: 0 });
  });
});

describe("looking for an intact record after damage", () => {
  test("finds the next intact record past a damaged one", () => {
    const bytes = segmentBytes(1, [new Uint8Array(10), new Uint8Array(10), new Uint8Array(10)]);
    flipBit(bytes, 24 + recordHeaderBytes + 5); // the first record's payload
    const scan = scanSegment(bytes);
    expect(scan.damage?.offset).toBe(24);
    expect(findIntactRecordAfter(bytes, scan.damage!)).toBe(24 + recordHeaderBytes + 10);
  });

  test("finds nothing after a torn last record", () => {
    const bytes = segmentBytes(1, [new Uint8Array(10), new Uint8Array(10)]);
    const torn = bytes.subarray(0, bytes.length - 3);
    const scan = scanSegment(torn);
    expect(scan.damage?.kind).toBe("incomplete");
    expect(findIntactRecordAfter(torn, scan.damage!)).toBeUndefined();
  });

  test("ignores a record-shaped copy inside a payload whose op could not follow", () => {
    const inner = encodeRecord(999_999, new Uint8Array([7, 7, 7]));
    const outer = new Uint8Array(100);
    outer.set(inner, 30);
    const bytes = segmentBytes(1, [new Uint8Array(5), outer]);
    const torn = bytes.subarray(0, bytes.length - 1);
    const scan = scanSegment(torn);
    expect(scan.damage).toMatchObject({ kind: "incomplete", opNumExpected: 2 });
    expect(findIntactRecordAfter(torn, scan.damage!)).toBeUndefined();
    // The same copy with an op that could follow is taken as proof of damage.
    outer.set(encodeRecord(3, new Uint8Array([7, 7, 7])), 30);
    const plausible = segmentBytes(1, [new Uint8Array(5), outer]).subarray(0, bytes.length - 1);
    const plausibleScan = scanSegment(plausible);
    expect(findIntactRecordAfter(plausible, plausibleScan.damage!)).toBe(
      24 + (recordHeaderBytes + 5) + recordHeaderBytes + 30,
    );
  });
});

describe("a framed record's tail checksums", () => {
  /** `framed` (room for the header, then `head`) and `tail`, as the note encoding makes them. */
  function parts(head: Uint8Array, tail: Uint8Array[]) {
    const framed = new Uint8Array(recordHeaderBytes + head.byteLength);
    framed.set(head, recordHeaderBytes);
    return { framed, tail };
  }

  test("known CRCs of tail parts give the record the bytes it has without them", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 64 }),
        fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 4 }),
        fc.array(fc.boolean(), { minLength: 4, maxLength: 4 }),
        (head, tail, knownAt) => {
          const plain = parts(head, tail);
          frameRecord(plain.framed, 7, 5, plain.tail);
          const combined = parts(head, tail);
          const known = tail.map((part, index) => (knownAt[index] ? crc32c(part) : undefined));
          frameRecord(combined.framed, 7, 5, combined.tail, known);
          expect(combined.framed).toEqual(plain.framed);
          // And the record reads back whole.
          const file = Buffer.concat([combined.framed, ...tail]);
          const decoded = decodeRecordAt(file, 0);
          expect(decoded.kind).toBe("valid");
        },
      ),
    );
  });

  test("a wrong known CRC makes a record that reads as damaged, never as other bytes", () => {
    const data = new Uint8Array(4096).fill(9);
    const record = parts(new Uint8Array([1, 2, 3]), [data]);
    frameRecord(record.framed, 3, 3, record.tail, [crc32c(data) ^ 1]);
    const decoded = decodeRecordAt(Buffer.concat([record.framed, data]), 0);
    expect(decoded).toMatchObject({ kind: "mismatch" });
  });
});
