// The purger's shell against scripted sleds (in-memory inventories behind a fake bus)
// and the real catalogue on an in-memory KV store.

import { BallastError, ErrorCode, type Message, subjects } from "@ballast/protocol";
import { describe, expect, test } from "vitest";
import { Catalogue, keys } from "../src/catalogue.ts";
import { LeaseBook } from "../src/leases.ts";
import type { Member } from "../src/membership.ts";
import type { PurgeRecord } from "../src/purge.ts";
import { Purger } from "../src/purger.ts";
import type { Tenure } from "../src/tenure.ts";
import { FakeStore } from "./fake-store.ts";

interface Chunk {
  chunkId: string;
  owner: { volume: string; partition: number };
}

class FakeSled {
  readonly chunks = new Map<string, Chunk>();
  readonly blobs = new Set<string>();
  alive = true;
  /** False: membership says it is alive, but it answers nothing in time. */
  answers = true;

  answer(message: Message): unknown {
    switch (message.type) {
      case "sled.chunk.list.v1": {
        // Pages of one, so that paging is exercised.
        const ids = [...this.chunks.keys()]
          .filter((id) => this.chunks.get(id)!.owner.volume === message.volume)
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
        return { blobs: found.map((key) => ({ key })), truncated: false };
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
}

const dead = { volume: "v", volumeId: "1-aaaaaaaaaaaa", deletedAtMs: 1 };
const liveId = "2-bbbbbbbbbbbb";

function fill(sled: FakeSled): void {
  for (const [volume, volumeId] of [
    ["v", dead.volumeId],
    ["v", liveId],
    ["w", "1-cccccccccccc"],
  ] as const) {
    for (const partition of [0, 1]) {
      const chunkId = `${volumeId}-p${partition}-e1-s1-c0`;
      sled.chunks.set(chunkId, { chunkId, owner: { volume, partition } });
      sled.blobs.add(`checkpoints/${volumeId}/${partition}/h1/5-1-1`);
    }
  }
}

/**
 * A scripted head node: answers a drop while `answers`, else fails it as a node cut off
 * from the bus would; `alive` is what membership says of it.
 */
class FakeHeadNode {
  alive = true;
  answers = true;
  readonly drops: string[] = [];

  answer(message: Message): unknown {
    if (message.type !== "headnode.drop.v1") throw new Error(`unexpected ${message.type}`);
    if (!this.answers) throw new BallastError(ErrorCode.Timeout, "no reply");
    this.drops.push(message.volumeId);
    return { dropped: 0 };
  }
}

async function harness(
  record: PurgeRecord = dead,
  heads: string[] = [],
  options: {
    out?: () => string[] | undefined;
    ageMsMax?: number;
    logger?: { info: unknown; warn: unknown };
    clock?: () => number;
  } = {},
) {
  const store = new FakeStore();
  const catalogue = new Catalogue(store);
  store.put(keys.volume("v"), {
    name: "v",
    id: liveId,
    sizeBytes: 1,
    replicaCount: 2,
    partitionBytes: 1,
    createdAtMs: 1,
  });
  await catalogue.recordPurge(record);
  const headNodes = new Map(heads.map((id) => [id, new FakeHeadNode()]));
  const sleds = new Map([
    ["sled-1", new FakeSled()],
    ["sled-2", new FakeSled()],
  ]);
  for (const sled of sleds.values()) fill(sled);
  const leases = new LeaseBook({
    leaderSinceMs: 0,
    leaseMs: 1000,
    driftMarginMs: 0,
    reportAgeMsMax: 2000,
  });
  const tenure = { ready: true, leases } as Tenure;
  const purger = new Purger({
    service: {
      bus: {
        request: async (subject: string, message: Message) => {
          const id = subject.split(".").at(-1)!;
          const head = headNodes.get(id);
          expect(subject).toBe(subjects.node.build(head === undefined ? "sled" : "headnode", id));
          if (head !== undefined) return head.answer(message);
          const sled = sleds.get(id)!;
          if (!sled.alive) throw new BallastError(ErrorCode.Unavailable, "no responders");
          if (!sled.answers) throw new BallastError(ErrorCode.Timeout, "no answer in time");
          return sled.answer(message);
        },
      },
      logger: options.logger ?? { info: () => undefined, warn: () => undefined },
    } as never,
    catalogue,
    heartbeats: {
      list: () => [
        ...[...sleds].map(([id, sled]) => ({ id, kind: "sled", alive: sled.alive }) as Member),
        ...[...headNodes].map(
          ([id, head]) => ({ id, kind: "headnode", alive: head.alive }) as Member,
        ),
      ],
      listening: () => false,
    },
    tenures: { held: () => tenure, current: () => tenure },
    ...(options.out === undefined ? {} : { sleds: { out: options.out } }),
    times: { graceMs: 0, retainMs: 0, ageMsMax: options.ageMsMax ?? 1_000_000 },
    ...(options.clock === undefined ? {} : { clock: options.clock, logRepeatIntervalMs: 300_000 }),
  });
  const left = (sled: FakeSled) => [...sled.chunks.keys(), ...sled.blobs].sort();
  return { store, sleds, headNodes, leases, purger, left };
}

const survivors = [
  `${liveId}-p0-e1-s1-c0`,
  `${liveId}-p1-e1-s1-c0`,
  "1-cccccccccccc-p0-e1-s1-c0",
  "1-cccccccccccc-p1-e1-s1-c0",
  `checkpoints/${liveId}/0/h1/5-1-1`,
  `checkpoints/${liveId}/1/h1/5-1-1`,
  "checkpoints/1-cccccccccccc/0/h1/5-1-1",
  "checkpoints/1-cccccccccccc/1/h1/5-1-1",
].sort();

describe("the purger", () => {
  test("deletes every chunk and blob of the dead incarnation on every sled, and nothing else", async () => {
    const { store, sleds, purger, left } = await harness();
    await purger.purge();
    for (const sled of sleds.values()) expect(left(sled)).toEqual(survivors);
    // Objects were found: the record stays until a pass finds none.
    expect(store.value(keys.purge(dead.volumeId))).toEqual(dead);
    await purger.purge();
    expect(store.value(keys.purge(dead.volumeId))).toBeUndefined();
  });

  test("a sled that was down is purged when it returns, and only then is the record forgotten", async () => {
    const { store, sleds, purger, left } = await harness();
    sleds.get("sled-2")!.alive = false;
    await purger.purge();
    await purger.purge();
    await purger.purge();
    expect(left(sleds.get("sled-1")!)).toEqual(survivors);
    expect(store.value(keys.purge(dead.volumeId))).toEqual(dead);
    sleds.get("sled-2")!.alive = true;
    await purger.purge();
    expect(left(sleds.get("sled-2")!)).toEqual(survivors);
    await purger.purge();
    expect(store.value(keys.purge(dead.volumeId))).toBeUndefined();
  });

  test("a sled declared out does not keep the record, one merely dead does", async () => {
    let out: string[] | undefined;
    const { store, sleds, purger, left } = await harness(dead, [], { out: () => out });
    sleds.get("sled-2")!.alive = false; // decommissioned: it will never answer again
    await purger.purge();
    await purger.purge();
    expect(left(sleds.get("sled-1")!)).toEqual(survivors);
    // Not known to be out (the book is not loaded yet, then it is only dead): awaited.
    expect(store.value(keys.purge(dead.volumeId))).toEqual(dead);
    out = [];
    await purger.purge();
    expect(store.value(keys.purge(dead.volumeId))).toEqual(dead);
    out = ["sled-2"];
    await purger.purge();
    expect(store.value(keys.purge(dead.volumeId))).toBeUndefined();
  });

  test("a follower purges nothing", async () => {
    const { sleds, store, left } = await harness();
    const purger = new Purger({
      service: { bus: { request: () => Promise.reject(new Error("sent")) } } as never,
      catalogue: new Catalogue(store),
      heartbeats: { list: () => [], listening: () => false },
      tenures: { held: () => undefined, current: () => undefined },
    });
    await purger.purge();
    expect(left(sleds.get("sled-1")!)).toHaveLength(12);
  });
});

describe("the drops a delete owes", () => {
  const owing: PurgeRecord = { ...dead, headNodes: ["head-1", "head-2"] };
  /** Counts the chunk listings `sled` answers from now on. */
  const listings = (sled: FakeSled) => {
    const answer = sled.answer.bind(sled);
    let count = 0;
    sled.answer = (message) => {
      if (message.type === "sled.chunk.list.v1") count++;
      return answer(message);
    };
    return () => count;
  };

  test("a head node that missed the drop is told once it is back; only then is the record forgotten", async () => {
    const { store, sleds, headNodes, purger } = await harness(owing, ["head-1", "head-2"]);
    const head1 = headNodes.get("head-1")!;
    const head2 = headNodes.get("head-2")!;
    head1.alive = false; // down, or frozen past its heartbeats
    head2.answers = false; // heard, but its drop times out
    const listed = listings(sleds.get("sled-1")!);
    await purger.purge(); // purges the sleds
    await purger.purge(); // finds them clean: only the drops keep the record
    expect(head1.drops).toEqual([]);
    expect(store.value(keys.purge(dead.volumeId))).toEqual(owing);
    const listedOnceClean = listed();
    head2.answers = true;
    await purger.purge();
    expect(head2.drops).toEqual([dead.volumeId]);
    expect(store.value(keys.purge(dead.volumeId))).toEqual(owing);
    head1.alive = true;
    await purger.purge();
    expect(head1.drops).toEqual([dead.volumeId]);
    // Told once each: an acknowledged drop is not sent again.
    expect(head2.drops).toEqual([dead.volumeId]);
    expect(store.value(keys.purge(dead.volumeId))).toBeUndefined();
    // Clean sleds were not listed again while the record waited for drops.
    expect(listed()).toBe(listedOnceClean);
  });

  test("a record forgotten at its age limit while a node still fails its drop leaves nothing of it (unit, fake bus)", async () => {
    const { store, headNodes, purger } = await harness(owing, ["head-1", "head-2"], {
      ageMsMax: 0,
    });
    headNodes.get("head-2")!.answers = false; // heard, but its drop times out
    await purger.purge(); // purges the sleds: objects found, the record stays
    expect(store.value(keys.purge(dead.volumeId))).toEqual(owing);
    expect(purger.dropFailuresLoggedCount).toBe(1);
    await purger.purge(); // nothing found, past the age limit: forgotten, drop owed or not
    expect(store.value(keys.purge(dead.volumeId))).toBeUndefined();
    expect(purger.dropFailuresLoggedCount).toBe(0);
  });

  test("a node whose reports still name the incarnation is told to drop it too", async () => {
    const { headNodes, leases, purger } = await harness(dead, ["head-3"]);
    // head-3 was primary of the incarnation: its record is gone, so the report is only
    // excluded, and nothing else names head-3.
    const outcome = leases.onNodeReport(
      {
        node: "head-3",
        session: 1,
        seq: 1,
        primaries: [
          {
            volume: "v",
            volumeId: dead.volumeId,
            partition: 0,
            epoch: 4,
            session: 1,
            commitOpNum: 10,
            tailCommitted: true,
            followers: [],
          },
        ],
      },
      () => undefined,
      new Set(["head-3"]),
      0,
    );
    expect(outcome.deposed).toEqual([]);
    await purger.purge();
    expect(headNodes.get("head-3")!.drops).toEqual([dead.volumeId]);
  });

  test("an incarnation that is live again is owed no drop", async () => {
    const { headNodes, purger } = await harness(
      { volume: "v", volumeId: liveId, deletedAtMs: 1, headNodes: ["head-1"] },
      ["head-1"],
    );
    await purger.purge();
    await purger.purge();
    expect(headNodes.get("head-1")!.drops).toEqual([]);
  });
});

describe("a live sled that cannot be listed while a purge is pending (fake clock, captured log)", () => {
  test("warned when it begins and once per interval, not every pass; its listing again is said once", async () => {
    const lines: { level: string; message: string; fields: Record<string, unknown> }[] = [];
    const at = (level: string) => (fields: Record<string, unknown>, message: string) => {
      lines.push({ level, fields, message });
    };
    let nowMs = 0;
    const { sleds, purger } = await harness(dead, [], {
      logger: { info: at("info"), warn: at("warn") },
      clock: () => nowMs,
      ageMsMax: Number.POSITIVE_INFINITY,
    });
    sleds.get("sled-2")!.answers = false;
    // An hour of passes, one every purgePassIntervalMs (2 s).
    for (; nowMs < 60 * 60_000; nowMs += 2000) await purger.purge();
    const failed = lines.filter((line) => line.message.startsWith("could not list a sled's"));
    // Old: one a pass, 1800 an hour.
    expect(failed).toHaveLength(12);
    expect(failed.every((line) => line.level === "warn" && line.fields.sled === "sled-2")).toBe(
      true,
    );
    sleds.get("sled-2")!.answers = true;
    await purger.purge();
    await purger.purge();
    expect(lines.filter((line) => line.message.startsWith("listed a sled's"))).toHaveLength(1);
  });
});
