// isValidRange is the cheap form of checkRange that every operation passes first: it must
// let through exactly what checkRange lets through.

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { checkRange, isValidRange } from "../src/validation.ts";

const sector = 512;
const volume = { name: "v", sizeBytes: 64 * sector };

/** Offsets and lengths near the edges: aligned or not, negative, past the end, not integers. */
const position = fc.oneof(
  fc.integer({ min: -2, max: 70 }).map((n) => n * sector),
  fc.integer({ min: -4 * sector, max: 70 * sector }),
  fc.constantFrom(0.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53, -0),
);

describe("isValidRange", () => {
  it("accepts exactly the ranges checkRange accepts", () => {
    fc.assert(
      fc.property(position, position, (offset, length) => {
        let accepted = true;
        try {
          checkRange(volume, "write", offset, length);
        } catch {
          accepted = false;
        }
        expect(isValidRange(volume, offset, length)).toBe(accepted);
      }),
      { numRuns: 3000 },
    );
  });

  it("names the operation in checkRange's refusal", () => {
    expect(() => checkRange(volume, "write 512 bytes at offset 1", 1, 512)).toThrow(
      /cannot write 512 bytes at offset 1 on volume "v": offset 1 and length 512 must both be multiples/,
    );
  });
});
