import { expect, test } from "vitest";
import {
  formatVolumeId,
  incarnationOf,
  isIssuedVolumeId,
  volumeIdNonceBytes,
} from "../src/incarnation.ts";

const nonce = "0123456789ab";

test("ids the coordinator issues have the issued shape", () => {
  expect(nonce.length).toBe(2 * volumeIdNonceBytes);
  expect(isIssuedVolumeId(formatVolumeId(1, nonce))).toBe(true);
  expect(isIssuedVolumeId(formatVolumeId(36 ** 10 - 1, nonce))).toBe(true);
  // Before incarnations: the creation time in base 36, then the same nonce.
  expect(isIssuedVolumeId(`${(1_700_000_000_000).toString(36)}-${nonce}`)).toBe(true);
});

test("static names that fit the loose incarnation shape are not issued ids", () => {
  for (const name of ["vol", "vol-a", "test-vol", "1-data", "9-0123456789", "vol-0123456789ab-x"]) {
    expect(isIssuedVolumeId(name), name).toBe(false);
  }
  // The loose shape reads some of them as an incarnation all the same.
  expect(incarnationOf("vol-a")).toBeGreaterThan(0);
  expect(isIssuedVolumeId(`1-${nonce.toUpperCase()}`)).toBe(false);
  expect(isIssuedVolumeId(`-${nonce}`)).toBe(false);
});
