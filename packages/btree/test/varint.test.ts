import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ByteCursor, varintByteLength, varintBytesMax, writeVarint } from "../src/varint.ts";

describe("varints", () => {
  it("round-trip every safe integer in as many bytes as varintByteLength says", () => {
    fc.assert(
      fc.property(fc.maxSafeNat(), (value) => {
        const bytes = new Uint8Array(varintBytesMax);
        const end = writeVarint(bytes, 0, value);
        expect(end).toBe(varintByteLength(value));
        const cursor = new ByteCursor(bytes, 0, end);
        expect(cursor.readVarint()).toBe(value);
        expect(cursor.failed).toBe(false);
        expect(cursor.remaining).toBe(0);
      }),
    );
  });

  it("take one byte below 128 and eight for the largest safe integer", () => {
    expect(varintByteLength(0)).toBe(1);
    expect(varintByteLength(127)).toBe(1);
    expect(varintByteLength(128)).toBe(2);
    expect(varintByteLength(2 ** 31)).toBe(5);
    expect(varintByteLength(Number.MAX_SAFE_INTEGER)).toBe(8);
  });

  it("encode LEB128 exactly", () => {
    const bytes = new Uint8Array(8);
    expect([...bytes.subarray(0, writeVarint(bytes, 0, 300))]).toEqual([0xac, 0x02]);
    expect([...bytes.subarray(0, writeVarint(bytes, 0, 2 ** 35))]).toEqual([
      0x80, 0x80, 0x80, 0x80, 0x80, 0x01,
    ]);
  });

  it("a varint cut off by the end of the window fails the cursor", () => {
    const cursor = new ByteCursor(Uint8Array.from([0x80, 0x80]), 0, 2);
    expect(cursor.readVarint()).toBe(-1);
    expect(cursor.failed).toBe(true);
  });

  it("a varint beyond the safe integers fails the cursor", () => {
    const tooLong = new ByteCursor(new Uint8Array(9).fill(0xff), 0, 9);
    expect(tooLong.readVarint()).toBe(-1);
    expect(tooLong.failed).toBe(true);
    // 2^53 fits in eight bytes but is not a safe integer.
    const tooLarge = new ByteCursor(
      Uint8Array.from([0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10]),
      0,
      8,
    );
    expect(tooLarge.readVarint()).toBe(-1);
    expect(tooLarge.failed).toBe(true);
  });

  it("a byte read past the window fails the cursor", () => {
    const cursor = new ByteCursor(Uint8Array.from([7, 9]), 1, 2);
    expect(cursor.readByte()).toBe(9);
    expect(cursor.readByte()).toBe(-1);
    expect(cursor.failed).toBe(true);
  });
});
