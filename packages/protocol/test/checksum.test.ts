import fc from "fast-check";
import { expect, test } from "vitest";
import { crc32c } from "../src/index.ts";

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
