// The journal's on-disk format and segment scanning, without files: every header and
// record round-trips, every kind of bad byte is told apart (incomplete, mismatch,
// inconsistent), and no single flipped bit or cut anywhere is ever read as valid. A
// record checks out only with the nonce of the segment it was written in, and segments
// of version 2 (no nonce) still read as they did.

import { crc32c } from "@ballast/protocol";
import fc from "fast-check";
import { describe, expect, test } from "vitest";
import {
  formatVersion,
  formatVersionWithoutNonce,
  payloadBytesMax,
  recordHeaderBytes,
  segmentHeaderBytes,
  segmentHeaderBytesWithoutNonce,
} from "../src/journal/constants.ts";
import {
  decodeRecordAt,
  decodeSegmentHeader,
  encodeRecord,
  encodeSegmentHeader,
  frameRecord,
  parseSegmentFileName,
  recordSeedOf,
  segmentFileName,
} from "../src/journal/format.ts";
import { findIntactRecordAfter, scanSegment } from "../src/journal/segment-scan.ts";
import { recordWithoutNonce, segmentHeaderWithoutNonce } from "./fixtures/journal-files.ts";

const H = segmentHeaderBytes;
const nonce = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]);
const seed = recordSeedOf(nonce);

function segmentBytes(firstOpNum: number, payloads: Uint8Array[]): Uint8Array {
  const parts = [
    encodeSegmentHeader(firstOpNum, nonce),
    ...payloads.map((payload, index) => encodeRecord(seed, firstOpNum + index, payload)),
  ];
  return Buffer.concat(parts);
}

/** A segment as version 2 wrote it: a 24-byte header and records without a nonce. */
function segmentBytesWithoutNonce(firstOpNum: number, payloads: Uint8Array[]): Uint8Array {
  const parts = [
    segmentHeaderWithoutNonce(firstOpNum),
    ...payloads.map((payload, index) => recordWithoutNonce(firstOpNum + index, payload)),
  ];
  return Buffer.concat(parts);
}

function flipBit(bytes: Uint8Array, offset: number, bit = 0): void {
  bytes[offset] = (bytes[offset] ?? 0) ^ (1 << bit);
}

function withChecksum(header: Uint8Array): Uint8Array {
  const view = new DataView(header.buffer, header.byteOffset);
  const end = header.length - 4;
  view.setUint32(end, crc32c(header.subarray(0, end)), true);
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
  test("round-trips its first op, and gives its nonce's CRC32C as the record seed", () => {
    fc.assert(
      fc.property(
        opNumArbitrary,
        fc.uint8Array({ minLength: 8, maxLength: 8 }),
        (firstOpNum, drawn) => {
          const decoded = decodeSegmentHeader(encodeSegmentHeader(firstOpNum, drawn));
          expect(decoded).toEqual({
            kind: "valid",
            value: { formatVersion, firstOpNum, recordSeed: crc32c(drawn), bytes: H },
          });
        },
      ),
    );
  });

  test("of version 2 (no nonce) still reads, with record seed 0", () => {
    const decoded = decodeSegmentHeader(segmentHeaderWithoutNonce(42));
    expect(decoded).toEqual({
      kind: "valid",
      value: {
        formatVersion: formatVersionWithoutNonce,
        firstOpNum: 42,
        recordSeed: 0,
        bytes: segmentHeaderBytesWithoutNonce,
      },
    });
  });

  test("cut short is incomplete, and says how many bytes it had", () => {
    const header = encodeSegmentHeader(7, nonce);
    for (let length = 0; length < H; length++) {
      const decoded = decodeSegmentHeader(header.subarray(0, length));
      expect(decoded.kind).toBe("incomplete");
      expect(decoded.kind !== "valid" && decoded.reason).toContain(`${length} of ${H} bytes`);
    }
    const old = segmentHeaderWithoutNonce(7);
    const decoded = decodeSegmentHeader(old.subarray(0, 20));
    expect(decoded.kind !== "valid" && decoded.reason).toContain("20 of 24 bytes");
  });

  test("with any bit flipped is a mismatch, in either version", () => {
    // Each as the start of a file with records after it: a flip that turns version 2
    // into 3 makes a header that would be longer, which a file this short could not hold.
    const headers = [encodeSegmentHeader(123_456, nonce), segmentHeaderWithoutNonce(9)];
    for (const header of headers) {
      // A plain Uint8Array, whose slice() copies (a Buffer's would share the bytes).
      const file = new Uint8Array(
        Buffer.concat([header, encodeRecord(seed, 9, new Uint8Array(4))]),
      );
      for (let bit = 0; bit < header.length * 8; bit++) {
        const damaged = file.slice();
        flipBit(damaged, bit >> 3, bit & 7);
        expect(decodeSegmentHeader(damaged).kind, `bit ${bit}`).toBe("mismatch");
      }
    }
  });

  test.each([
    ["version 1", 1],
    ["the next version", formatVersion + 1],
  ])("of %s is inconsistent even though its checksum holds", (_, version) => {
    for (const header of [encodeSegmentHeader(1, nonce), segmentHeaderWithoutNonce(1)]) {
      new DataView(header.buffer).setUint32(8, version, true);
      const decoded = decodeSegmentHeader(withChecksum(header));
      expect(decoded.kind).toBe("inconsistent");
      expect(decoded.kind !== "valid" && decoded.reason).toContain(`format version ${version}`);
    }
  });

  test("with a first op past the safe integers is inconsistent", () => {
    const header = encodeSegmentHeader(1, nonce);
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
        const bytes = encodeRecord(seed, opNum, payload);
        expect(bytes.length).toBe(recordHeaderBytes + payload.length);
        const decoded = decodeRecordAt(bytes, 0, seed);
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
        const bytes = encodeRecord(seed, opNum, payload);
        const bit = position % (bytes.length * 8);
        flipBit(bytes, bit >> 3, bit & 7);
        expect(decodeRecordAt(bytes, 0, seed).kind).not.toBe("valid");
      }),
    );
  });

  test("checks out only with the record seed it was framed with", () => {
    fc.assert(
      fc.property(
        opNumArbitrary,
        payloadArbitrary,
        fc.uint8Array({ minLength: 8, maxLength: 8 }),
        (opNum, payload, other) => {
          fc.pre(Buffer.compare(Buffer.from(other), Buffer.from(nonce)) !== 0);
          const bytes = encodeRecord(seed, opNum, payload);
          // A record copied into a segment with another nonce, or one of version 2.
          expect(decodeRecordAt(bytes, 0, recordSeedOf(other)).kind).toBe("mismatch");
          expect(decodeRecordAt(bytes, 0, 0).kind).toBe("mismatch");
          // And one framed without a nonce, as version 2 (or a tenant) would make it.
          const plain = recordWithoutNonce(opNum, payload);
          expect(decodeRecordAt(plain, 0, 0).kind).toBe("valid");
          expect(decodeRecordAt(plain, 0, seed).kind).toBe("mismatch");
        },
      ),
    );
  });

  test("is incomplete when the file ends anywhere inside it", () => {
    fc.assert(
      fc.property(payloadArbitrary, fc.nat(), (payload, position) => {
        const bytes = encodeRecord(seed, 5, payload);
        const length = position % bytes.length;
        expect(decodeRecordAt(bytes.subarray(0, length), 0, seed).kind).toBe("incomplete");
      }),
    );
  });

  test("with a payload length over the limit is a mismatch, not a huge read", () => {
    const bytes = encodeRecord(seed, 5, new Uint8Array(8));
    new DataView(bytes.buffer).setUint32(4, payloadBytesMax + 1, true);
    const decoded = decodeRecordAt(bytes, 0, seed);
    expect(decoded.kind).toBe("mismatch");
    expect(decoded.kind !== "valid" && decoded.reason).toContain(String(payloadBytesMax + 1));
  });

  test("of zero bytes (a zero-filled tail) is a mismatch on its marker", () => {
    const decoded = decodeRecordAt(new Uint8Array(64), 0, seed);
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
    const R = recordHeaderBytes;
    expect(scan.records.map((record) => record.offset)).toEqual([H, H + R + 3, H + 2 * R + 3]);
    bytes.fill(0);
    expect(scan.records[0]?.payload).toEqual(new Uint8Array([1, 2, 3]));
  });

  test("stops at the first damage and reports the intact prefix", () => {
    const bytes = segmentBytes(1, [new Uint8Array(10), new Uint8Array(10), new Uint8Array(10)]);
    const second = H + recordHeaderBytes + 10;
    flipBit(bytes, second + recordHeaderBytes + 5); // inside the second record's payload
    const scan = scanSegment(bytes);
    expect(scan.records.map((record) => record.opNum)).toEqual([1]);
    expect(scan.intactBytes).toBe(second);
    expect(scan.damage).toMatchObject({ kind: "mismatch", offset: second, opNumExpected: 2 });
  });

  test("reports a valid record with the wrong op as inconsistent", () => {
    const bytes = Buffer.concat([
      encodeSegmentHeader(10, nonce),
      encodeRecord(seed, 10, new Uint8Array(1)),
      encodeRecord(seed, 12, new Uint8Array(1)),
    ]);
    const scan = scanSegment(bytes);
    expect(scan.records).toHaveLength(1);
    expect(scan.damage).toMatchObject({ kind: "inconsistent", offset: H + recordHeaderBytes + 1 });
    expect(scan.damage?.reason).toBe("the record holds op 12 where op 11 belongs");
  });

  test("reports a valid record whose sync start is neither its own op nor its predecessor's as inconsistent", () => {
    const bytes = Buffer.concat([
      encodeSegmentHeader(10, nonce),
      encodeRecord(seed, 10, new Uint8Array(1)),
      encodeRecord(seed, 11, new Uint8Array(1), 10),
      encodeRecord(seed, 12, new Uint8Array(1), 11),
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

  test("reads a segment of version 2 by its rules: its records carry no nonce", () => {
    const payloads = [new Uint8Array([1, 2, 3]), new Uint8Array(0)];
    const bytes = segmentBytesWithoutNonce(40, payloads);
    const scan = scanSegment(bytes);
    expect(scan.header).toMatchObject({ formatVersion: formatVersionWithoutNonce, recordSeed: 0 });
    expect(scan.damage).toBeUndefined();
    expect(scan.records.map((record) => record.offset)).toEqual([24, 24 + recordHeaderBytes + 3]);
    expect(scan.records.map((record) => record.payload)).toEqual(payloads);
  });

  test("stops at a record framed without the segment's nonce, as at any damage", () => {
    const bytes = Buffer.concat([
      segmentBytes(1, [new Uint8Array(5)]),
      recordWithoutNonce(2, new Uint8Array(5)),
    ]);
    const scan = scanSegment(bytes);
    expect(scan.records.map((record) => record.opNum)).toEqual([1]);
    expect(scan.damage).toMatchObject({ kind: "mismatch", opNumExpected: 2 });
    expect(scan.damage?.reason).toContain("checksum");
  });
});

describe("looking for an intact record after damage", () => {
  test("finds the next intact record past a damaged one", () => {
    const bytes = segmentBytes(1, [new Uint8Array(10), new Uint8Array(10), new Uint8Array(10)]);
    flipBit(bytes, H + recordHeaderBytes + 5); // the first record's payload
    const scan = scanSegment(bytes);
    expect(scan.damage?.offset).toBe(H);
    expect(findIntactRecordAfter(bytes, scan.damage!, seed)).toBe(H + recordHeaderBytes + 10);
  });

  test("finds nothing after a torn last record", () => {
    const bytes = segmentBytes(1, [new Uint8Array(10), new Uint8Array(10)]);
    const torn = bytes.subarray(0, bytes.length - 3);
    const scan = scanSegment(torn);
    expect(scan.damage?.kind).toBe("incomplete");
    expect(findIntactRecordAfter(torn, scan.damage!, seed)).toBeUndefined();
  });

  test("ignores a record-shaped copy inside a payload, made without the segment's nonce", () => {
    // What a tenant can write: a record for the very op that follows, of a later sync.
    const outer = new Uint8Array(100);
    outer.set(recordWithoutNonce(3, new Uint8Array([7, 7, 7])), 30);
    const bytes = segmentBytes(1, [new Uint8Array(5), outer]);
    const torn = bytes.subarray(0, bytes.length - 1);
    const scan = scanSegment(torn);
    expect(scan.damage).toMatchObject({ kind: "incomplete", opNumExpected: 2 });
    expect(findIntactRecordAfter(torn, scan.damage!, seed)).toBeUndefined();
    // Nor does a record of the same op copied from a segment with another nonce count.
    const otherSeed = recordSeedOf(new Uint8Array(8).fill(9));
    outer.set(encodeRecord(otherSeed, 3, new Uint8Array([7, 7, 7])), 30);
    const copied = segmentBytes(1, [new Uint8Array(5), outer]).subarray(0, bytes.length - 1);
    expect(findIntactRecordAfter(copied, scanSegment(copied).damage!, seed)).toBeUndefined();
  });

  test("in a segment of version 2, ignores a copy whose op could not follow, and takes one that could", () => {
    const inner = recordWithoutNonce(999_999, new Uint8Array([7, 7, 7]));
    const outer = new Uint8Array(100);
    outer.set(inner, 30);
    const bytes = segmentBytesWithoutNonce(1, [new Uint8Array(5), outer]);
    const torn = bytes.subarray(0, bytes.length - 1);
    const scan = scanSegment(torn);
    expect(scan.damage).toMatchObject({ kind: "incomplete", opNumExpected: 2 });
    expect(findIntactRecordAfter(torn, scan.damage!, 0)).toBeUndefined();
    // The same copy with an op that could follow is taken as proof of damage: version 2
    // cannot tell it from a record (the defect version 3's nonce removes).
    outer.set(recordWithoutNonce(3, new Uint8Array([7, 7, 7])), 30);
    const plausible = segmentBytesWithoutNonce(1, [new Uint8Array(5), outer]).subarray(
      0,
      bytes.length - 1,
    );
    const plausibleScan = scanSegment(plausible);
    expect(findIntactRecordAfter(plausible, plausibleScan.damage!, 0)).toBe(
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
          frameRecord(seed, plain.framed, 7, 5, plain.tail);
          const combined = parts(head, tail);
          const known = tail.map((part, index) => (knownAt[index] ? crc32c(part) : undefined));
          frameRecord(seed, combined.framed, 7, 5, combined.tail, known);
          expect(combined.framed).toEqual(plain.framed);
          // And the record reads back whole.
          const file = Buffer.concat([combined.framed, ...tail]);
          const decoded = decodeRecordAt(file, 0, seed);
          expect(decoded.kind).toBe("valid");
        },
      ),
    );
  });

  test("a wrong known CRC makes a record that reads as damaged, never as other bytes", () => {
    const data = new Uint8Array(4096).fill(9);
    const record = parts(new Uint8Array([1, 2, 3]), [data]);
    frameRecord(seed, record.framed, 3, 3, record.tail, [crc32c(data) ^ 1]);
    const decoded = decodeRecordAt(Buffer.concat([record.framed, data]), 0, seed);
    expect(decoded).toMatchObject({ kind: "mismatch" });
  });
});

describe("frameRecord's checks (their messages are built only when one fails)", () => {
  const seed = recordSeedOf(new Uint8Array(8).fill(3));
  const framed = () => new Uint8Array(recordHeaderBytes + 8);

  test("a bad op number, a sync start after the op, a buffer without room: each refused and named", () => {
    expect(() => frameRecord(seed, framed(), -1)).toThrow("bad op number -1");
    expect(() => frameRecord(seed, framed(), 1.5)).toThrow("bad op number 1.5");
    expect(() => frameRecord(seed, framed(), 4, 5)).toThrow("bad sync start 5 for op 4");
    expect(() => frameRecord(seed, framed(), 4, -1)).toThrow("bad sync start -1 for op 4");
    expect(() => frameRecord(seed, new Uint8Array(recordHeaderBytes - 1), 4)).toThrow(
      `a framed record of ${recordHeaderBytes - 1} bytes has no room for its header`,
    );
  });

  test("a valid record is framed in place and reads back", () => {
    const bytes = framed();
    bytes.fill(9, recordHeaderBytes);
    expect(frameRecord(seed, bytes, 4, 2)).toBe(bytes);
    const decoded = decodeRecordAt(bytes, 0, seed);
    expect(decoded.kind).toBe("valid");
  });
});
