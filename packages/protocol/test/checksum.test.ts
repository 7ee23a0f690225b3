import fc from "fast-check";
import { expect, test } from "vitest";
import { crc32c, crc32cCombine, crc32cOfPieces } from "../src/index.ts";

test("crc32c matches the standard check value", () => {
  expect(crc32c(new TextEncoder().encode("123456789"))).toBe(0xe3069283);
  expect(crc32c(new Uint8Array())).toBe(0);
});

test("crc32c of parts continues to the crc32c of the whole", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat(), (data, cut) => {
      const at = data.length === 0 ? 0 : cut % data.length;
      expect(crc32c(data.subarray(at), crc32c(data.subarray(0, at)))).toBe(crc32c(data));
    }),
  );
});

test("crc32c changes when one bit flips", () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 1, maxLength: 300 }),
      fc.nat(),
      fc.nat(7),
      (data, at, bit) => {
        const flipped = new Uint8Array(data);
        flipped[at % data.length]! ^= 1 << bit;
        expect(crc32c(flipped)).not.toBe(crc32c(data));
      },
    ),
  );
});

test("crc32cCombine gives the crc32c of the two parts joined", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 600 }), fc.uint8Array({ maxLength: 600 }), (a, b) => {
      const joined = new Uint8Array(a.length + b.length);
      joined.set(a);
      joined.set(b, a.length);
      expect(crc32cCombine(crc32c(a), crc32c(b), b.length)).toBe(crc32c(joined));
    }),
  );
});

test("crc32cOfPieces gives the crc32c of the whole, whatever the last piece's length", () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ maxLength: 3000 }),
      fc.integer({ min: 1, max: 700 }),
      (data, pieceBytes) => {
        const checksums: number[] = [];
        for (let at = 0; at < data.length; at += pieceBytes) {
          checksums.push(crc32c(data.subarray(at, at + pieceBytes)));
        }
        expect(crc32cOfPieces(checksums, pieceBytes, data.length)).toBe(crc32c(data));
      },
    ),
    { numRuns: 200 },
  );
});

test("crc32cOfPieces of 4 KiB blocks of a large chunk, and its bad inputs", () => {
  const data = new Uint8Array(1024 * 1024 + 100);
  for (let at = 0; at < data.length; at++) data[at] = (at * 2_654_435_761) >>> 24;
  const blocks: number[] = [];
  for (let at = 0; at < data.length; at += 4096) blocks.push(crc32c(data.subarray(at, at + 4096)));
  expect(crc32cOfPieces(blocks, 4096, data.length)).toBe(crc32c(data));
  expect(crc32cOfPieces([], 4096, 0)).toBe(0);
  expect(() => crc32cOfPieces(blocks.slice(1), 4096, data.length)).toThrow(RangeError);
  expect(() => crc32cCombine(1, 2, -1)).toThrow(RangeError);
});

/** `length` bytes drawn from `seed` (a multiplicative hash of the position). */
function patterned(length: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let at = 0; at < length; at++) bytes[at] = Math.imul(at + seed, 2_654_435_761) >>> 24;
  return bytes;
}

/** Lengths as the head nodes meet them: none, a few bytes, sector and page sizes, MiBs. */
const partLength = fc.oneof(
  fc.constant(0),
  fc.integer({ min: 1, max: 64 }),
  fc.integer({ min: 0, max: 64 }).map((sectors) => sectors * 512),
  fc.integer({ min: 0, max: 70_000 }),
  fc.integer({ min: 1024 * 1024 - 5, max: 4 * 1024 * 1024 + 5 }),
);

test("crc32cCombine gives the crc32c of the parts joined, at any lengths up to MiBs", () => {
  fc.assert(
    fc.property(partLength, partLength, fc.nat(), (aBytes, bBytes, seed) => {
      const joined = patterned(aBytes + bBytes, seed);
      const a = joined.subarray(0, aBytes);
      const b = joined.subarray(aBytes);
      expect(crc32cCombine(crc32c(a), crc32c(b), bBytes)).toBe(crc32c(joined));
    }),
    { numRuns: 150 },
  );
});

test("crc32cCombine over lengths past 2^31 agrees with combining in steps", () => {
  // No buffer that long is read: carrying a CRC through m zero bytes and then n must be
  // carrying it through m + n, whichever way the lengths are halved (past 2^31 by division).
  const large = fc.integer({ min: 2 ** 31 - 3, max: 2 ** 40 });
  const any = fc.oneof(large, fc.integer({ min: 0, max: 2 ** 32 }));
  fc.assert(
    fc.property(fc.nat(0xffff_ffff), fc.nat(0xffff_ffff), any, any, (a, c, m, n) => {
      // b's CRC taken as 0 isolates the carrying: combine(x, 0, m) is x carried m bytes.
      // (Nothing has a CRC but 0, so c counts only when n does.)
      const second = n === 0 ? 0 : c;
      const inSteps = crc32cCombine(crc32cCombine(a, 0, m), second, n);
      expect(crc32cCombine(a, second, m + n)).toBe(inSteps);
    }),
    { numRuns: 300 },
  );
  expect(crc32cCombine(0x1234_5678, 0x9abc_def0, Number.MAX_SAFE_INTEGER)).toBe(
    crc32cCombine(crc32cCombine(0x1234_5678, 0, 2 ** 52), 0x9abc_def0, 2 ** 52 - 1),
  );
  expect(() => crc32cCombine(1, 2, Number.MAX_SAFE_INTEGER + 1)).toThrow(RangeError);
  expect(() => crc32cCombine(1, 2, 0.5)).toThrow(RangeError);
});
