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
