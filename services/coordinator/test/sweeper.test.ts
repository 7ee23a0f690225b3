// The sweep's shell against scripted sleds (in-memory chunks and blobs behind a fake
// bus, checkpoint blobs holding real header bytes) and the real catalogue on an
// in-memory KV store.

import { BallastError, crc32c, ErrorCode, type Message, subjects } from "@ballast/protocol";
import { Packr } from "msgpackr";
import { afterEach, beforeEach, describe, expect, test, vi } from "vitest";
import { Catalogue, keys } from "../src/catalogue.ts";
import type { PointerVersions } from "../src/catalogue-changes.ts";
import { snapshotCreatingGraceMs, volumeCreatingGraceMs } from "../src/constants.ts";
import type { PartitionRecord } from "../src/decisions.ts";
import { partitionKey } from "../src/leases.ts";
import type { Member } from "../src/membership.ts";
import { Sweeper } from "../src/sweeper.ts";
import type { Tenure } from "../src/tenure.ts";
import { FakeStore, putOnePartitionVolume } from "./fake-store.ts";

const name = "v";
const volumeId = "1-aaaaaaaaaaaa";
const chunkId = (number: number, epoch = 1) => `${volumeId}-p0-e${epoch}-s1-c${number}`;
const blobKey = (node: string, opNum: number) => `checkpoints/${volumeId}/0/${node}/${opNum}-1-1`;

/** A checkpoint as the head node writes it: length, msgpack header, then (here) padding. */
function checkpointBytes(
  opNum: number,
  nextChunkNumber: number,
  chunks: number[],
  snapshotIds: string[] = [],
): Uint8Array {
  const header = new Packr({ useRecords: false, moreTypes: false }).pack({
    format: snapshotIds.length === 0 ? 1 : 2,
    opNum,
    flushedThroughOpNum: opNum,
    flushedThroughEpoch: 1,
    flushedThroughSession: 1,
    nextChunkNumber,
    chunks: chunks.map((number) => [number, chunkId(number), ["sled-1"], 4096]),
    ...(snapshotIds.length === 0
      ? {}
      : { treeBytes: 0, snapshots: snapshotIds.map((id) => [id, opNum, 0]) }),
  });
  const bytes = new Uint8Array(4 + header.byteLength + 64);
  new DataView(bytes.buffer).setUint32(0, header.byteLength, true);
  bytes.set(header, 4);
  return bytes;
}

class FakeSled {
  readonly chunks = new Set<string>();
  readonly blobs = new Map<string, Uint8Array>();
  readonly requests: string[] = [];

  answer(message: Message): unknown {
    this.requests.push(message.type);
    switch (message.type) {
      case "sled.chunk.list.v1": {
        // Pages of one, so that paging is exercised.
        const ids = [...this.chunks]
          .filter((id) => message.startAfter === undefined || id > message.startAfter)
          .sort();
        return {
          chunks: ids
            .slice(0, 1)
            .map((id) => ({ chunkId: id, owner: { volume: name, partition: 0 }, bytes: 4096 })),
          truncated: ids.length > 1,
        };
      }
      case "sled.blob.list.v1": {
        const found = [...this.blobs.keys()].filter((key) => key.startsWith(message.prefix ?? ""));
        return {
          blobs: found.map((key) => ({ key, bytes: this.blobs.get(key)!.byteLength })),
          truncated: false,
        };
      }
      case "sled.blob.get.v1": {
        const data = this.blobs.get(message.key);
        if (data === undefined) throw new BallastError(ErrorCode.NotFound, message.key);
        const end =
          message.length === undefined ? data.byteLength : message.offset + message.length;
        return {
          data: data.slice(message.offset, end),
          bytes: data.byteLength,
          checksum: crc32c(data),
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
}

/** A fake of the snapshot requests the sweep uses: which ids it dropped or finished deleting. */
class FakeSnapshots {
  readonly creating = new Set<string>();
  readonly dropped: string[] = [];
  /** The ids of marked records the sweep asked to finish deleting, in order. */
  readonly finished: string[] = [];
  /** Whether a drop reaches every partition. */
  reachesEvery = true;
  creatingIds(): ReadonlySet<string> {
    return this.creating;
  }
  async dropUnrecorded(_volume: unknown, id: string): Promise<boolean> {
    this.dropped.push(id);
    return this.reachesEvery;
  }
  async finishDeleting(_volume: unknown, marked: { value: { id: string } }): Promise<boolean> {
    this.finished.push(marked.value.id);
    return this.reachesEvery;
  }
}

async function harness(
  members: Partial<PartitionRecord> = {},
  pointers?: {
    sync(): Promise<PointerVersions | undefined>;
    retain?(names: Iterable<string>): void;
  },
  graceMs = 0,
) {
  const store = new FakeStore();
  const catalogue = new Catalogue(store);
  const record = putOnePartitionVolume(store, name, volumeId, members);
  const sled = new FakeSled();
  // The leader's copy of the records (the sweep reads no partition record from the store).
  const tenure = {
    term: 1,
    ready: true,
    records: new Map([[partitionKey(record), { value: record, revision: 1 }]]),
    inflight: new Set<string>(),
    unsure: new Set<string>(),
  } as unknown as Tenure;
  // `tenure`: replaced to model a change of leader (a new tenure, as another coordinator's).
  const leadership = { leading: true, tenure };
  const current = () => (leadership.leading ? leadership.tenure : undefined);
  const snapshots = new FakeSnapshots();
  // A fake of the store marks: `reason` set, they prove the catalogue older than the data.
  const marks: { reason: string | undefined; mismatch(): string | undefined } = {
    reason: undefined,
    mismatch() {
      return this.reason;
    },
  };
  const logged: { level: string; fields: unknown; message: string }[] = [];
  const sweeper = new Sweeper({
    service: {
      bus: {
        request: async (subject: string, message: Message) => {
          expect(subject).toBe(subjects.node.build("sled", "sled-1"));
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
      list: () => [{ id: "sled-1", kind: "sled", alive: true } as Member],
      listening: () => false,
    },
    tenures: { held: current, current },
    marks,
    snapshots,
    graceMs,
    ...(pointers === undefined ? {} : { pointers }),
  });
  /** Stores a checkpoint blob on the sled and records its pointer. */
  const checkpoint = async (
    node: string,
    opNum: number,
    next: number,
    chunks: number[],
    snapshotIds: string[] = [],
  ) => {
    const bytes = checkpointBytes(opNum, next, chunks, snapshotIds);
    sled.blobs.set(blobKey(node, opNum), bytes);
    await catalogue.recordCheckpoint(name, 0, node, {
      opNum,
      blobKey: blobKey(node, opNum),
      sleds: ["sled-1"],
      bytes: bytes.byteLength,
      createdAtMs: 1,
    });
  };
  return {
    sled,
    sweeper,
    catalogue,
    checkpoint,
    leadership,
    snapshots,
    tenure,
    record,
    store,
    marks,
    logged,
  };
}

test("orphans are deleted on the second pass; referenced and newer chunks and named blobs stay", async () => {
  const { sled, sweeper, checkpoint } = await harness();
  await checkpoint("a", 10, 5, [1, 3]);
  await checkpoint("b", 9, 4, [1, 3]);
  for (const number of [1, 2, 3, 4, 7]) sled.chunks.add(chunkId(number));
  sled.blobs.set(blobKey("a", 8), new Uint8Array(10));

  await sweeper.sweep();
  expect(sled.requests).not.toContain("sled.chunk.delete.v1");
  await sweeper.sweep();
  // 2 is below both next numbers and in no table; 4 is at b's next number: kept.
  expect([...sled.chunks].sort()).toEqual([chunkId(1), chunkId(3), chunkId(4), chunkId(7)]);
  expect([...sled.blobs.keys()].sort()).toEqual([blobKey("a", 10), blobKey("b", 9)]);
  expect(sweeper.sweepStatus()).toMatchObject({ passes: 2, objectsFreed: 2, bytesFreed: 4106 });
});

describe("under leader churn", () => {
  // The shell's monotonic clock, driven by the test: every sled request takes 1 s.
  let clockMs = 1_000_000;
  beforeEach(() => {
    vi.spyOn(globalThis.performance, "now").mockImplementation(() => clockMs);
  });
  afterEach(() => {
    vi.restoreAllMocks();
  });
  const grace = 10_000;

  /** A sweeper whose every pass is in a new tenure (a new leader), 30 s after the last. */
  async function churned() {
    const built = await harness({}, undefined, grace);
    const answer = built.sled.answer.bind(built.sled);
    built.sled.answer = (message: Message) => {
      clockMs += 1000;
      return answer(message);
    };
    let term = 1;
    const pass = async () => {
      term++;
      built.leadership.tenure = { ...built.tenure, term } as Tenure;
      await built.sweeper.sweep();
      // Unmeasured by anyone: the leader dies, another takes over.
      clockMs += 30_000;
    };
    return { ...built, pass };
  }

  test("a new tenure's first pass is due at once, the next only an interval later", async () => {
    const { sweeper, leadership, tenure } = await harness();
    const passes = () => sweeper.sweepStatus().passes;
    await sweeper.sweepIfDue(30_000);
    expect(passes()).toBe(1);
    clockMs += 29_000;
    await sweeper.sweepIfDue(30_000);
    expect(passes()).toBe(1);
    clockMs += 1_000;
    await sweeper.sweepIfDue(30_000);
    expect(passes()).toBe(2);
    // A new leader (another tenure) sweeps at once: before, it waited a whole interval,
    // so one restarted more often than that never swept.
    clockMs += 1_000;
    leadership.tenure = { ...tenure, term: 2 } as Tenure;
    await sweeper.sweepIfDue(30_000);
    expect(passes()).toBe(3);
  });

  test("an orphan is deleted though no tenure lasts its grace (it never was before)", async () => {
    const { sled, checkpoint, pass, store } = await churned();
    await checkpoint("a", 10, 5, [1, 3]);
    await checkpoint("b", 9, 4, [1, 3]);
    for (const number of [1, 2, 3, 7]) sled.chunks.add(chunkId(number));
    sled.blobs.set(blobKey("a", 8), new Uint8Array(10));
    const passesToDelete: number[] = [];
    for (let passes = 1; passes <= 12; passes++) {
      await pass();
      if (!sled.chunks.has(chunkId(2))) passesToDelete.push(passes);
    }
    // Each tenure's pass lasts some 6 s of the 10 s grace, counted from its claim.
    expect(passesToDelete[0]).toBeLessThanOrEqual(4);
    expect([...sled.chunks].sort()).toEqual([chunkId(1), chunkId(3), chunkId(7)]);
    expect([...sled.blobs.keys()].sort()).toEqual([blobKey("a", 10), blobKey("b", 9)]);
    // Nothing left to hand on, and the last leader's term on the record.
    expect(store.value(keys.sweepSightings)).toEqual({
      term: 13,
      objects: [],
      snapshots: [],
    });
  });

  test("an upload recorded within the grace is never deleted, however often the leader changes", async () => {
    const { sled, checkpoint, pass } = await churned();
    await checkpoint("a", 10, 5, [1]);
    // Uploaded, its pointer not yet recorded: an orphan for two tenures (one of them
    // handing on 6 s served), then recorded and the one before it replaced.
    sled.blobs.set(blobKey("a", 11), checkpointBytes(11, 5, [1]));
    await pass();
    await pass();
    expect(sled.blobs.has(blobKey("a", 11))).toBe(true);
    await checkpoint("a", 11, 5, [1]);
    for (let passes = 0; passes < 6; passes++) await pass();
    expect(sled.blobs.has(blobKey("a", 11))).toBe(true);
    expect(sled.chunks.has(chunkId(1))).toBe(false);
  });

  test("a deposed leader's pass neither takes nor overwrites a later term's sightings", async () => {
    const { sled, checkpoint, pass, store, leadership, tenure, sweeper } = await churned();
    await checkpoint("a", 10, 5, []);
    sled.chunks.add(chunkId(2));
    await pass();
    await pass();
    const later = { term: 100, objects: [["x", 5]], snapshots: [] };
    store.put(keys.sweepSightings, later);
    leadership.tenure = { ...tenure, term: 50 } as Tenure;
    await sweeper.sweep();
    await sweeper.sweep();
    expect(store.value(keys.sweepSightings)).toEqual(later);
  });
});

test("sightings of another shape in the store are taken as none", async () => {
  const { sled, sweeper, checkpoint, store } = await harness();
  store.put(keys.sweepSightings, { term: 0, objects: "junk", snapshots: { a: 1 } });
  await checkpoint("a", 10, 5, []);
  sled.chunks.add(chunkId(2));
  await sweeper.sweep();
  expect(sled.chunks.has(chunkId(2))).toBe(true);
  await sweeper.sweep();
  expect(sled.chunks.has(chunkId(2))).toBe(false);
});

test("a recorded checkpoint whose header no sled returns keeps the whole partition", async () => {
  const { sled, sweeper, checkpoint } = await harness();
  await checkpoint("a", 10, 5, [1]);
  await checkpoint("b", 9, 5, [1, 3]);
  sled.blobs.delete(blobKey("b", 9));
  for (const number of [1, 2, 3]) sled.chunks.add(chunkId(number));
  sled.blobs.set(blobKey("a", 8), new Uint8Array(10));
  for (let pass = 0; pass < 3; pass++) await sweeper.sweep();
  expect([...sled.chunks].sort()).toEqual([chunkId(1), chunkId(2), chunkId(3)]);
  expect(sled.blobs.has(blobKey("a", 8))).toBe(true);
  expect(sweeper.sweepStatus().objectsFreed).toBe(0);
});

test("a restored catalogue's older pointers do not make the replicas' newer checkpoints orphans", async () => {
  const { sled, sweeper, checkpoint } = await harness();
  // The copy's pointers: a at op 10, b at op 9, their blobs still on the sled (it missed
  // the deletes of the replaced blobs). Since the copy, both replicas checkpointed at op
  // 30 (chunk 7 added), recorded only in the newer catalogue the copy stands in for.
  await checkpoint("a", 10, 5, [1]);
  await checkpoint("b", 9, 5, [1]);
  sled.blobs.set(blobKey("a", 30), checkpointBytes(30, 8, [1, 7]));
  sled.blobs.set(blobKey("b", 30), checkpointBytes(30, 8, [1, 7]));
  for (const number of [1, 7]) sled.chunks.add(chunkId(number));
  for (let pass = 0; pass < 3; pass++) await sweeper.sweep();
  expect([...sled.blobs.keys()].sort()).toEqual(
    [blobKey("a", 10), blobKey("a", 30), blobKey("b", 9), blobKey("b", 30)].sort(),
  );
  expect([...sled.chunks].sort()).toEqual([chunkId(1), chunkId(7)]);
  // Once a newer checkpoint is recorded, what it supersedes goes the ordinary way.
  await checkpoint("a", 31, 8, [1, 7]);
  await checkpoint("b", 31, 8, [1, 7]);
  for (let pass = 0; pass < 2; pass++) await sweeper.sweep();
  expect([...sled.blobs.keys()].sort()).toEqual([blobKey("a", 31), blobKey("b", 31)]);
});

test("while the control store's marks refuse, the orphan sweep deletes and drops nothing", async () => {
  const { sled, sweeper, checkpoint, snapshots, marks, logged } = await harness();
  // A restored catalogue: the replicas' checkpoint holds a snapshot taken after the copy
  // (no record names it), and chunk 2 is an orphan by its pointers.
  await checkpoint("a", 10, 5, [1], ["taken-after-the-copy"]);
  for (const number of [1, 2]) sled.chunks.add(chunkId(number));
  marks.reason = "sled-1 witnessed catalogue sequence 7, this catalogue is at 6";
  for (let pass = 0; pass < 10; pass++) await sweeper.sweep();
  expect(sled.chunks.has(chunkId(2))).toBe(true);
  expect(snapshots.dropped).toEqual([]);
  expect(sled.requests).not.toContain("sled.chunk.delete.v1");
  // Said once, not once a pass.
  expect(logged.filter((line) => line.message.startsWith("orphan sweep skipped"))).toHaveLength(1);

  // Lifted: sightings start afresh (none served while refused), then the grace (0 here).
  marks.reason = undefined;
  await sweeper.sweep();
  expect(sled.chunks.has(chunkId(2))).toBe(true);
  expect(
    logged.filter((line) => line.message.startsWith("the orphan sweep runs again")),
  ).toHaveLength(1);

  // A refusal that comes while a pass reads (a sled read meanwhile holds another
  // store's mark) stops that pass before anything is sighted or deleted.
  const answer = sled.answer.bind(sled);
  sled.answer = (message: Message) => {
    if (message.type === "sled.chunk.list.v1") marks.reason = "another store's mark on sled-1";
    return answer(message);
  };
  await sweeper.sweep();
  expect(sled.chunks.has(chunkId(2))).toBe(true);
  expect(snapshots.dropped).toEqual([]);
  sled.answer = answer;
  marks.reason = undefined;
  await sweeper.sweep();
  expect(sled.chunks.has(chunkId(2))).toBe(true);
  await sweeper.sweep();
  expect(sled.chunks.has(chunkId(2))).toBe(false);
  expect(snapshots.dropped).toEqual(["taken-after-the-copy"]);
});

test("a lasting listing failure and a pass's deletes are said in a few lines, not per pass or per object", async () => {
  const { sled, sweeper, checkpoint, logged } = await harness();
  await checkpoint("a", 10, 5, []);
  for (const number of [0, 1, 2, 3]) sled.chunks.add(chunkId(number));
  const answer = sled.answer.bind(sled);
  sled.answer = (message: Message) => {
    if (message.type === "sled.chunk.list.v1") throw new BallastError(ErrorCode.Internal, "no");
    return answer(message);
  };
  const lines = (pattern: RegExp) => logged.filter((line) => pattern.test(line.message));
  for (let pass = 0; pass < 10; pass++) await sweeper.sweep();
  expect(lines(/could not list/)).toHaveLength(1);
  sled.answer = answer;
  await sweeper.sweep();
  await sweeper.sweep();
  expect(lines(/listed a sled's objects to sweep again/)).toHaveLength(1);
  // Four orphans deleted in one pass: one line, counting them.
  expect(sled.chunks.size).toBe(0);
  expect(lines(/^deleted /).map((line) => line.fields)).toEqual([
    expect.objectContaining({ deleted: 4, bytes: 4 * 4096 }),
  ]);
});

test("a partition with no recorded checkpoint keeps everything", async () => {
  const { sled, sweeper } = await harness();
  sled.chunks.add(chunkId(0));
  sled.blobs.set(blobKey("a", 1), new Uint8Array(10));
  for (let pass = 0; pass < 3; pass++) await sweeper.sweep();
  expect([...sled.chunks]).toEqual([chunkId(0)]);
  expect([...sled.blobs.keys()]).toEqual([blobKey("a", 1)]);
});

test("a departed node's pointer is forgotten once a member's is as new, then its blob is swept", async () => {
  const { sled, sweeper, catalogue, checkpoint } = await harness();
  await checkpoint("a", 10, 5, [1]);
  await checkpoint("gone", 12, 5, [1]);
  await sweeper.sweep();
  // A member's pointer is older than the departed node's: it may be the newest state.
  expect(await catalogue.checkpoint(name, 0, "gone")).toBeDefined();
  await checkpoint("b", 12, 5, [1]);
  await sweeper.sweep();
  expect(await catalogue.checkpoint(name, 0, "gone")).toBeUndefined();
  await sweeper.sweep();
  await sweeper.sweep();
  expect([...sled.blobs.keys()].sort()).toEqual([blobKey("a", 10), blobKey("b", 12)]);
});

test("a learner's or joining node's pointer is a member's and stays", async () => {
  const { sweeper, catalogue, checkpoint } = await harness({ learners: ["c"], joining: ["d"] });
  await checkpoint("a", 20, 5, []);
  await checkpoint("c", 3, 5, []);
  await checkpoint("d", 4, 5, []);
  await sweeper.sweep();
  expect(await catalogue.checkpoint(name, 0, "c")).toBeDefined();
  expect(await catalogue.checkpoint(name, 0, "d")).toBeDefined();
});

test("no pass runs while this coordinator does not lead", async () => {
  const { sled, sweeper, checkpoint, leadership } = await harness();
  await checkpoint("a", 10, 5, []);
  sled.chunks.add(chunkId(0));
  leadership.leading = false;
  await sweeper.sweep();
  await sweeper.sweep();
  expect(sled.requests).toEqual([]);
  expect(sled.chunks.size).toBe(1);
});

test("a snapshot id no record names is dropped on the second pass; recorded and creating ones stay", async () => {
  const { sweeper, catalogue, checkpoint, snapshots } = await harness();
  await checkpoint("a", 10, 5, [1], ["kept", "half", "creating"]);
  await checkpoint("b", 9, 5, [1], ["kept", "half"]);
  await catalogue.recordSnapshot({
    volume: name,
    name: "monday",
    id: "kept",
    volumeId,
    createdAtMs: 1,
    partitions: [{ index: 0, opNum: 8 }],
  });
  snapshots.creating.add("creating");
  await sweeper.sweep();
  expect(snapshots.dropped).toEqual([]);
  await sweeper.sweep();
  expect(snapshots.dropped).toEqual(["half"]);
  expect(sweeper.sweepStatus().snapshotsDropped).toBe(1);
});

test("an unrecorded snapshot a partition did not drop is not counted, and is tried again", async () => {
  const { sweeper, checkpoint, snapshots } = await harness();
  await checkpoint("a", 10, 5, [1], ["half"]);
  snapshots.reachesEvery = false;
  await sweeper.sweep();
  await sweeper.sweep();
  expect(snapshots.dropped).toEqual(["half"]);
  expect(sweeper.sweepStatus().snapshotsDropped).toBe(0);
  snapshots.reachesEvery = true;
  await sweeper.sweep();
  expect(snapshots.dropped).toEqual(["half", "half"]);
  expect(sweeper.sweepStatus().snapshotsDropped).toBe(1);
});

test("a delete left marked is finished every pass until it is done; its id is not taken for an orphan", async () => {
  const { sweeper, checkpoint, snapshots, store } = await harness();
  await checkpoint("a", 10, 5, [1], ["kept", "going"]);
  const record = (id: string, incarnation = volumeId) => ({
    volume: name,
    name: id,
    id,
    volumeId: incarnation,
    createdAtMs: 1,
    partitions: [{ index: 0, opNum: 8 }],
  });
  store.put(`snapshot.${name}.kept`, record("kept"));
  // A delete cut off after its mark (the leader died, or a partition missed its drop).
  store.put(`snapshot.${name}.going`, { ...record("going"), deletingSinceMs: 1 });
  // A mark on a deleted incarnation's record: its trees went with that incarnation.
  store.put(`snapshot.${name}.stale`, { ...record("stale", "0-bbbbbbbbbbbb"), deletingSinceMs: 1 });
  snapshots.reachesEvery = false;
  await sweeper.sweep();
  expect(snapshots.finished).toEqual(["going"]);
  snapshots.reachesEvery = true;
  await sweeper.sweep();
  expect(snapshots.finished).toEqual(["going", "going"]);
  // Marked, it still counts as recorded: no orphan drop besides the delete's own.
  expect(snapshots.dropped).toEqual([]);
});

test("a creating snapshot record keeps its id; past its grace it is removed, then its id dropped as an orphan", async () => {
  const { sweeper, checkpoint, snapshots, store } = await harness();
  await checkpoint("a", 10, 5, [1], ["running", "stalled"]);
  const creating = (id: string, sinceMs: number) => ({
    volume: name,
    name: id,
    id,
    volumeId,
    createdAtMs: sinceMs,
    partitions: [],
    creatingSinceMs: sinceMs,
  });
  // A create in flight on any leader, and one whose leader stalled or died a grace ago.
  store.put(`snapshot.${name}.running`, creating("running", Date.now()));
  store.put(
    `snapshot.${name}.stalled`,
    creating("stalled", Date.now() - snapshotCreatingGraceMs - 1),
  );
  await sweeper.sweep();
  expect(store.value(`snapshot.${name}.stalled`)).toBeUndefined();
  expect(store.value(`snapshot.${name}.running`)).toBeDefined();
  expect(sweeper.sweepStatus().staleCreatesRemoved).toBe(1);
  // Counted as recorded on the pass that removed it: its grace as an orphan starts next.
  await sweeper.sweep();
  expect(snapshots.dropped).toEqual([]);
  await sweeper.sweep();
  // The running create's id is never dropped while its record names it.
  expect(snapshots.dropped).toEqual(["stalled"]);
  expect(store.value(`snapshot.${name}.running`)).toBeDefined();
});

test("a creating record listed after the pass read it is not removed", async () => {
  const { sweeper, checkpoint, store, catalogue } = await harness();
  await checkpoint("a", 10, 5, [1], ["late"]);
  const sinceMs = Date.now() - snapshotCreatingGraceMs - 1;
  const record = {
    volume: name,
    name: "late",
    id: "late",
    volumeId,
    createdAtMs: sinceMs,
    partitions: [{ index: 0, opNum: 8 }],
  };
  const revision = store.put(`snapshot.${name}.late`, { ...record, creatingSinceMs: sinceMs });
  // The stalled leader resumes and lists it between the pass's read and its removal.
  const read = catalogue.snapshotsIncludingDeleting.bind(catalogue);
  catalogue.snapshotsIncludingDeleting = async (volume: string) => {
    const found = await read(volume);
    await catalogue.listSnapshot({ value: record, revision }, record);
    return found;
  };
  await sweeper.sweep();
  expect(store.value(`snapshot.${name}.late`)).toEqual(record);
  expect(sweeper.sweepStatus().staleCreatesRemoved).toBe(0);
});

test("a volume record still creating past its grace is removed; one within it and listed ones stay", async () => {
  const { sweeper, store } = await harness();
  const volume = (volumeName: string, sinceMs: number) => ({
    name: volumeName,
    id: `1-${volumeName}`,
    sizeBytes: 1,
    replicaCount: 2,
    partitionBytes: 1,
    createdAtMs: sinceMs,
    creatingSinceMs: sinceMs,
  });
  store.put(keys.volume("stalled"), volume("stalled", Date.now() - volumeCreatingGraceMs - 1));
  store.put(keys.volume("running"), volume("running", Date.now()));
  await sweeper.sweep();
  expect(store.value(keys.volume("stalled"))).toBeUndefined();
  expect(store.value(keys.volume("running"))).toBeDefined();
  expect(store.value(keys.volume(name))).toBeDefined();
  expect(sweeper.sweepStatus().staleCreatesRemoved).toBe(1);
});

test("departures are judged on the leader's copy of the records, none with a write in flight or unclear", async () => {
  const { sweeper, catalogue, checkpoint, tenure, record } = await harness();
  await checkpoint("a", 10, 5, [1]);
  await checkpoint("b", 10, 5, [1]);
  // c has departed (the record's members are a and b), and a's pointer is as new.
  await checkpoint("c", 10, 5, [1]);
  // A write of the partition in flight, then one unclear: nothing is forgotten.
  const key = partitionKey(record);
  tenure.inflight.add(key);
  await sweeper.sweep();
  tenure.inflight.delete(key);
  tenure.unsure.add(key);
  await sweeper.sweep();
  expect(await catalogue.checkpoint(name, 0, "c")).toBeDefined();
  tenure.unsure.delete(key);
  await sweeper.sweep();
  expect(await catalogue.checkpoint(name, 0, "c")).toBeUndefined();
  expect(await catalogue.checkpoint(name, 0, "b")).toBeDefined();
});

test("a checkpoint's header is read once while its pointer stays recorded", async () => {
  const { sled, sweeper, checkpoint } = await harness();
  await checkpoint("a", 10, 5, [1, 3]);
  await checkpoint("b", 9, 4, [1, 3]);
  for (const number of [1, 2, 3]) sled.chunks.add(chunkId(number));
  // Two requests a header: its length, then the rest.
  const reads = () => sled.requests.filter((type) => type === "sled.blob.get.v1").length;
  await sweeper.sweep();
  expect(reads()).toBe(4);
  await sweeper.sweep();
  expect(reads()).toBe(4);
  // The orphan went on the second pass, from headers kept from the first.
  expect([...sled.chunks].sort()).toEqual([chunkId(1), chunkId(3)]);
  // A new checkpoint of b: its header is read, a's still is not; b's old blob goes.
  await checkpoint("b", 12, 6, [1, 3, 5]);
  sled.chunks.add(chunkId(5));
  await sweeper.sweep();
  expect(reads()).toBe(6);
  await sweeper.sweep();
  expect(reads()).toBe(6);
  expect([...sled.blobs.keys()].sort()).toEqual([blobKey("a", 10), blobKey("b", 12)]);
  expect([...sled.chunks].sort()).toEqual([chunkId(1), chunkId(3), chunkId(5)]);
});

test("after a complete pass, the pointer watch keeps counts only for the volumes the pass found live", async () => {
  const retained: string[][] = [];
  const { sweeper, store } = await harness(
    {},
    {
      sync: async () => ({ generation: 1, counts: new Map([[name, 1]]) }),
      retain: (names) => {
        retained.push([...names]);
      },
    },
  );
  await sweeper.sweep();
  expect(retained).toEqual([[name]]);
  // Deleted: the next pass keeps no name, and the watch forgets the volume's count.
  await store.delete(keys.volume(name));
  await sweeper.sweep();
  expect(retained).toEqual([[name], []]);
});

test("a volume's pointers are read again only when the watch counted a change before this pass's mark", async () => {
  let versions: PointerVersions | undefined = { generation: 1, counts: new Map([[name, 4]]) };
  const { sled, sweeper, catalogue, checkpoint } = await harness(
    {},
    { sync: async () => versions },
  );
  let reads = 0;
  const checkpoints = catalogue.checkpoints.bind(catalogue);
  catalogue.checkpoints = (volume: string) => {
    reads++;
    return checkpoints(volume);
  };
  await checkpoint("a", 10, 5, [1]);
  await checkpoint("b", 9, 5, [1]);
  for (const number of [1, 2]) sled.chunks.add(chunkId(number));
  await sweeper.sweep();
  await sweeper.sweep();
  expect(reads).toBe(1);
  expect([...sled.chunks]).toEqual([chunkId(1)]);
  // b records a new checkpoint (its blob is on the sled before its pointer): counted,
  // so read again, and its blob is kept.
  await checkpoint("b", 12, 6, [1, 5]);
  versions = { generation: 1, counts: new Map([[name, 5]]) };
  await sweeper.sweep();
  await sweeper.sweep();
  expect(reads).toBe(2);
  expect([...sled.blobs.keys()].sort()).toEqual([blobKey("a", 10), blobKey("b", 12)]);
  // A new watch generation, or no proof at all: read again.
  versions = { generation: 2, counts: new Map([[name, 5]]) };
  await sweeper.sweep();
  expect(reads).toBe(3);
  versions = undefined;
  await sweeper.sweep();
  await sweeper.sweep();
  expect(reads).toBe(5);
});
