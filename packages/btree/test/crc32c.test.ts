import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { crc32c, crc32cFinish, crc32cInitial, crc32cUpdate } from "../src/crc32c.ts";

const ascii = (text: string): Uint8Array => new TextEncoder().encode(text);

describe("CRC-32C", () => {
  it("matches the standard check value of the Castagnoli polynomial", () => {
    expect(crc32c(ascii("123456789"))).toBe(0xe3069283);
  });

  it("matches the iSCSI test vectors of RFC 3720", () => {
    expect(crc32c(new Uint8Array(32))).toBe(0x8a9136aa);
    expect(crc32c(new Uint8Array(32).fill(0xff))).toBe(0x62a8ab43);
    expect(crc32c(Uint8Array.from({ length: 32 }, (_, index) => index))).toBe(0x46dd794e);
    expect(crc32c(Uint8Array.from({ length: 32 }, (_, index) => 31 - index))).toBe(0x113fdb5c);
  });

  it("of no bytes is zero", () => {
    expect(crc32c(new Uint8Array(0))).toBe(0);
  });

  it("computed piece by piece equals the checksum of the whole", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat(), (bytes, cut) => {
        const at = bytes.length === 0 ? 0 : cut % bytes.length;
        const running = crc32cUpdate(
          crc32cUpdate(crc32cInitial, bytes.subarray(0, at)),
          bytes.subarray(at),
        );
        expect(crc32cFinish(running)).toBe(crc32c(bytes));
      }),
    );
  });

  it("changes when any single bit changes", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 1, maxLength: 200 }),
        fc.nat(),
        fc.integer({ min: 0, max: 7 }),
        (bytes, at, bit) => {
          const flipped = bytes.slice();
          const index = at % bytes.length;
          flipped[index] = flipped[index]! ^ (1 << bit);
          expect(crc32c(flipped)).not.toBe(crc32c(bytes));
        },
      ),
    );
  });
});
