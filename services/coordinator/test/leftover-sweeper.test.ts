// The leftover sweep's shell against fake sleds (in-memory inventories behind a fake
// bus, listing one entry a page so that windows and cursors are exercised) and the real
// catalogue on an in-memory KV store.

import { BallastError, ErrorCode, type Message, subjects } from "@ballast/protocol";
import { describe, expect, test } from "vitest";
import { Catalogue, keys } from "../src/catalogue.ts";
import { LeftoverSweeper } from "../src/leftover-sweeper.ts";
import type { Member } from "../src/membership.ts";
import type { Tenure } from "../src/tenure.ts";
import { FakeStore, partitionFixture } from "./fake-store.ts";

interface Chunk {
  chunkId: string;
  owner: { volume: string; partition: number };
}

class FakeSled {
  readonly chunks = new Map<string, Chunk>();
  readonly blobs = new Set<string>();
  alive = true;
  /** Alive, but every listing fails (a lasting fault the sweep meets every pass). */
  listsFail = false;

  answer(message: Message): unknown {
    if (this.listsFail && message.type.endsWith(".list.v1")) {
      throw new BallastError(ErrorCode.Internal, "listing failed");
    }
    switch (message.type) {
      case "sled.chunk.list.v1": {
        const ids = [...this.chunks.keys()]
          .filter(
            (id) =>
              message.volume === undefined || this.chunks.get(id)!.owner.volume === message.volume,
          )
          .filter((id) => message.startAfter === undefined || id > message.startAfter)
          .sort();
        return {
          chunks: ids.slice(0, 1).map((id) => ({ ...this.chunks.get(id)!, bytes: 4096 })),
          truncated: ids.length > 1,
        };
      }
      case "sled.blob.list.v1": {
        const found = [...this.blobs]
          .filter((key) => key.startsWith(message.prefix ?? ""))
          .filter((key) => message.startAfter === undefined || key > message.startAfter)
          .sort();
        return {
          blobs: found.slice(0, 1).map((key) => ({ key, bytes: 4096 })),
          truncated: found.length > 1,
        };
      }
      case "sled.chunk.delete.v1":
        if (!this.chunks.delete(message.chunkId)) throw new BallastError(ErrorCode.NotFound, "");
        return { freedBytes: 4096 };
      case "sled.blob.delete.v1":
        if (!this.blobs.delete(message.key)) throw new BallastError(ErrorCode.NotFound, "");
        return { freedBytes: 4096 };
      default:
        throw new Error(`unexpected ${message.type}`);
    }
  }

  put(volume: string, chunkId: string): void {
    this.chunks.set(chunkId, { chunkId, owner: { volume, partition: 0 } });
  }

  left(): string[] {
    return [...this.chunks.keys(), ...this.blobs].sort();
  }
}

const liveId = "3-bbbbbbbbbbbb";
/** Deleted, and its purge record forgotten: nothing in the catalogue names it. */
const goneId = "1-aaaaaaaaaaaa";
/** Deleted, its purge record still there: the purger's. */
const purgingId = "2-cccccccccccc";
/** Being created: its partition records are written, its volume record not yet. */
const creatingId = "1-dddddddddddd";

function harness(pagesMax = 3) {
  const store = new FakeStore();
  store.put(keys.volume("v"), {
    name: "v",
    id: liveId,
    sizeBytes: 1,
    replicaCount: 2,
    partitionBytes: 1,
    createdAtMs: 1,
  });
  store.put(keys.purge(purgingId), { volume: "v", volumeId: purgingId, deletedAtMs: 1 });
  store.put(
    keys.partition("w", 0),
    partitionFixture({ volume: "w", volumeId: creatingId, partition: 0 }),
  );
  const sleds = new Map([
    ["sled-1", new FakeSled()],
    ["sled-2", new FakeSled()],
  ]);
  for (const sled of sleds.values()) {
    for (const [volume, id] of [
      ["v", liveId],
      ["v", goneId],
      ["v", purgingId],
      ["w", creatingId],
    ] as const) {
      sled.put(volume, `${id}-p0-e1-s1-c0`);
      sled.put(volume, `${id}-p0-e1-s1-c1`);
      sled.blobs.add(`checkpoints/${id}/0/head-1/5-1-1`);
    }
    sled.put("chaos-filler", "chaos-filler-0");
    sled.blobs.add("elsewhere/1-aaaaaaaaaaaa");
  }
  const catalogue = new Catalogue(store);
  let tenure: Tenure | undefined = { ready: true } as Tenure;
  const requests: string[] = [];
  const marks = { refusal: (): string | undefined => undefined };
  const logged: { level: string; fields: unknown; message: string }[] = [];
  const sweeper = new LeftoverSweeper({
    service: {
      bus: {
        request: async (subject: string, message: Message) => {
          const id = subject.split(".").at(-1)!;
          expect(subject).toBe(subjects.node.build("sled", id));
          requests.push(`${id} ${message.type}`);
          const sled = sleds.get(id)!;
          if (!sled.alive) throw new BallastError(ErrorCode.Unavailable, "no responders");
          return sled.answer(message);
        },
      },
      logger: {
        info: (fields: unknown, message: string) => logged.push({ level: "info", fields, message }),
        warn: (fields: unknown, message: string) => logged.push({ level: "warn", fields, message }),
      },
    } as never,
    catalogue,
    heartbeats: {
      list: () =>
        [...sleds].map(([id, sled]) => ({ id, kind: "sled", alive: sled.alive }) as Member),
      listening: () => false,
    },
    tenures: { held: () => tenure, current: () => tenure },
    marks,
    graceMs: 0,
    pagesMax,
  });
  return {
    logged,
    marks,
    sleds,
    sweeper,
    requests,
    catalogue,
    lead: (next: Tenure | undefined) => {
      tenure = next;
    },
  };
}

/** Enough passes for windows of three entries to cover every sled twice and more. */
async function passes(sweeper: LeftoverSweeper, count = 12): Promise<void> {
  for (let pass = 0; pass < count; pass++) await sweeper.sweep();
}

describe("the leftover sweep", () => {
  test("deletes every object of an incarnation no record names, and nothing else", async () => {
    const { sleds, sweeper } = harness();
    const before = sleds.get("sled-1")!.left();
    await passes(sweeper);
    const expected = before.filter((id) => !id.includes(goneId) || id.startsWith("elsewhere/"));
    expect(expected).toHaveLength(before.length - 3);
    for (const sled of sleds.values()) expect(sled.left()).toEqual(expected);
    // Live, purging and creating incarnations, and the filler chunk, all stay.
    expect(sleds.get("sled-1")!.left()).toContain("chaos-filler-0");
    expect(sleds.get("sled-1")!.left()).toContain(`${creatingId}-p0-e1-s1-c1`);
    expect(sleds.get("sled-1")!.left()).toContain(`checkpoints/${purgingId}/0/head-1/5-1-1`);
    expect(sweeper.leftoverStatus()).toMatchObject({ objectsFreed: 6, waiting: 0 });
  });

  test("a leftover is deleted only after a second pass finds it one", async () => {
    const { sleds, sweeper } = harness();
    const sled = sleds.get("sled-1")!;
    // One page a kind would take many passes; the first pass only sees.
    await sweeper.sweep();
    expect(sled.chunks.has(`${goneId}-p0-e1-s1-c0`)).toBe(true);
    expect(sweeper.leftoverStatus().waiting).toBeGreaterThan(0);
  });

  test("a sled that is down is swept once it is back", async () => {
    const { sleds, sweeper } = harness();
    const sled2 = sleds.get("sled-2")!;
    sled2.alive = false;
    await passes(sweeper);
    expect(sled2.chunks.has(`${goneId}-p0-e1-s1-c0`)).toBe(true);
    expect(sleds.get("sled-1")!.chunks.has(`${goneId}-p0-e1-s1-c0`)).toBe(false);
    sled2.alive = true;
    await passes(sweeper);
    expect(sled2.left().filter((id) => id.startsWith(goneId))).toEqual([]);
  });

  test("an incarnation named again before the confirming pass is kept", async () => {
    const { sleds, sweeper, catalogue } = harness();
    const sled = sleds.get("sled-1")!;
    // Only the first entries of each kind are listed: goneId's sort first among chunks.
    await sweeper.sweep();
    expect(sweeper.leftoverStatus().waiting).toBeGreaterThan(0);
    // A record naming it appears (a listing that had missed it): nothing of it goes.
    await catalogue.recordPurge({ volume: "v", volumeId: goneId, deletedAtMs: 2 });
    await passes(sweeper);
    expect(sled.chunks.has(`${goneId}-p0-e1-s1-c0`)).toBe(true);
    expect(sweeper.leftoverStatus()).toMatchObject({ objectsFreed: 0, waiting: 0 });
  });

  test("with the control store refused by the sleds' marks nothing is listed or deleted, and no grace is served", async () => {
    const { sleds, sweeper, requests, marks } = harness();
    marks.refusal = () => "sled-1 holds the mark of another store";
    await passes(sweeper);
    expect(requests).toEqual([]);
    expect(sleds.get("sled-1")!.chunks.has(`${goneId}-p0-e1-s1-c0`)).toBe(true);
    expect(sweeper.leftoverStatus()).toMatchObject({ objectsFreed: 0, waiting: 0 });
    // Once the marks allow it, the grace starts then: the first pass only sees.
    marks.refusal = () => undefined;
    await sweeper.sweep();
    expect(sweeper.leftoverStatus().objectsFreed).toBe(0);
  });

  test("a lasting listing failure and a pass's deletes are said in a few lines, not per pass or per object", async () => {
    const { sleds, sweeper, logged, marks } = harness(100);
    const sled2 = sleds.get("sled-2")!;
    sled2.listsFail = true;
    const lines = (pattern: RegExp) => logged.filter((line) => pattern.test(line.message));
    await passes(sweeper);
    // One line for each kind of listing when it began, not one a pass (24 before).
    expect(lines(/could not list/)).toHaveLength(2);
    // sled-1's three leftovers went in one pass: one line naming them.
    const deleted = lines(/^deleted /);
    expect(deleted).toHaveLength(1);
    expect(deleted[0]!.fields).toMatchObject({ deleted: 3 });
    sled2.listsFail = false;
    await passes(sweeper);
    expect(lines(/listed a sled's objects to find leftovers again/)).toHaveLength(2);
    expect(lines(/^deleted /)).toHaveLength(2);
    expect(sweeper.leftoverStatus().objectsFreed).toBe(6);
    // A lasting refusal: said once, and its end once.
    marks.refusal = () => "sled-1 holds the mark of another store";
    await passes(sweeper);
    expect(lines(/leftover sweep skipped/)).toHaveLength(1);
    marks.refusal = () => undefined;
    await passes(sweeper, 2);
    expect(lines(/runs again/)).toHaveLength(1);
  });

  test("a follower sends nothing", async () => {
    const { sweeper, requests, lead } = harness();
    lead(undefined);
    await passes(sweeper, 2);
    expect(requests).toEqual([]);
  });
});
