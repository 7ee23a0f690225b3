// The batching rule: the longest prefix of pending entries that fits one request; all
// pending flushes together; an isolated entry alone.

import { describe, expect, it } from "vitest";
import { createEntry, type Entry, type RequestKind, takeBatch } from "../src/batch.ts";

const limitsSmall = { requestEntriesMax: 3, requestDataBytesMax: 2048 };

function entry(kind: RequestKind, offset: number, length: number, isolated = false): Entry {
  const created = createEntry({
    kind,
    offset,
    length,
    issuedAtMs: 0,
    ...(kind === "write" || kind === "read" ? { buffer: new Uint8Array(length) } : {}),
  });
  created.entry.isolated = isolated;
  // Entries settled by no one: keep their rejections from going unhandled.
  created.settled.catch(() => undefined);
  return created.entry;
}

const offsetsOf = (entries: readonly Entry[]) => entries.map((item) => item.offset);

describe("takeBatch", () => {
  it("takes entries in issue order up to the entry limit", () => {
    const pending = [0, 512, 1024, 1536, 2048].map((offset) => entry("trim", offset, 512));

    expect(offsetsOf(takeBatch(pending, limitsSmall))).toEqual([0, 512, 1024]);
    expect(offsetsOf(pending)).toEqual([1536, 2048]);
  });

  it("stops before the entry that would pass the byte limit, without skipping ahead", () => {
    const pending = [
      entry("write", 0, 1024),
      entry("write", 1024, 1536),
      entry("write", 4096, 512),
    ];

    expect(offsetsOf(takeBatch(pending, limitsSmall))).toEqual([0]);
    expect(offsetsOf(takeBatch(pending, limitsSmall))).toEqual([1024, 4096]);
    expect(pending).toEqual([]);
  });

  it("counts data bytes for reads too, but not for trims and write-zeroes", () => {
    const reads = [entry("read", 0, 1536), entry("read", 1536, 1024)];
    const zeroes = [entry("write-zeroes", 0, 1_048_576), entry("write-zeroes", 1_048_576, 4096)];

    expect(takeBatch(reads, limitsSmall).length).toBe(1);
    expect(takeBatch(zeroes, limitsSmall).length).toBe(2);
  });

  it("sends an isolated entry alone, and stops a batch before one", () => {
    const pending = [
      entry("read", 0, 512),
      entry("read", 512, 512, true),
      entry("read", 1024, 512),
    ];

    expect(offsetsOf(takeBatch(pending, limitsSmall))).toEqual([0]);
    expect(offsetsOf(takeBatch(pending, limitsSmall))).toEqual([512]);
    expect(offsetsOf(takeBatch(pending, limitsSmall))).toEqual([1024]);
  });

  it("puts every pending flush in one batch, whatever the entry limit", () => {
    const pending = Array.from({ length: 5 }, () => entry("flush", 0, 0));

    expect(takeBatch(pending, limitsSmall).length).toBe(5);
    expect(pending).toEqual([]);
  });
});
