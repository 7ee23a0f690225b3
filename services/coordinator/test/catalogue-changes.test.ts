// The catalogue watch that lets an idle leader skip re-reading the catalogue.

import { describe, expect, it } from "vitest";
import { CatalogueChanges, type Watch } from "../src/catalogue-changes.ts";

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
