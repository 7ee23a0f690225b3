// Forgetting sleds out for good: the decision (sled-forgetting.ts) as a pure function of
// censuses and time, the book's part (sleds.ts), and the leader's shells together — the
// orphan sweep (sweeper.ts) reading recorded checkpoints from a fake sled behind a fake
// bus, and the sled records (sled-records.ts) on the real catalogue over an in-memory KV
// store (fake-store.ts).

import { type Message, subjects } from "@ballast/protocol";
import { createLogger } from "@ballast/runtime";
import { Packr } from "msgpackr";
import { afterEach, beforeEach, describe, expect, test, vi } from "vitest";
import { Catalogue, keys } from "../src/catalogue.ts";
import { reportAgeMsMax } from "../src/constants.ts";
import { partitionKey } from "../src/leases.ts";
import type { Member } from "../src/membership.ts";
import {
  type CensusVolume,
  censusOf,
  checkpointsNamedOf,
  type ReferenceCensus,
  SledForgetting,
} from "../src/sled-forgetting.ts";
import { SledRecords } from "../src/sled-records.ts";
import { SledBook, type SledRecord } from "../src/sleds.ts";
import { type PartitionCheckpoints, sledsNamedBy } from "../src/sweep.ts";
import { Sweeper } from "../src/sweeper.ts";
import type { Tenure } from "../src/tenure.ts";
import { FakeStore, putOnePartitionVolume } from "./fake-store.ts";

const forgetAfter = 10_000;

/** A census of partitions `<id>/<n>` → [newest checkpoint op, commit op], naming `named`. */
function census(
  partitions: Record<string, [number, number | undefined]>,
  named: string[],
  reportedSinceMs: number,
): ReferenceCensus {
  return {
    named: new Set(named),
    partitions: new Map(
      Object.entries(partitions).map(([key, [checkpointOpNumMax, commitOpNum]]) => [
        key,
        { checkpointOpNumMax, commitOpNum },
      ]),
    ),
    reportedSinceMs,
  };
}

describe("which out sleds may be forgotten (unit)", () => {
  const out = [
    { id: "sled-8", outAtMs: 0 },
    { id: "sled-9", outAtMs: 0 },
  ];

  test("once every partition has checkpointed past the commit op anchored, those nothing names go", () => {
    const forgetting = new SledForgetting(forgetAfter);
    // The anchor: commit ops reported once both sleds had been out for the bound.
    expect(
      forgetting.pass(census({ "v/0": [5, 10], "v/1": [3, 3] }, [], forgetAfter), out),
    ).toEqual([]);
    expect(forgetting.anchored).toBe(true);
    // A chunk copy on sled-8 is still listed: it stays; sled-9 goes.
    expect(
      forgetting.pass(
        census({ "v/0": [10, 12], "v/1": [3, 3] }, ["sled-1", "sled-8"], 40_000),
        out,
      ),
    ).toEqual(["sled-9"]);
  });

  test("waits while some partition's newest checkpoint is behind its anchored commit op", () => {
    const forgetting = new SledForgetting(forgetAfter);
    forgetting.pass(census({ "v/0": [5, 10] }, [], forgetAfter), out);
    // Ops 6..10 were committed before the anchor and may have listed a copy there.
    expect(forgetting.pass(census({ "v/0": [9, 14] }, [], 30_000), out)).toEqual([]);
    expect(forgetting.pass(census({ "v/0": [9, 20] }, [], 40_000), out)).toEqual([]);
    expect(forgetting.pass(census({ "v/0": [10, 20] }, [], 50_000), out)).toEqual([
      "sled-8",
      "sled-9",
    ]);
  });

  test("takes no anchor before a sled has been out for the bound, nor without every commit op", () => {
    const forgetting = new SledForgetting(forgetAfter);
    // Reports since before the bound: they may predate the sled's last write.
    expect(forgetting.pass(census({ "v/0": [10, 10] }, [], forgetAfter - 1), out)).toEqual([]);
    expect(forgetting.anchored).toBe(false);
    // A partition whose primary has not reported lately.
    expect(
      forgetting.pass(census({ "v/0": [10, 10], "v/1": [4, undefined] }, [], forgetAfter), out),
    ).toEqual([]);
    expect(forgetting.anchored).toBe(false);
    // No candidate at all (every out sled still listed by membership): none either.
    expect(forgetting.pass(census({ "v/0": [10, 10] }, [], 99_000), [])).toEqual([]);
    expect(forgetting.anchored).toBe(false);
    expect(forgetting.pass(census({ "v/0": [10, 10] }, [], forgetAfter), out)).toEqual([]);
    expect(forgetting.anchored).toBe(true);
  });

  test("a sled out since after the anchor waits for the next one", () => {
    const forgetting = new SledForgetting(forgetAfter);
    forgetting.pass(census({ "v/0": [10, 10] }, [], forgetAfter), [{ id: "sled-9", outAtMs: 0 }]);
    const later = [
      { id: "sled-9", outAtMs: 0 },
      { id: "sled-7", outAtMs: 5_000 },
    ];
    // sled-7 was out only 5 s at the anchor: kept, and anchored afresh.
    expect(forgetting.pass(census({ "v/0": [10, 11] }, [], 20_000), later)).toEqual(["sled-9"]);
    expect(forgetting.anchored).toBe(true);
    expect(forgetting.pass(census({ "v/0": [11, 12] }, [], 21_000), later)).toEqual([
      "sled-7",
      "sled-9",
    ]);
  });

  test("an incomplete pass decides nothing and keeps the anchor", () => {
    const forgetting = new SledForgetting(forgetAfter);
    forgetting.pass(census({ "v/0": [10, 10] }, [], forgetAfter), out);
    expect(forgetting.pass(undefined, out)).toEqual([]);
    expect(forgetting.anchored).toBe(true);
    expect(forgetting.pass(census({ "v/0": [10, 10] }, [], 20_000), out)).toEqual([
      "sled-8",
      "sled-9",
    ]);
  });

  test("a partition new since the anchor anchors again rather than count as caught up", () => {
    const forgetting = new SledForgetting(forgetAfter);
    forgetting.pass(census({ "v/0": [10, 10] }, [], forgetAfter), out);
    // w/0 appeared (a create, a grow): its ops before this pass are not bounded by the anchor.
    expect(forgetting.pass(census({ "v/0": [10, 10], "w/0": [-1, 7] }, [], 20_000), out)).toEqual(
      [],
    );
    expect(forgetting.anchored).toBe(true);
    expect(forgetting.pass(census({ "v/0": [10, 10], "w/0": [6, 9] }, [], 30_000), out)).toEqual(
      [],
    );
    expect(forgetting.pass(census({ "v/0": [10, 10], "w/0": [7, 9] }, [], 30_000), out)).toEqual([
      "sled-8",
      "sled-9",
    ]);
  });
});

describe("what a sweep pass says names a sled (unit)", () => {
  const read = (checkpoints: { opNum: number; sleds: string[] }[]): PartitionCheckpoints => ({
    kind: "read",
    checkpoints: checkpoints.map(({ opNum, sleds }) => ({
      node: "a",
      opNum,
      blobKey: `checkpoints/v/0/a/${opNum}-1-1`,
      nextChunkNumber: 0,
      chunkIds: [],
      snapshotIds: [],
      sleds,
    })),
  });

  test("a checkpoint names its blob's sleds and every chunk copy", () => {
    expect(
      sledsNamedBy({ sleds: ["s2", "s1"] }, [
        [1, "c1", ["s1", "s3"], 10],
        [2, "c2", ["s4"], 10, 7],
      ]),
    ).toEqual(["s1", "s2", "s3", "s4"]);
  });

  test("every partition counts, with or without checkpoints; one unread voids the census", () => {
    const partition0 = checkpointsNamedOf(
      read([
        { opNum: 4, sleds: ["s1", "s2"] },
        { opNum: 6, sleds: ["s2", "s9"] },
      ]),
    );
    expect(partition0).toEqual({ opNumMax: 6, sleds: ["s1", "s2", "s9"] });
    const volume: CensusVolume = {
      volumeId: "v",
      checkpoints: new Map([[0, partition0]]),
      commitOpNums: new Map([
        [0, 8],
        [1, undefined],
      ]),
    };
    expect(censusOf([volume], 100)).toEqual(
      census({ "v/0": [6, 8], "v/1": [-1, undefined] }, ["s1", "s2", "s9"], 100),
    );
    const unread = checkpointsNamedOf({ kind: "unreadable", reason: "header not read" });
    expect(unread).toBeUndefined();
    expect(
      censusOf([volume, { ...volume, volumeId: "w", checkpoints: new Map([[1, unread]]) }], 100),
    ).toBeUndefined();
  });
});

describe("the sled book forgets (unit)", () => {
  test("only a sled out with its record persisted; heard again, it is a sled first heard", () => {
    const records: SledRecord[] = [
      { id: "sled-9", firstSeenMs: 1, lastSeenMs: 2, state: "out", since: 3 },
    ];
    const book = new SledBook(60_000, 1_000, records);
    book.heard("sled-1", 2_000, 102_000);
    expect(book.outSince()).toEqual([{ id: "sled-9", outAtMs: 1_000 }]);
    expect(book.forget("sled-1")).toBe(false); // in service
    expect(book.forget("sled-9")).toBe(true);
    expect(book.out()).toEqual([]);
    expect(book.list(3_000).map((record) => record.id)).toEqual(["sled-1"]);
    expect(book.heard("sled-9", 4_000, 104_000)).toBe(true);
    expect(book.list(4_000).find((record) => record.id === "sled-9")).toMatchObject({
      state: "in",
      firstSeenMs: 104_000,
    });
    // Declared out again and not yet persisted: kept until written.
    book.tick(64_000, 164_000);
    expect(book.forget("sled-9")).toBe(false);
    book.takeChanged();
    expect(book.forget("sled-9")).toBe(true);
  });
});

// The regression (review finding D1): a sled out for good stayed in the book, in the
// catalogue and in every report answer's out set, whatever referenced it.
describe("a sled out for good is forgotten by the leader (fake store, fake sled)", () => {
  const name = "v";
  const volumeId = "1-aaaaaaaaaaaa";
  const blobKey = (opNum: number) => `checkpoints/${volumeId}/0/a/${opNum}-1-1`;
  const logger = createLogger({ service: "coordinator", nodeId: "c-1", level: "silent" });

  beforeEach(() => {
    vi.useFakeTimers({ toFake: ["performance", "Date"] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  /** A checkpoint whose one chunk has copies on `copies`. */
  function checkpointBytes(opNum: number, copies: string[]): Uint8Array {
    const header = new Packr({ useRecords: false, moreTypes: false }).pack({
      format: 1,
      opNum,
      flushedThroughOpNum: opNum,
      flushedThroughEpoch: 1,
      flushedThroughSession: 1,
      nextChunkNumber: 2,
      chunks: [[1, `${volumeId}-p0-e1-s1-c1`, copies, 4096]],
    });
    const bytes = new Uint8Array(4 + header.byteLength);
    new DataView(bytes.buffer).setUint32(0, header.byteLength, true);
    bytes.set(header, 4);
    return bytes;
  }

  function sledMember(id: string, lastHeartbeatAtMs: number): Member {
    return {
      kind: "sled",
      id,
      pid: 1,
      version: "0.1.0",
      startedAtMs: 0,
      lastSequence: 0,
      lastHeartbeatAtMs,
      alive: true,
    };
  }

  async function harness() {
    const store = new FakeStore();
    const catalogue = new Catalogue(store);
    const record = putOnePartitionVolume(store, name, volumeId);
    // Two sleds out since before this leader: sled-8 still holds a copy a table lists,
    // sled-9 nothing (retired, its copies made again elsewhere).
    for (const id of ["sled-8", "sled-9"]) {
      const out: SledRecord = { id, firstSeenMs: 1, lastSeenMs: 2, state: "out", since: 3 };
      store.put(keys.sled(id), out);
    }
    const blobs = new Map<string, Uint8Array>();
    const report = { commitOpNum: 10 };
    const tenure = {
      term: 1,
      ready: true,
      records: new Map([[partitionKey(record), { value: record, revision: 1 }]]),
      inflight: new Set<string>(),
      unsure: new Set<string>(),
      leases: { reportOf: () => report },
    } as unknown as Tenure;
    const current = () => tenure;
    const members: Member[] = [sledMember("sled-1", performance.now())];
    const heartbeats = { list: () => members, listening: () => false };
    const sleds = new SledRecords({
      logger,
      catalogue,
      heartbeats,
      tenures: { held: current, current },
      sledOutAfterMs: 3000,
      sledForgetAfterMs: forgetAfter,
    });
    const sweeper = new Sweeper({
      service: {
        bus: {
          request: async (subject: string, message: Message) => {
            expect(subject).toBe(subjects.node.build("sled", "sled-1"));
            switch (message.type) {
              case "sled.chunk.list.v1":
                return { chunks: [], truncated: false };
              case "sled.blob.list.v1":
                return { blobs: [], truncated: false };
              case "sled.blob.get.v1": {
                const data = blobs.get(message.key)!;
                const end =
                  message.length === undefined ? data.byteLength : message.offset + message.length;
                return { data: data.slice(message.offset, end), bytes: data.byteLength };
              }
              default:
                throw new Error(`unexpected ${message.type}`);
            }
          },
        },
        logger,
      } as never,
      catalogue,
      heartbeats,
      tenures: { held: current, current },
      marks: { mismatch: () => undefined },
      references: sleds,
    });
    const checkpoint = async (opNum: number, copies: string[]) => {
      const bytes = checkpointBytes(opNum, copies);
      blobs.set(blobKey(opNum), bytes);
      await catalogue.recordCheckpoint(name, 0, "a", {
        opNum,
        blobKey: blobKey(opNum),
        sleds: ["sled-1"],
        bytes: bytes.byteLength,
        createdAtMs: 1,
      });
    };
    const stored = async () => (await catalogue.sledRecords()).map((sled) => sled.id).sort();
    return { sleds, sweeper, checkpoint, stored, tenure, members, report, catalogue };
  }

  test("deleted from the book and the catalogue once nothing names it; one still named stays", async () => {
    const { sleds, sweeper, checkpoint, stored, tenure, members, catalogue } = await harness();
    await sleds.tick(); // loads the book: both out, counted from now
    await checkpoint(10, ["sled-1", "sled-8"]);
    await sweeper.sweep();
    await sweeper.sweep();
    await sleds.tick();
    // Before the bound: both kept.
    expect(await stored()).toEqual(["sled-8", "sled-9"]);
    expect(sleds.out(tenure)).toEqual(["sled-8", "sled-9"]);

    vi.advanceTimersByTime(forgetAfter + reportAgeMsMax + 1);
    members[0] = sledMember("sled-1", performance.now());
    await sweeper.sweep(); // anchors primary a's commit op 10
    await sweeper.sweep(); // the checkpoint at op 10 has caught up: sled-9 is named by nothing
    await sleds.tick();
    expect(await stored()).toEqual(["sled-1", "sled-8"]);
    expect(sleds.out(tenure)).toEqual(["sled-8"]);
    expect(sleds.list()!.map((sled) => sled.id)).toEqual(["sled-1", "sled-8"]);

    // Heard again, sled-9 is a new sled, in service.
    members.push(sledMember("sled-9", performance.now()));
    await sleds.tick();
    expect(sleds.out(tenure)).toEqual(["sled-8"]);
    const back = (await catalogue.sledRecords()).find((sled) => sled.id === "sled-9");
    expect(back).toMatchObject({ state: "in" });
  });

  test("kept while the newest checkpoint is behind the commit op its primary reported", async () => {
    const { sleds, sweeper, checkpoint, stored, tenure, members, report } = await harness();
    await sleds.tick();
    await checkpoint(10, ["sled-1"]);
    vi.advanceTimersByTime(forgetAfter + reportAgeMsMax + 1);
    members[0] = sledMember("sled-1", performance.now());
    // Ops 11 and 12 are committed and no checkpoint holds them: they may list a copy on
    // either sled (flushed while it was alive), so neither goes.
    report.commitOpNum = 12;
    await sweeper.sweep();
    await sweeper.sweep();
    await sleds.tick();
    expect(await stored()).toEqual(["sled-1", "sled-8", "sled-9"]);
    expect(sleds.out(tenure)).toEqual(["sled-8", "sled-9"]);
    await checkpoint(12, ["sled-1"]);
    await sweeper.sweep();
    await sleds.tick();
    expect(await stored()).toEqual(["sled-1"]);
    expect(sleds.out(tenure)).toEqual([]);
  });

  test("kept while membership still lists it", async () => {
    const { sleds, sweeper, checkpoint, stored, members } = await harness();
    await sleds.tick();
    await checkpoint(10, ["sled-1"]);
    vi.advanceTimersByTime(forgetAfter + reportAgeMsMax + 1);
    // sled-9 dead but not yet evicted: the purger still awaits it as a sled not out.
    members.splice(0, 1, sledMember("sled-1", performance.now()), {
      ...sledMember("sled-9", 0),
      alive: false,
    });
    await sweeper.sweep();
    await sweeper.sweep();
    await sleds.tick();
    expect(await stored()).toEqual(["sled-1", "sled-9"]);
  });
});
