// The journal's pure core: how appends are laid out in segments, which files a
// truncation or release deletes or cuts, and that every bad call is refused before it
// changes anything; each new segment's nonce seeds its records' checksums, and a segment
// of an older format version is never appended to.

import { describe, expect, test } from "vitest";
import {
  appendPayloadBytesMax,
  appendRecordsMax,
  formatVersion,
  formatVersionWithoutNonce,
  payloadBytesMax,
  recordHeaderBytes,
  runwayRetryAfterBytes,
  runwayStepFirstBytes,
  runwayStepMaxBytes,
  segmentHeaderBytes,
  segmentHeaderBytesWithoutNonce,
} from "../src/journal/constants.ts";
import { JournalUsageError } from "../src/journal/errors.ts";
import { decodeRecordAt, decodeSegmentHeader } from "../src/journal/format.ts";
import {
  coalesceWrites,
  type JournalRecord,
  type LayoutSegment,
  SegmentLayout,
  type SegmentWrite,
} from "../src/journal/layout.ts";

const H = segmentHeaderBytes;
/** A segment of this many bytes holds its header and four 50-byte records. */
const fourPerSegment = H + 4 * 50;

/** Nonces 1, 2, 3, … (as 8 little-endian bytes): distinct, and the same on every run. */
function countingNonces(): () => Uint8Array {
  let drawn = 0;
  return () => {
    const nonce = new Uint8Array(8);
    new DataView(nonce.buffer).setUint32(0, ++drawn, true);
    return nonce;
  };
}

function newLayout(segmentBytesMax: number, segments: LayoutSegment[] = [], runwayBytes = 0) {
  return new SegmentLayout(segmentBytesMax, segments, runwayBytes, countingNonces());
}

/** Records of `payloadBytes` each: with the default payloads a record takes 50 bytes. */
function records(
  firstOpNum: number,
  count: number,
  payloadBytes = 50 - recordHeaderBytes,
): JournalRecord[] {
  return Array.from({ length: count }, (_, index) => ({
    opNum: firstOpNum + index,
    payload: new Uint8Array(payloadBytes).fill(index),
  }));
}

/** A layout whose segments hold four 50-byte records each. */
function layoutOfFourPerSegment(recordCount: number, firstOpNum = 1): SegmentLayout {
  const layout = newLayout(fourPerSegment);
  if (recordCount > 0) layout.planAppend(records(firstOpNum, recordCount));
  return layout;
}

function summary(writes: SegmentWrite[]) {
  return writes.map((write) => ({
    firstOpNum: write.firstOpNum,
    create: write.create,
    position: write.position,
    bytes: write.buffers.reduce((sum, buffer) => sum + buffer.length, 0),
  }));
}

function state(layout: SegmentLayout) {
  const { firstOpNum, lastOpNum, bytes, segmentCount } = layout;
  return { firstOpNum, lastOpNum, bytes, segmentCount };
}

describe("appending", () => {
  test("fills a segment up to segmentBytesMax, then starts the next at the next op", () => {
    const layout = newLayout(fourPerSegment);
    const writes = layout.planAppend(records(1, 9));
    // A new segment's header goes out in a write of its own, before its records.
    expect(summary(writes)).toEqual([
      { firstOpNum: 1, create: true, position: 0, bytes: H },
      { firstOpNum: 1, create: false, position: H, bytes: 200 },
      { firstOpNum: 5, create: true, position: 0, bytes: H },
      { firstOpNum: 5, create: false, position: H, bytes: 200 },
      { firstOpNum: 9, create: true, position: 0, bytes: H },
      { firstOpNum: 9, create: false, position: H, bytes: 50 },
    ]);
    expect(state(layout)).toEqual({
      firstOpNum: 1,
      lastOpNum: 9,
      bytes: 3 * H + 9 * 50,
      segmentCount: 3,
    });
  });

  test("continues the last segment where the previous append ended", () => {
    const layout = layoutOfFourPerSegment(2);
    expect(summary(layout.planAppend(records(3, 1)))).toEqual([
      { firstOpNum: 1, create: false, position: H + 100, bytes: 50 },
    ]);
  });

  test("gives a record larger than segmentBytesMax a segment of its own", () => {
    const layout = newLayout(512);
    layout.planAppend(records(1, 1, 10));
    const writes = layout.planAppend([{ opNum: 2, payload: new Uint8Array(1000) }]);
    expect(summary(writes)).toEqual([
      { firstOpNum: 2, create: true, position: 0, bytes: H },
      { firstOpNum: 2, create: false, position: H, bytes: recordHeaderBytes + 1000 },
    ]);
    layout.planAppend(records(3, 1, 10));
    expect(layout.segmentCount).toBe(3);
  });

  test("accepts any first op when empty, then only the next op", () => {
    const layout = newLayout(fourPerSegment);
    layout.planAppend(records(1_000_000, 2));
    expect(state(layout)).toMatchObject({ firstOpNum: 1_000_000, lastOpNum: 1_000_001 });
    expect(() => layout.planAppend(records(1_000_003, 1))).toThrow(
      "cannot append op 1000003: the journal's last op is 1000001, so the next op must be 1000002",
    );
  });

  test.each([
    [
      "a gap",
      records(7, 1),
      "cannot append op 7: the journal's last op is 5, so the next op must be 6",
    ],
    [
      "a duplicate",
      records(5, 1),
      "cannot append op 5: the journal's last op is 5, so the next op must be 6",
    ],
    [
      "a step back",
      records(2, 2),
      "cannot append op 2: the journal's last op is 5, so the next op must be 6",
    ],
    [
      "a gap inside the call",
      [...records(6, 1), ...records(8, 1)],
      "cannot append op 8: it follows op 6 in the same call, so the next op must be 7",
    ],
    ["no records", [], "cannot append: no records were given"],
    [
      "a negative op",
      [{ opNum: -1, payload: new Uint8Array(1) }],
      "cannot append record 0 of the call: its op number -1 is not a non-negative safe integer",
    ],
    [
      "a fractional op",
      [{ opNum: 6.5, payload: new Uint8Array(1) }],
      "its op number 6.5 is not a non-negative safe integer",
    ],
    [
      "an op past the safe integers",
      [{ opNum: 2 ** 53, payload: new Uint8Array(1) }],
      `its op number ${2 ** 53} is not a non-negative safe integer`,
    ],
    [
      "a payload that is not bytes",
      [{ opNum: 6, payload: "text" as unknown as Uint8Array }],
      "cannot append op 6: its payload is not a Uint8Array",
    ],
    [
      "a payload over the limit",
      [{ opNum: 6, payload: new Uint8Array(payloadBytesMax + 1) }],
      `cannot append op 6: its payload of ${payloadBytesMax + 1} bytes is over the limit of ${payloadBytesMax}`,
    ],
    [
      "too many records",
      records(6, appendRecordsMax + 1, 0),
      `cannot append ${appendRecordsMax + 1} records in one call: the limit is ${appendRecordsMax}`,
    ],
    [
      "too many bytes",
      records(6, 8, payloadBytesMax),
      `cannot append ${8 * payloadBytesMax} payload bytes in one call: the limit is ${appendPayloadBytesMax}`,
    ],
  ])("refuses %s and changes nothing", (_, bad, message) => {
    const layout = layoutOfFourPerSegment(5);
    const before = state(layout);
    expect(() => layout.planAppend(bad)).toThrow(JournalUsageError);
    expect(() => layout.planAppend(bad)).toThrow(message);
    expect(state(layout)).toEqual(before);
    layout.planAppend(records(6, 1)); // and the next good append still fits
    expect(layout.lastOpNum).toBe(6);
  });

  test("refuses records that are not an array", () => {
    const layout = newLayout(fourPerSegment);
    expect(() => layout.planAppend(undefined as unknown as JournalRecord[])).toThrow(
      "cannot append: the records are a undefined, not an array",
    );
  });
});

describe("coalescing the writes of a group commit", () => {
  test("joins writes that continue each other in a segment, and nothing else", () => {
    const layout = newLayout(fourPerSegment);
    const writes = [
      ...layout.planAppend(records(1, 2)),
      ...layout.planAppend(records(3, 1)),
      ...layout.planAppend(records(4, 3)),
    ];
    // A new segment's header stays alone: it is synced before its records are written.
    expect(summary(coalesceWrites(writes))).toEqual([
      { firstOpNum: 1, create: true, position: 0, bytes: H },
      { firstOpNum: 1, create: false, position: H, bytes: 4 * 50 },
      { firstOpNum: 5, create: true, position: 0, bytes: H },
      { firstOpNum: 5, create: false, position: H, bytes: 2 * 50 },
    ]);
    // The input is left as it was.
    expect(summary(writes).map((write) => write.bytes)).toEqual([H, 100, 50, 50, H, 100]);
  });

  test("keeps writes apart that do not meet", () => {
    const buffer = new Uint8Array(10);
    const writes: SegmentWrite[] = [
      { firstOpNum: 1, create: false, position: 100, buffers: [buffer] },
      { firstOpNum: 1, create: false, position: 200, buffers: [buffer] },
    ];
    expect(coalesceWrites(writes)).toHaveLength(2);
  });
});

describe("truncating", () => {
  test("deletes later segments newest first and cuts the one that keeps the new last op", () => {
    const layout = layoutOfFourPerSegment(14); // segments 1, 5, 9, 13
    const plan = layout.planTruncateAfter(6);
    expect(plan).toEqual({ deletions: [13, 9], cut: { firstOpNum: 5, bytes: H + 2 * 50 } });
    expect(state(layout)).toEqual({
      firstOpNum: 1,
      lastOpNum: 6,
      bytes: fourPerSegment + H + 100,
      segmentCount: 2,
    });
    expect(summary(layout.planAppend(records(7, 1)))).toEqual([
      { firstOpNum: 5, create: false, position: H + 100, bytes: 50 },
    ]);
  });

  test("deletes a segment whose first op is dropped rather than cutting it to its header", () => {
    const layout = layoutOfFourPerSegment(10); // segments 1, 5, 9
    expect(layout.planTruncateAfter(4)).toEqual({ deletions: [9, 5], cut: undefined });
    expect(state(layout)).toEqual({
      firstOpNum: 1,
      lastOpNum: 4,
      bytes: fourPerSegment,
      segmentCount: 1,
    });
  });

  test("after the op before the first empties the journal, which then takes any op", () => {
    const layout = layoutOfFourPerSegment(6, 11);
    expect(layout.planTruncateAfter(10)).toEqual({ deletions: [15, 11], cut: undefined });
    expect(state(layout)).toEqual({
      firstOpNum: undefined,
      lastOpNum: undefined,
      bytes: 0,
      segmentCount: 0,
    });
    layout.planAppend(records(3, 1));
    expect(layout.firstOpNum).toBe(3);
  });

  test("at or past the last op, or of an empty journal, changes nothing", () => {
    const layout = layoutOfFourPerSegment(6);
    expect(layout.planTruncateAfter(6)).toEqual({ deletions: [], cut: undefined });
    expect(layout.planTruncateAfter(100)).toEqual({ deletions: [], cut: undefined });
    expect(layout.lastOpNum).toBe(6);
    expect(newLayout(fourPerSegment).planTruncateAfter(5)).toEqual({
      deletions: [],
      cut: undefined,
    });
  });

  test("refuses an op below the one before the first stored op", () => {
    const layout = layoutOfFourPerSegment(3, 10);
    expect(() => layout.planTruncateAfter(8)).toThrow(
      "cannot truncate after op 8: the journal's first op is 10, so ops 9 to 9 are not stored here to be replaced",
    );
    expect(() => layout.planTruncateAfter(-1)).toThrow("it is not a non-negative safe integer");
    expect(layout.lastOpNum).toBe(12);
  });

  test("refuses to drop released ops, even those still stored in a shared segment", () => {
    const layout = layoutOfFourPerSegment(10); // segments 1, 5, 9
    expect(layout.planReleaseThrough(6)).toEqual({ deletions: [1] });
    expect(layout.firstOpNum).toBe(5);
    expect(() => layout.planTruncateAfter(5)).toThrow(
      "cannot truncate after op 5: ops through 6 are released (flushed and checkpointed), so they must not be dropped",
    );
    expect(layout.planTruncateAfter(6)).toEqual({
      deletions: [9],
      cut: { firstOpNum: 5, bytes: H + 2 * 50 },
    });
  });
});

describe("releasing", () => {
  test("deletes, oldest first, exactly the segments whose every op is at or below the op", () => {
    const layout = layoutOfFourPerSegment(14); // segments 1, 5, 9, 13
    expect(layout.planReleaseThrough(3)).toEqual({ deletions: [] });
    expect(layout.planReleaseThrough(8)).toEqual({ deletions: [1, 5] });
    expect(state(layout)).toEqual({
      firstOpNum: 9,
      lastOpNum: 14,
      bytes: fourPerSegment + H + 100,
      segmentCount: 2,
    });
  });

  test("keeps the last segment, so the journal still knows the next op", () => {
    const layout = layoutOfFourPerSegment(6);
    expect(layout.planReleaseThrough(1000)).toEqual({ deletions: [1] });
    expect(state(layout)).toMatchObject({ firstOpNum: 5, lastOpNum: 6, segmentCount: 1 });
    expect(() => layout.planAppend(records(8, 1))).toThrow("so the next op must be 7");
  });

  test("refuses an op that is not a non-negative safe integer", () => {
    const layout = layoutOfFourPerSegment(6);
    expect(() => layout.planReleaseThrough(Number.NaN)).toThrow(
      "cannot release through op NaN: it is not a non-negative safe integer",
    );
    expect(layout.segmentCount).toBe(2);
  });
});

describe("the runway", () => {
  const kibibyte = 1024;

  test("grows in steps that double up to the limit, each from the old end, never past segmentBytesMax", () => {
    const segmentBytesMax = 4 * runwayStepMaxBytes + 1000;
    const layout = newLayout(segmentBytesMax);
    const extensions: { position: number; bytes: number }[] = [];
    let end = 0;
    let opNum = 1;
    // One 32 KiB record at a time, each call asking for the runway due, until a roll.
    for (; layout.segmentCount <= 1; opNum++) {
      const writes = layout.planAppend(records(opNum, 1, 32 * kibibyte));
      if (layout.segmentCount > 1) {
        // The roll cuts the runway off the old segment, at its last record's end.
        const create = writes.find((write) => write.create)!;
        expect(create.cutRunway).toEqual({ firstOpNum: 1, bytes: expect.any(Number) });
        expect(create.cutRunway!.bytes).toBeLessThan(end);
        break;
      }
      // No record is written past the runway once one exists: each lands in zeros.
      const write = writes.at(-1)!;
      const recordsEnd = write.position + write.buffers.reduce((sum, b) => sum + b.length, 0);
      if (end > 0) expect(recordsEnd).toBeLessThanOrEqual(end);
      const extension = layout.planRunway();
      if (extension === undefined) continue;
      expect(extension.firstOpNum).toBe(1);
      expect(extension.position).toBe(Math.max(end, recordsEnd));
      end = extension.position + extension.bytes;
      expect(end).toBeLessThanOrEqual(segmentBytesMax);
      expect(layout.bytes).toBe(end);
      extensions.push(extension);
    }
    const steps = extensions.map((extension) => extension.bytes);
    const doubling = [1, 2, 4, 8, 16].map((factor) => factor * runwayStepFirstBytes);
    expect(steps.slice(0, 5)).toEqual(doubling);
    for (const step of steps.slice(5, -1)) expect(step).toBe(runwayStepMaxBytes);
    // The last one stops at segmentBytesMax.
    expect(end).toBe(segmentBytesMax);
    // The new segment's first record is written where nothing is yet: it gets its own.
    expect(layout.planRunway()).toMatchObject({
      firstOpNum: opNum,
      bytes: 16 * runwayStepFirstBytes,
    });
  });

  test("is asked for only when low, and a truncation or a deletion of the last segment drops it", () => {
    const layout = newLayout(fourPerSegment);
    const oneRecord = H + 50;
    layout.planAppend(records(1, 1));
    // The segment's creation started the first runway; each drop of it starts another.
    expect(layout.planRunway()).toEqual({
      firstOpNum: 1,
      position: oneRecord,
      bytes: fourPerSegment - oneRecord,
      runwayGeneration: 1,
    });
    expect(layout.bytes).toBe(fourPerSegment);
    // Runway left (100 bytes) is below a quarter of the next step, but the segment is full.
    layout.planAppend(records(2, 1));
    expect(layout.planRunway()).toBeUndefined();
    expect(layout.bytes).toBe(fourPerSegment);
    expect(layout.planTruncateAfter(1)).toEqual({
      deletions: [],
      cut: { firstOpNum: 1, bytes: oneRecord },
    });
    expect(layout.bytes).toBe(oneRecord);
    layout.planAppend(records(2, 4)); // ops 2 to 4 fill segment 1, op 5 starts segment 5
    expect(layout.planRunway()).toEqual({
      firstOpNum: 5,
      position: oneRecord,
      bytes: fourPerSegment - oneRecord,
      runwayGeneration: 3,
    });
    expect(layout.bytes).toBe(2 * fourPerSegment);
    const truncation = layout.planTruncateAfter(4);
    expect(truncation).toEqual({ deletions: [5], cut: undefined });
    expect(layout.bytes).toBe(fourPerSegment);
    // A runway recovery found is kept, and counted.
    const recovered = newLayout(
      fourPerSegment,
      [{ firstOpNum: 1, formatVersion, recordSeed: 7, recordOffsets: [H], bytes: oneRecord }],
      5000,
    );
    expect(recovered.bytes).toBe(5000 + oneRecord);
    expect(recovered.planRunway()).toBeUndefined();
  });

  test("an extension withdrawn (refused for want of space) leaves the runway it found, and pauses the next", () => {
    const layout = newLayout(4 * runwayStepMaxBytes);
    layout.planAppend(records(1, 1));
    const recordsEnd = H + 50;
    const extension = layout.planRunway()!;
    expect(extension.bytes).toBe(runwayStepFirstBytes);
    // Records planned after the extension, before it ran: they land from the old end on.
    layout.planAppend(records(2, 2));
    layout.withdrawRunway(extension);
    // The file was cut back to the extension's position: the records past it extend it.
    expect(layout.bytes).toBe(recordsEnd + 2 * 50);
    // Paused until runwayRetryAfterBytes of records have been planned since.
    expect(layout.planRunway()).toBeUndefined();
    const recordBytes = 32 * kibibyte;
    const count = Math.ceil(runwayRetryAfterBytes / recordBytes);
    layout.planAppend(records(4, count - 1, recordBytes - recordHeaderBytes));
    expect(layout.planRunway()).toBeUndefined();
    layout.planAppend(records(3 + count, 1, recordBytes - recordHeaderBytes));
    // From the first step again.
    expect(layout.planRunway()).toMatchObject({ bytes: runwayStepFirstBytes });
  });

  test("an extension withdrawn after a roll or a truncation has no runway left to take back", () => {
    const layout = newLayout(fourPerSegment);
    layout.planAppend(records(1, 1));
    const extension = layout.planRunway()!;
    layout.planAppend(records(2, 4)); // op 5 starts a new segment: the old runway is cut
    const bytes = layout.bytes;
    layout.withdrawRunway(extension);
    expect(layout.bytes).toBe(bytes);
    // The refusal is news of the disk: the new segment waits too, until the next one.
    expect(layout.planRunway()).toBeUndefined();
    layout.planAppend(records(6, 4)); // ops 6 to 8 fill segment 5, op 9 starts segment 9
    expect(layout.planRunway()).toMatchObject({ firstOpNum: 9 });

    const truncated = newLayout(fourPerSegment);
    truncated.planAppend(records(1, 2));
    const dropped = truncated.planRunway()!;
    truncated.planTruncateAfter(1);
    const cutBytes = truncated.bytes;
    truncated.withdrawRunway(dropped);
    expect(truncated.bytes).toBe(cutBytes);
  });
});

/** A segment of `count` 50-byte records as recovery describes it, of either version read. */
function segment(firstOpNum: number, count: number, version = formatVersion): LayoutSegment {
  const headerBytes = version === formatVersion ? H : segmentHeaderBytesWithoutNonce;
  return {
    firstOpNum,
    formatVersion: version,
    recordSeed: version === formatVersion ? 0x1234_5678 : 0,
    recordOffsets: Array.from({ length: count }, (_, index) => headerBytes + index * 50),
    bytes: headerBytes + count * 50,
  };
}

describe("segment nonces and format versions", () => {
  test("each new segment draws a nonce, and its records check out with that nonce alone", () => {
    const layout = newLayout(fourPerSegment);
    const writes = layout.planAppend(records(1, 5));
    const files = new Map<number, Uint8Array>();
    for (const write of writes) {
      const before = files.get(write.firstOpNum) ?? new Uint8Array(0);
      files.set(write.firstOpNum, Buffer.concat([before, ...write.buffers]));
    }
    const seeds = [1, 5].map((firstOpNum) => {
      const header = decodeSegmentHeader(files.get(firstOpNum)!);
      if (header.kind !== "valid") throw new Error(header.reason);
      expect(header.value).toMatchObject({ formatVersion, firstOpNum, bytes: H });
      return header.value.recordSeed;
    });
    expect(seeds[0]).not.toBe(seeds[1]);
    const first = files.get(1)!;
    expect(decodeRecordAt(first, H, seeds[0]!).kind).toBe("valid");
    // The same bytes in the other segment, or with version 2's rules, are not a record.
    expect(decodeRecordAt(first, H, seeds[1]!).kind).toBe("mismatch");
    expect(decodeRecordAt(first, H, 0).kind).toBe("mismatch");
  });

  test("a segment of the older version takes no records and no runway: the next append starts a new one", () => {
    const old = segment(1, 2, formatVersionWithoutNonce);
    const layout = newLayout(fourPerSegment, [old], 60);
    expect(layout.planRunway()).toBeUndefined();
    const writes = layout.planAppend(records(3, 1));
    // The old segment's runway is cut off before the new segment is created.
    expect(writes[0]?.cutRunway).toEqual({ firstOpNum: 1, bytes: old.bytes });
    expect(summary(writes)).toEqual([
      { firstOpNum: 3, create: true, position: 0, bytes: H },
      { firstOpNum: 3, create: false, position: H, bytes: 50 },
    ]);
    expect(state(layout)).toEqual({
      firstOpNum: 1,
      lastOpNum: 3,
      bytes: old.bytes + H + 50,
      segmentCount: 2,
    });
    // And a truncation back into the old segment leaves it as the last: the same again.
    expect(layout.planTruncateAfter(2)).toEqual({ deletions: [3], cut: undefined });
    const again = summary(layout.planAppend(records(3, 1)));
    expect(again[0]).toMatchObject({ firstOpNum: 3, create: true });
  });
});

test("a layout from segments that break its invariants is refused by an assertion", () => {
  expect(() => newLayout(fourPerSegment, [segment(1, 2), segment(4, 1)])).toThrow(
    "segment 4 does not follow op 3",
  );
  expect(() => newLayout(fourPerSegment, [segment(1, 0)])).toThrow("segment 1 holds no records");
  expect(() => newLayout(fourPerSegment, [segment(1, 2), segment(3, 1)])).not.toThrow();
  const old = formatVersionWithoutNonce;
  expect(() => newLayout(fourPerSegment, [segment(1, 2, old), segment(3, 1)])).not.toThrow();
  expect(() => newLayout(fourPerSegment, [segment(1, 2), segment(3, 1, old)])).toThrow(
    `segment 3 has format version ${old} after ${formatVersion}`,
  );
});
