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

describe("createEntry with a signal", () => {
  /** An AbortController whose signal counts the abort listeners added to it. */
  function countedController(): { controller: AbortController; listeners: () => number } {
    const controller = new AbortController();
    let added = 0;
    const add = controller.signal.addEventListener.bind(controller.signal);
    controller.signal.addEventListener = ((...args: Parameters<typeof add>) => {
      if (args[0] === "abort") added += 1;
      add(...args);
    }) as typeof controller.signal.addEventListener;
    return { controller, listeners: () => added };
  }

  it("adds one abort listener to a signal, however many entries share it", () => {
    const { controller, listeners } = countedController();
    for (let offset = 0; offset < 64 * 512; offset += 512) {
      const { entry, settled } = createEntry({
        kind: "trim",
        offset,
        length: 512,
        issuedAtMs: 0,
        signal: controller.signal,
      });
      entry.resolve();
      void settled;
    }

    expect(listeners()).toBe(1);
  });

  it("rejects the unsettled entries at the abort, leaves the settled ones, and refuses new ones", async () => {
    const controller = new AbortController();
    const make = (offset: number) =>
      createEntry({ kind: "trim", offset, length: 512, issuedAtMs: 0, signal: controller.signal });
    const done = make(0);
    const waiting = [make(512), make(1024)];
    done.entry.resolve();
    waiting[1]!.entry.resolve();
    controller.abort(new Error("gone"));
    const late = make(1536);
    // A settlement after the abort counts for nothing.
    waiting[0]!.entry.resolve();

    await expect(done.settled).resolves.toBeUndefined();
    await expect(waiting[0]!.settled).rejects.toThrow("gone");
    await expect(waiting[1]!.settled).resolves.toBeUndefined();
    await expect(late.settled).rejects.toThrow("gone");
    expect([done, ...waiting, late].map(({ entry }) => entry.settledEarly)).toEqual([
      true,
      true,
      true,
      true,
    ]);
  });
});
