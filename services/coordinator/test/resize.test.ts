// The resize decision on its own: what a size asks of a volume's partitions.

import { ErrorCode, limits } from "@ballast/protocol";
import { describe, expect, test } from "vitest";
import { piecesOf, planResize } from "../src/resize.ts";

const mebibyte = 1024 * 1024;
/** A volume created at 2.5 MiB with 1 MiB partitions: the last is the half remainder. */
const volume = { sizeBytes: 2.5 * mebibyte, partitionBytes: mebibyte };
const partitions = [
  { partition: 0, partitionStart: 0, partitionBytes: mebibyte },
  { partition: 1, partitionStart: mebibyte, partitionBytes: mebibyte },
  { partition: 2, partitionStart: 2 * mebibyte, partitionBytes: 0.5 * mebibyte },
];

describe("planResize", () => {
  test("a grow appends full partitions after the last one; existing ranges never change", () => {
    expect(planResize(volume, partitions, { name: "v", sizeBytes: 4 * mebibyte })).toEqual({
      kind: "grow",
      sizeBytes: 4 * mebibyte,
      trim: undefined,
      added: [
        { partition: 3, partitionStart: 2.5 * mebibyte, partitionBytes: mebibyte },
        { partition: 4, partitionStart: 3.5 * mebibyte, partitionBytes: mebibyte },
      ],
    });
  });

  test("a grow within the last partition changes only the size, and trims what it reveals", () => {
    const grown = [
      ...partitions,
      { partition: 3, partitionStart: 2.5 * mebibyte, partitionBytes: mebibyte },
    ];
    const at = { ...volume, sizeBytes: 3 * mebibyte };
    expect(planResize(at, grown, { name: "v", sizeBytes: 3.5 * mebibyte })).toEqual({
      kind: "grow",
      sizeBytes: 3.5 * mebibyte,
      trim: { offset: 3 * mebibyte, length: 0.5 * mebibyte },
      added: [],
    });
  });

  test("a shrink is refused without allowShrink, and with it trims the tail and keeps partitions", () => {
    const asked = { name: "v", sizeBytes: mebibyte };
    expect(() => planResize(volume, partitions, asked)).toThrow(
      expect.objectContaining({
        code: ErrorCode.InvalidArgument,
        message: expect.stringContaining("pass allowShrink (--allow-shrink) to shrink"),
      }),
    );
    expect(planResize(volume, partitions, { ...asked, allowShrink: true })).toEqual({
      kind: "shrink",
      sizeBytes: mebibyte,
      trim: { offset: mebibyte, length: 1.5 * mebibyte },
    });
  });

  test("sizes are validated as at create, and the partition limit holds", () => {
    const refused = (sizeBytes: number, why: string) =>
      expect(() => planResize(volume, partitions, { name: "v", sizeBytes })).toThrow(
        expect.objectContaining({
          code: ErrorCode.InvalidArgument,
          message: expect.stringContaining(why),
        }),
      );
    refused(0, "positive multiple of 512");
    refused(3 * mebibyte + 100, "positive multiple of 512");
    refused(limits.volumeBytesMax + 512, `at most ${limits.volumeBytesMax}`);
    refused(
      (limits.partitionsPerVolumeMax + 1) * mebibyte,
      `over the limit of ${limits.partitionsPerVolumeMax}`,
    );
    // The refusal names how far the volume can grow with its partition size: 2.5 MiB
    // covered by three partitions, then one MiB for each partition still allowed.
    refused(
      limits.volumeBytesMax,
      `grow to at most ${2.5 * mebibyte + (limits.partitionsPerVolumeMax - 3) * mebibyte} bytes`,
    );
    expect(planResize(volume, partitions, { name: "v", sizeBytes: 2.5 * mebibyte })).toEqual({
      kind: "unchanged",
      sizeBytes: 2.5 * mebibyte,
    });
  });

  test("piecesOf cuts a range at partition boundaries", () => {
    expect(piecesOf(partitions, { offset: 0.5 * mebibyte, length: 2 * mebibyte })).toEqual([
      { partition: 0, offset: 0.5 * mebibyte, length: 0.5 * mebibyte },
      { partition: 1, offset: mebibyte, length: mebibyte },
      { partition: 2, offset: 2 * mebibyte, length: 0.5 * mebibyte },
    ]);
  });
});
