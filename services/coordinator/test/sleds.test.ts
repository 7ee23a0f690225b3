import { describe, expect, test } from "vitest";
import { SledBook, type SledRecord } from "../src/sleds.ts";

const outAfter = 60_000;

describe("sled records", () => {
  test("a sled silent for sledOutAfterMs is declared out, once", () => {
    const book = new SledBook(outAfter, 0);
    book.heard("sled-1", 1_000, 101_000);
    book.heard("sled-2", 1_000, 101_000);
    book.heard("sled-2", 50_000, 150_000);
    expect(book.tick(60_999, 160_999)).toEqual([]);
    expect(book.tick(61_000, 161_000)).toEqual(["sled-1"]);
    expect(book.tick(70_000, 170_000)).toEqual([]);
    expect(book.out()).toEqual(["sled-1"]);
    const sled1 = book.list(70_000).find((sled) => sled.id === "sled-1")!;
    expect(sled1).toMatchObject({ state: "out", since: 161_000, silentMs: 69_000 });
  });

  test("a sled heard again is in again", () => {
    const book = new SledBook(outAfter, 0);
    book.heard("sled-1", 1_000, 101_000);
    book.tick(61_000, 161_000);
    expect(book.out()).toEqual(["sled-1"]);
    expect(book.heard("sled-1", 62_000, 162_000)).toBe(true);
    expect(book.out()).toEqual([]);
    expect(book.list(62_000)[0]).toMatchObject({ state: "in", since: 162_000 });
    // and out again after another whole silence, not before
    expect(book.tick(121_999, 221_999)).toEqual([]);
    expect(book.tick(122_000, 222_000)).toEqual(["sled-1"]);
  });

  test("changes are handed out once for persisting, again if the write failed", () => {
    const book = new SledBook(outAfter, 0);
    book.heard("sled-1", 1_000, 101_000);
    expect(book.takeChanged().map((record) => record.state)).toEqual(["in"]);
    book.heard("sled-1", 2_000, 102_000);
    expect(book.takeChanged()).toEqual([]); // a heartbeat alone is not a change
    book.tick(62_000, 162_000);
    const [out] = book.takeChanged();
    expect(out).toMatchObject({ id: "sled-1", state: "out", firstSeenMs: 101_000 });
    book.unpersisted("sled-1");
    expect(book.takeChanged()).toHaveLength(1);
  });

  test("a new leader counts a loaded record's silence from its tenure start", () => {
    const records: SledRecord[] = [
      { id: "sled-1", firstSeenMs: 1, lastSeenMs: 2, state: "in", since: 1 },
      { id: "sled-2", firstSeenMs: 1, lastSeenMs: 2, state: "out", since: 2 },
    ];
    const tenureStart = 500_000;
    const book = new SledBook(outAfter, tenureStart, records);
    // A sled that died before this tenure stays out; one recorded in is not out yet.
    expect(book.out()).toEqual(["sled-2"]);
    expect(book.tick(tenureStart + outAfter - 1, 0)).toEqual([]);
    // A heartbeat heard before the tenure began counts for nothing.
    expect(book.heard("sled-2", tenureStart - 10, 0)).toBe(false);
    expect(book.heard("sled-1", tenureStart - 10, 0)).toBe(false);
    expect(book.tick(tenureStart + outAfter, 0)).toEqual(["sled-1"]);
    expect(book.out()).toEqual(["sled-1", "sled-2"]);
    // A sled out before this tenure and heard during it is in again.
    expect(book.heard("sled-2", tenureStart + outAfter + 5, 0)).toBe(true);
    expect(book.out()).toEqual(["sled-1"]);
  });

  test("a sled first heard in this tenure is in and counts from its heartbeat", () => {
    const book = new SledBook(outAfter, 1_000, []);
    expect(book.heard("sled-3", 2_000, 5)).toBe(true);
    expect(book.list(2_000)[0]).toMatchObject({ state: "in", firstSeenMs: 5, since: 5 });
    expect(book.tick(61_999, 0)).toEqual([]);
    expect(book.tick(62_000, 0)).toEqual(["sled-3"]);
  });
});

describe("a sled back on another data directory (unit)", () => {
  test("stays in service, marked refilling, until verified on that very directory", () => {
    const book = new SledBook(outAfter, 0);
    book.heard("sled-1", 1_000, 101_000, "a".repeat(32));
    book.heard("sled-1", 2_000, 102_000, "a".repeat(32));
    expect(book.refilling()).toEqual([]);
    book.takeChanged();
    // Restarted on a wiped directory, seconds later (long before it could be out).
    expect(book.heard("sled-1", 5_000, 105_000, "b".repeat(32))).toBe(true);
    expect(book.out()).toEqual([]);
    expect(book.refilling()).toEqual([{ sled: "sled-1", disk: "b".repeat(32), sinceMs: 105_000 }]);
    expect(book.list(5_000)[0]).toMatchObject({
      state: "in",
      disk: "b".repeat(32),
      refillingSince: 105_000,
    });
    expect(book.takeChanged()).toMatchObject([{ disk: "b".repeat(32), refillingSince: 105_000 }]);
    // Heard again from it: still refilling, nothing to persist.
    expect(book.heard("sled-1", 6_000, 106_000, "b".repeat(32))).toBe(false);
    expect(book.refilling()).toHaveLength(1);
    expect(book.takeChanged()).toEqual([]);
    // An audit of a directory it is no longer on verifies nothing.
    expect(book.verified("sled-1", "a".repeat(32))).toBe(false);
    expect(book.verified("sled-1", "b".repeat(32))).toBe(true);
    expect(book.refilling()).toEqual([]);
    expect(book.list(6_000)[0]).not.toHaveProperty("refillingSince");
    expect(book.takeChanged()).toHaveLength(1);
    expect(book.verified("sled-1", "b".repeat(32))).toBe(false);
  });

  test("back on another directory after it was declared out: in again, and refilling", () => {
    const book = new SledBook(outAfter, 0);
    book.heard("sled-1", 1_000, 101_000, "a".repeat(32));
    expect(book.tick(61_000, 161_000)).toEqual(["sled-1"]);
    expect(book.heard("sled-1", 62_000, 162_000, "c".repeat(32))).toBe(true);
    expect(book.out()).toEqual([]);
    expect(book.refilling()).toEqual([{ sled: "sled-1", disk: "c".repeat(32), sinceMs: 162_000 }]);
  });

  test("a record from before disk ids learns its disk without refilling; a loaded mark stays", () => {
    const loaded: SledRecord[] = [
      { id: "sled-1", firstSeenMs: 1, lastSeenMs: 1, state: "in", since: 1 },
      {
        id: "sled-2",
        firstSeenMs: 1,
        lastSeenMs: 1,
        state: "in",
        since: 1,
        disk: "d".repeat(32),
        refillingSince: 50,
      },
    ];
    const book = new SledBook(outAfter, 0, loaded);
    expect(book.heard("sled-1", 1_000, 101_000, "a".repeat(32))).toBe(false);
    expect(book.heard("sled-2", 1_000, 101_000, "d".repeat(32))).toBe(false);
    expect(book.refilling()).toEqual([{ sled: "sled-2", disk: "d".repeat(32), sinceMs: 50 }]);
    expect(book.takeChanged()).toMatchObject([{ id: "sled-1", disk: "a".repeat(32) }]);
  });
});
