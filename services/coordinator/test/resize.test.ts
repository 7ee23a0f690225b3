// The resize decision on its own: what a size asks of a volume's partitions.

import { ErrorCode, limits } from "@ballast/protocol";
import { describe, expect, test } from "vitest";
import {
  finishShrinkPlan,
  limitChanges,
  piecesOf,
  planResize,
  servedBytesOf,
  shrinkingOf,
  unenforcedEnds,
} from "../src/resize.ts";

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
      lowerFirst: [],
      trim: undefined,
      limits: [],
      added: [
        { partition: 3, partitionStart: 2.5 * mebibyte, partitionBytes: mebibyte },
        // It reaches past the size: its primary serves only the half inside.
        {
          partition: 4,
          partitionStart: 3.5 * mebibyte,
          partitionBytes: mebibyte,
          servedBytes: 0.5 * mebibyte,
        },
      ],
    });
  });

  test("a grow within the last partition adds nothing, trims what it reveals, and raises its served bytes", () => {
    const grown = [
      ...partitions,
      {
        partition: 3,
        partitionStart: 2.5 * mebibyte,
        partitionBytes: mebibyte,
        servedBytes: 0.5 * mebibyte,
      },
    ];
    const at = { ...volume, sizeBytes: 3 * mebibyte };
    expect(planResize(at, grown, { name: "v", sizeBytes: 3.5 * mebibyte })).toEqual({
      kind: "grow",
      sizeBytes: 3.5 * mebibyte,
      lowerFirst: [],
      trim: { offset: 3 * mebibyte, length: 0.5 * mebibyte },
      limits: [{ partition: 3, servedBytes: mebibyte }],
      added: [],
    });
    // Added before served bytes (no field: served whole, past the size): lowered to the
    // size before the trim, then raised, as any value past the present size is.
    const whole = { partition: 3, partitionStart: 2.5 * mebibyte, partitionBytes: mebibyte };
    expect(
      planResize(at, [...partitions, whole], { name: "v", sizeBytes: 3.5 * mebibyte }),
    ).toMatchObject({
      lowerFirst: [{ partition: 3, servedBytes: 0.5 * mebibyte }],
      limits: [{ partition: 3, servedBytes: mebibyte }],
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
      // Both partitions past the new end serve nothing from now on.
      limits: [
        { partition: 1, servedBytes: 0 },
        { partition: 2, servedBytes: 0 },
      ],
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
      limits: [],
    });
  });

  test("a shrink inside a partition lowers its served bytes to the new end, and every partition after it to none", () => {
    const plan = planResize(volume, partitions, {
      name: "v",
      sizeBytes: 1.5 * mebibyte,
      allowShrink: true,
    });
    expect(plan).toEqual({
      kind: "shrink",
      sizeBytes: 1.5 * mebibyte,
      trim: { offset: 1.5 * mebibyte, length: mebibyte },
      limits: [
        { partition: 1, servedBytes: 0.5 * mebibyte },
        { partition: 2, servedBytes: 0 },
      ],
    });
  });

  test("a grow raises the served bytes a shrink lowered, and only those", () => {
    const shrunk = [
      partitions[0]!,
      { ...partitions[1]!, servedBytes: 0.5 * mebibyte },
      { ...partitions[2]!, servedBytes: 0 },
    ];
    const at = { ...volume, sizeBytes: 1.5 * mebibyte };
    expect(planResize(at, shrunk, { name: "v", sizeBytes: 2.25 * mebibyte })).toEqual({
      kind: "grow",
      sizeBytes: 2.25 * mebibyte,
      lowerFirst: [],
      trim: { offset: 1.5 * mebibyte, length: 0.75 * mebibyte },
      limits: [
        { partition: 1, servedBytes: mebibyte },
        { partition: 2, servedBytes: 0.25 * mebibyte },
      ],
      added: [],
    });
  });

  test("a grow first lowers what a failed grow left raised past the size, then trims, then raises", () => {
    // At 1.5 MiB, but a grow to 2.5 MiB raised both tail partitions and then failed.
    const raised = [
      partitions[0]!,
      { ...partitions[1]!, servedBytes: mebibyte },
      { ...partitions[2]!, servedBytes: 0.5 * mebibyte },
    ];
    const at = { ...volume, sizeBytes: 1.5 * mebibyte };
    expect(planResize(at, raised, { name: "v", sizeBytes: 2.5 * mebibyte })).toEqual({
      kind: "grow",
      sizeBytes: 2.5 * mebibyte,
      lowerFirst: [
        { partition: 1, servedBytes: 0.5 * mebibyte },
        { partition: 2, servedBytes: 0 },
      ],
      trim: { offset: 1.5 * mebibyte, length: mebibyte },
      limits: [
        { partition: 1, servedBytes: mebibyte },
        { partition: 2, servedBytes: 0.5 * mebibyte },
      ],
      added: [],
    });
  });

  test("records from before served bytes count as whole: a resize to the same size lowers those past the end", () => {
    // Shrunk to 1 MiB before the field existed: partitions 1 and 2 still serve all.
    const at = { ...volume, sizeBytes: mebibyte };
    expect(planResize(at, partitions, { name: "v", sizeBytes: mebibyte })).toEqual({
      kind: "unchanged",
      sizeBytes: mebibyte,
      limits: [
        { partition: 1, servedBytes: 0 },
        { partition: 2, servedBytes: 0 },
      ],
    });
  });

  test("servedBytesOf and limitChanges", () => {
    const partition = { partitionStart: mebibyte, partitionBytes: mebibyte };
    expect(servedBytesOf(partition, 0.5 * mebibyte)).toBe(0);
    expect(servedBytesOf(partition, mebibyte)).toBe(0);
    expect(servedBytesOf(partition, 1.25 * mebibyte)).toBe(0.25 * mebibyte);
    expect(servedBytesOf(partition, 2 * mebibyte)).toBe(mebibyte);
    expect(servedBytesOf(partition, 9 * mebibyte)).toBe(mebibyte);
    // A value equal to the whole partition, written or absent, is no change.
    expect(
      limitChanges(
        [
          { partition: 0, partitionStart: 0, partitionBytes: mebibyte, servedBytes: mebibyte },
          { ...partitions[1]!, servedBytes: 0 },
        ],
        2 * mebibyte,
      ),
    ).toEqual([{ partition: 1, servedBytes: mebibyte }]);
  });

  test("piecesOf cuts a range at partition boundaries", () => {
    expect(piecesOf(partitions, { offset: 0.5 * mebibyte, length: 2 * mebibyte })).toEqual([
      { partition: 0, offset: 0.5 * mebibyte, length: 0.5 * mebibyte },
      { partition: 1, offset: mebibyte, length: mebibyte },
      { partition: 2, offset: 2 * mebibyte, length: 0.5 * mebibyte },
    ]);
  });
});

describe("a shrink begun", () => {
  test("means something only below the size; finishing lowers what is left and trims the whole tail", () => {
    expect(shrinkingOf({ sizeBytes: 2 * mebibyte })).toBeUndefined();
    // A mark an older writer left behind at or past the size means nothing.
    expect(shrinkingOf({ sizeBytes: 2 * mebibyte, shrinkingTo: 2 * mebibyte })).toBeUndefined();
    expect(
      shrinkingOf({ sizeBytes: 2 * mebibyte, shrinkingTo: mebibyte, shrinkingFrom: 2 * mebibyte }),
    ).toBe(mebibyte);
    // A mark an older coordinator carried through its grow from 2 MiB to 3 MiB: the tail
    // it added may hold acknowledged writes, never to be trimmed (review-diff19 D4).
    const grown = { sizeBytes: 3 * mebibyte, shrinkingTo: mebibyte, shrinkingFrom: 2 * mebibyte };
    expect(shrinkingOf(grown)).toBeUndefined();
    expect(finishShrinkPlan(grown, partitions)).toBeUndefined();
    expect(finishShrinkPlan({ sizeBytes: 2.5 * mebibyte }, partitions)).toBeUndefined();
    // Partition 1 lowered already; partition 2 not yet.
    const halfway = [
      partitions[0]!,
      { ...partitions[1]!, servedBytes: 0.5 * mebibyte },
      partitions[2]!,
    ];
    expect(
      finishShrinkPlan(
        { sizeBytes: 2.5 * mebibyte, shrinkingTo: 1.5 * mebibyte, shrinkingFrom: 2.5 * mebibyte },
        halfway,
      ),
    ).toEqual({
      kind: "shrink",
      sizeBytes: 1.5 * mebibyte,
      trim: { offset: 1.5 * mebibyte, length: mebibyte },
      limits: [{ partition: 2, servedBytes: 0 }],
    });
  });

  test("a shrink waits for every voter that reported without enforcing ends, and every primary not heard", () => {
    const records = [
      { primary: "head-1", secondaries: ["head-2"] },
      { primary: "head-2", secondaries: ["head-3"] },
      { primary: "head-4", secondaries: ["head-5"] },
    ];
    const reported = new Map([
      ["head-1", true],
      ["head-2", true],
      ["head-3", false],
    ]);
    // head-5 (a secondary) not heard: not named; head-4 (a primary) not heard: named.
    expect(unenforcedEnds(records, (node) => reported.get(node))).toEqual([
      { node: "head-3", why: "runs a head node that does not enforce volume ends" },
      { node: "head-4", why: "has not reported to this coordinator yet" },
    ]);
    reported.set("head-3", true);
    reported.set("head-4", true);
    expect(unenforcedEnds(records, (node) => reported.get(node))).toEqual([]);
  });
});
