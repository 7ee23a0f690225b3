// The catalogue watch that lets an idle leader skip re-reading the catalogue.

import { describe, expect, it } from "vitest";
import {
  CatalogueChanges,
  type KeyWatch,
  PointerChanges,
  pointerMarkKey,
  type Watch,
} from "../src/catalogue-changes.ts";

/** A watch whose changes the test pushes, and ends or fails at will. */
class FakeWatches {
  readonly open = new Map<string, { push(): void; end(): void }>();
  fail = false;

  readonly watch: Watch = async ({ key }) => {
    if (this.fail) throw new Error("no stream");
    const waiting: ((result: IteratorResult<unknown>) => void)[] = [];
    let pending = 0;
    let ended = false;
    const end = () => {
      ended = true;
      for (const resolve of waiting.splice(0)) resolve({ done: true, value: undefined });
      this.open.delete(key);
    };
    this.open.set(key, {
      push: () => {
        const resolve = waiting.shift();
        if (resolve === undefined) pending++;
        else resolve({ done: false, value: {} });
      },
      end,
    });
    return {
      stop: end,
      [Symbol.asyncIterator]: () => ({
        next: () => {
          if (pending > 0) {
            pending--;
            return Promise.resolve({ done: false, value: {} });
          }
          if (ended) return Promise.resolve({ done: true, value: undefined });
          return new Promise<IteratorResult<unknown>>((resolve) => waiting.push(resolve));
        },
      }),
    };
  };
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 5));
const silent = { warn: () => undefined };

describe("CatalogueChanges", () => {
  it("moves on every change to a volume or partition record, and not otherwise", async () => {
    const watches = new FakeWatches();
    const changes = new CatalogueChanges(watches.watch, silent, 1);
    expect(changes.version()).toBeUndefined();
    changes.start();
    await settle();
    expect([...watches.open.keys()].sort()).toEqual(["partition.>", "volume.>"]);
    const idle = changes.version();
    expect(idle).toBeDefined();
    await settle();
    expect(changes.version()).toBe(idle);
    watches.open.get("partition.>")?.push();
    await settle();
    expect(changes.version()).not.toBe(idle);
    const after = changes.version();
    watches.open.get("volume.>")?.push();
    await settle();
    expect(changes.version()).not.toBe(after);
    changes.close();
  });

  it("is undefined while a watch is down, and counts a change once it is back", async () => {
    const watches = new FakeWatches();
    const changes = new CatalogueChanges(watches.watch, silent, 1);
    changes.start();
    await settle();
    const before = changes.version();
    watches.fail = true;
    watches.open.get("volume.>")?.end();
    await settle();
    expect(changes.version()).toBeUndefined();
    watches.fail = false;
    await settle();
    await settle();
    expect(changes.version()).toBeDefined();
    expect(changes.version()).not.toBe(before);
    changes.close();
    await settle();
    expect(watches.open.size).toBe(0);
  });
});

/**
 * A store whose writes go, in order, to one watch of the `checkpoint.>` keys; deliveries
 * can be held back (a watch running late), and the watch ended.
 */
class FakePointerStore {
  revision = 0;
  readonly marks = new Map<string, number>();
  held = false;
  private queue: { key: string; revision: number }[] = [];
  private waiting: ((result: IteratorResult<{ key: string; revision: number }>) => void)[] = [];
  private ended = false;

  readonly watch: KeyWatch = async () => {
    this.ended = false;
    this.queue = [];
    return {
      stop: () => this.end(),
      [Symbol.asyncIterator]: () => ({
        next: () => {
          if (!this.held && this.queue.length > 0) {
            return Promise.resolve({ done: false, value: this.queue.shift()! });
          }
          if (this.ended) return Promise.resolve({ done: true, value: undefined });
          return new Promise((resolve) => this.waiting.push(resolve));
        },
      }),
    };
  };

  /** A change to `key` (a pointer recorded or forgotten). */
  change(key: string): number {
    this.revision++;
    this.queue.push({ key, revision: this.revision });
    this.deliver();
    return this.revision;
  }

  release(): void {
    this.held = false;
    this.deliver();
  }

  end(): void {
    this.ended = true;
    for (const resolve of this.waiting.splice(0)) resolve({ done: true, value: undefined });
  }

  async get(key: string) {
    const revision = this.marks.get(key);
    return revision === undefined ? null : { revision };
  }
  async create(key: string) {
    const revision = this.change(key);
    this.marks.set(key, revision);
    return revision;
  }
  async update(key: string, _value: Uint8Array, previous: number) {
    if (this.marks.get(key) !== previous) throw new Error("wrong last sequence");
    return this.create(key);
  }

  private deliver(): void {
    while (!this.held && this.queue.length > 0 && this.waiting.length > 0) {
      this.waiting.shift()!({ done: false, value: this.queue.shift()! });
    }
  }
}

describe("PointerChanges", () => {
  const logger = { warn: () => undefined };
  const settle = () => new Promise((resolve) => setImmediate(resolve));

  it("counts each volume's pointer changes up to a mark the watch has delivered", async () => {
    const store = new FakePointerStore();
    const changes = new PointerChanges(store.watch, store, logger, 1);
    expect(await changes.sync(1000)).toBeUndefined(); // not watching yet
    changes.start();
    await settle();
    store.change("checkpoint.a.0.head-1");
    store.change("checkpoint.a.1.head-2");
    store.change("checkpoint.b.0.head-1");
    const first = await changes.sync(1000);
    expect(first?.counts).toEqual(
      new Map([
        ["a", 2],
        ["b", 1],
      ]),
    );
    expect(await changes.sync(1000)).toEqual(first);
    // A change the watch has not delivered yet: the mark after it waits for it.
    store.held = true;
    store.change("checkpoint.b.3.head-1");
    const waiting = changes.sync(1000);
    await settle();
    store.release();
    expect((await waiting)?.counts.get("b")).toBe(2);
    expect(pointerMarkKey.split(".").length).toBe(2); // never a pointer's key
    changes.close();
  });

  it("keeps counts only for the names retained, so deleted volumes' names do not pile up", async () => {
    const store = new FakePointerStore();
    const changes = new PointerChanges(store.watch, store, logger, 1);
    changes.start();
    await settle();
    // A name created and deleted again and again: each leaves a count behind.
    for (let index = 0; index < 50; index++) store.change(`checkpoint.gone-${index}.0.head-1`);
    store.change("checkpoint.live.0.head-1");
    store.change("checkpoint.live.1.head-1");
    expect((await changes.sync(1000))?.counts.size).toBe(51);
    changes.retain(["live", "idle"]);
    const after = await changes.sync(1000);
    expect(after?.counts).toEqual(new Map([["live", 2]]));
    // A name that comes back is counted again, from nothing.
    store.change("checkpoint.gone-7.0.head-1");
    expect((await changes.sync(1000))?.counts.get("gone-7")).toBe(1);
    changes.close();
  });

  it("counts at most namesMax names where no sweep retains (a standby), then a new generation (unit, fake store)", async () => {
    // Every coordinator watches, and only a leader's complete passes retain: a standby
    // counted every name ever given a pointer for as long as its watch lasted.
    const namesMax = 10;
    const store = new FakePointerStore();
    const changes = new PointerChanges(
      store.watch,
      store,
      logger,
      1,
      undefined,
      undefined,
      namesMax,
    );
    changes.start();
    await settle();
    store.change("checkpoint.kept.0.head-1");
    const before = await changes.sync(1000);
    // Volumes created and deleted, each with a pointer, and no pass to retain anything.
    for (let index = 0; index < 5 * namesMax; index++) {
      store.change(`checkpoint.gone-${index}.0.head-1`);
    }
    // Counted before the mark is written: a sync across a new generation gives none.
    await settle();
    const after = await changes.sync(1000);
    expect(after?.counts.size).toBeGreaterThan(0);
    expect(after?.counts.size).toBeLessThanOrEqual(namesMax);
    // Counts dropped are a new generation: a read the sweep holds is read afresh (the
    // old name "kept" now counts nothing, which alone could look like no change).
    expect(after?.generation).toBeGreaterThan(before!.generation);
    expect(after?.counts.get("kept")).toBeUndefined();
    changes.close();
  });

  it("gives no counts for a mark not delivered in time, or when the watch ends", async () => {
    const store = new FakePointerStore();
    const changes = new PointerChanges(store.watch, store, logger, 1);
    changes.start();
    await settle();
    const { generation } = (await changes.sync(1000))!;
    store.held = true;
    expect(await changes.sync(5)).toBeUndefined();
    const waiting = changes.sync(1000);
    await settle();
    store.end();
    expect(await waiting).toBeUndefined();
    // Started again: a new generation, counting afresh.
    store.held = false;
    await new Promise((resolve) => setTimeout(resolve, 20));
    const again = await changes.sync(1000);
    expect(again?.generation).toBe(generation + 1);
    changes.close();
  });

  it("keeps no waiter for a mark not delivered in time while the watch stays open (unit, fake store)", async () => {
    // A watch that stays open and delivers nothing more (held here): every sweep pass
    // writes a mark and gives up on it at its deadline. Its waiter was kept until the
    // mark arrived, one more for every pass the stall lasted.
    const store = new FakePointerStore();
    const changes = new PointerChanges(store.watch, store, logger, 1);
    changes.start();
    await settle();
    store.held = true;
    for (let pass = 0; pass < 20; pass++) expect(await changes.sync(1)).toBeUndefined();
    expect(changes.waiting).toBe(0);
    // Delivery resumes: the next sync is answered with every change counted.
    store.release();
    store.change("checkpoint.a.0.head-1");
    expect((await changes.sync(1000))?.counts.get("a")).toBe(1);
    expect(changes.waiting).toBe(0);
    changes.close();
  });
});

describe("a watch that fails as long as NATS or its stream is away (fake clock, captured log)", () => {
  const hourMs = 60 * 60_000;
  const repeatMs = 5 * 60_000;
  /** Each failed attempt moves the fake clock this much (the retry and the failing call). */
  const attemptMs = 10_000;

  function captured() {
    const lines: { level: string; fields: Record<string, unknown>; message: string }[] = [];
    const at = (level: string) => (fields: Record<string, unknown>, message: string) => {
      lines.push({ level, fields, message });
    };
    return { log: { warn: at("warn"), info: at("info") } as never, lines };
  }

  async function until(done: () => boolean): Promise<void> {
    while (!done()) await new Promise((resolve) => setTimeout(resolve, 1));
  }

  it("CatalogueChanges: a warning when it begins, a reminder per interval, a line when back", async () => {
    const { log, lines } = captured();
    const watches = new FakeWatches();
    let nowMs = 0;
    let attempts = 0;
    let fail = true;
    const watch: Watch = async (options) => {
      if (fail) {
        attempts++;
        nowMs += attemptMs;
        throw new Error("no responders");
      }
      return watches.watch(options);
    };
    const changes = new CatalogueChanges(watch, log, 1, () => nowMs, repeatMs);
    changes.start();
    // Both keys' attempts move the one clock: an hour is 360 attempts in all.
    await until(() => attempts >= hourMs / attemptMs);
    fail = false;
    await until(() => changes.version() !== undefined);
    changes.close();
    const failed = lines.filter((line) => line.message.startsWith("catalogue watch failed"));
    // Old: a warning per attempt (360).
    expect(failed.length).toBeLessThanOrEqual(2 * (hourMs / repeatMs + 1));
    expect(failed.every((line) => line.level === "warn")).toBe(true);
    const back = lines.filter((line) => line.message.startsWith("catalogue watch is back"));
    expect(back.map((line) => line.fields.key).sort()).toEqual(["partition.>", "volume.>"]);
  });

  it("PointerChanges: the same, for the checkpoint pointer watch", async () => {
    const { log, lines } = captured();
    let nowMs = 0;
    let attempts = 0;
    const watch: KeyWatch = async () => {
      attempts++;
      nowMs += attemptMs;
      throw new Error("no responders");
    };
    const changes = new PointerChanges(
      watch,
      new FakePointerStore(),
      log,
      1,
      () => nowMs,
      repeatMs,
    );
    changes.start();
    await until(() => attempts >= hourMs / attemptMs);
    changes.close();
    const failed = lines.filter((line) =>
      line.message.startsWith("checkpoint pointer watch failed"),
    );
    expect(failed.length).toBeLessThanOrEqual(hourMs / repeatMs + 1);
    expect(failed.length).toBeGreaterThanOrEqual(hourMs / repeatMs - 1);
  });
});
