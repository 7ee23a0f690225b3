import { type CheckpointHeader, hashedChunkIdPrefixOf } from "@ballast/protocol";
import { describe, expect, test } from "vitest";
import { Catalogue, type CheckpointPointer } from "../src/catalogue.ts";
import {
  departedPointers,
  orphansOn,
  type PartitionCheckpoints,
  partitionCheckpointsOf,
  type RecordedCheckpoint,
  type Sighting,
  SweepConfirmations,
  type SweptInventory,
  type SweptVolume,
  type UnrecordedSnapshot,
  unrecordedSnapshotKey,
  unrecordedSnapshotsOf,
} from "../src/sweep.ts";
import { FakeStore } from "./fake-store.ts";

const volumeId = "1-abc";
const name = "vol";
const chunkId = (partition: number, chunkNumber: number) =>
  `${volumeId}-p${partition}-e1-s1-c${chunkNumber}`;
const blobKey = (partition: number, node: string, opNum: number) =>
  `checkpoints/${volumeId}/${partition}/${node}/${opNum}-1-1`;

function checkpoint(
  node: string,
  nextChunkNumber: number,
  chunkNumbers: number[],
  partition = 0,
  snapshotIds: string[] = [],
): RecordedCheckpoint {
  return {
    node,
    opNum: 10,
    blobKey: blobKey(partition, node, 10),
    nextChunkNumber,
    chunkIds: chunkNumbers.map((number) => chunkId(partition, number)),
    snapshotIds,
    sleds: [],
  };
}

function volumeWith(partitions: [number, PartitionCheckpoints][]): SweptVolume {
  return { name, volumeId, partitions: new Map(partitions) };
}

function inventory(chunks: [number, number][], blobs: string[] = []): SweptInventory {
  return {
    chunks: chunks.map(([partition, number]) => ({
      chunkId: chunkId(partition, number),
      owner: { volume: name, partition },
      bytes: 4096,
    })),
    blobs: blobs.map((key) => ({ key, bytes: 100 })),
  };
}

const ids = (targets: ReturnType<typeof orphansOn>) =>
  targets.map((target) => (target.kind === "chunk" ? target.chunkId : target.key));

describe("which objects are orphans", () => {
  const read = (checkpoints: RecordedCheckpoint[]): PartitionCheckpoints => ({
    kind: "read",
    checkpoints,
  });

  test("a chunk in a recorded checkpoint's table is kept, whatever its number", () => {
    const volume = volumeWith([[0, read([checkpoint("a", 10, [2]), checkpoint("b", 10, [])])]]);
    expect(orphansOn("s1", volume, inventory([[0, 2]]))).toEqual([]);
  });

  test("a chunk below every checkpoint's next number and in no table is an orphan", () => {
    const volume = volumeWith([[0, read([checkpoint("a", 10, [2]), checkpoint("b", 12, [2])])]]);
    const found = orphansOn("s1", volume, inventory([[0, 3]]));
    expect(found).toEqual([
      {
        kind: "chunk",
        sled: "s1",
        volume: name,
        volumeId,
        chunkId: chunkId(0, 3),
        owner: { volume: name, partition: 0 },
        bytes: 4096,
      },
    ]);
  });

  test("a chunk numbered at or above the least next chunk number is kept", () => {
    // b's checkpoint is older: chunk 10 may be added by records after it.
    const volume = volumeWith([[0, read([checkpoint("a", 20, []), checkpoint("b", 10, [])])]]);
    expect(
      ids(
        orphansOn(
          "s1",
          volume,
          inventory([
            [0, 9],
            [0, 10],
            [0, 15],
          ]),
        ),
      ),
    ).toEqual([chunkId(0, 9)]);
  });

  test("a partition without a recorded checkpoint, or unread, keeps everything", () => {
    const volume = volumeWith([
      [0, read([])],
      [1, { kind: "unreadable", reason: "header fetch failed" }],
    ]);
    const held = inventory(
      [
        [0, 0],
        [1, 0],
        [2, 0],
      ],
      [blobKey(0, "a", 1), blobKey(1, "a", 1), blobKey(2, "a", 1)],
    );
    expect(orphansOn("s1", volume, held)).toEqual([]);
  });

  test("objects of another incarnation, or whose owner disagrees with their id, are kept", () => {
    const volume = volumeWith([[0, read([checkpoint("a", 10, [])])]]);
    const held: SweptInventory = {
      chunks: [
        // A deleted incarnation of the same name: the purger's.
        { chunkId: "0-old-p0-e1-s1-c1", owner: { volume: name, partition: 0 }, bytes: 1 },
        // The id says partition 0, the owner partition 1.
        { chunkId: chunkId(0, 1), owner: { volume: name, partition: 1 }, bytes: 1 },
        // Another volume's owner.
        { chunkId: chunkId(0, 2), owner: { volume: "other", partition: 0 }, bytes: 1 },
      ],
      blobs: [
        { key: "checkpoints/0-old/0/a/1-1-1", bytes: 1 },
        { key: `checkpoints/${volumeId}/0/odd`, bytes: 1 },
      ],
    };
    expect(orphansOn("s1", volume, held)).toEqual([]);
  });

  test("a blob newer than every recorded pointer is kept: the catalogue may be an older copy", () => {
    // Recorded: a at op 10 and b at op 8 (a restored copy's pointers, say). On the sled:
    // a's and c's checkpoints at op 30 (the replicas' real newest, recorded only in the
    // newer catalogue), one at the newest recorded op under another upload, and stale
    // ones below it.
    const older = { ...checkpoint("b", 10, []), opNum: 8, blobKey: blobKey(0, "b", 8) };
    const volume = volumeWith([[0, read([checkpoint("a", 10, []), older])]]);
    const held = [
      blobKey(0, "a", 30),
      blobKey(0, "c", 30),
      `checkpoints/${volumeId}/0/a/10-1-2`,
      blobKey(0, "b", 9),
      blobKey(0, "a", 3),
    ];
    expect(ids(orphansOn("s1", volume, inventory([], held))).sort()).toEqual(
      [`checkpoints/${volumeId}/0/a/10-1-2`, blobKey(0, "b", 9), blobKey(0, "a", 3)].sort(),
    );
  });

  test("a checkpoint blob no recorded pointer names is an orphan; a named one is kept", () => {
    const volume = volumeWith([[0, read([checkpoint("a", 10, [])])]]);
    const stray = blobKey(0, "gone", 3);
    expect(ids(orphansOn("s1", volume, inventory([], [blobKey(0, "a", 10), stray])))).toEqual([
      stray,
    ]);
  });

  test("hashed chunk ids of a long volume id are judged like readable ones", () => {
    const longId = `1-${"x".repeat(60)}`;
    const hashed = hashedChunkIdPrefixOf(longId);
    const volume: SweptVolume = {
      name,
      volumeId: longId,
      partitions: new Map([
        [
          0,
          read([
            {
              node: "a",
              opNum: 1,
              blobKey: `checkpoints/${longId}/0/a/1-1-1`,
              nextChunkNumber: 40,
              chunkIds: [`${hashed}-p0-e1-s1-c5`],
              snapshotIds: [],
              sleds: [],
            },
          ]),
        ],
      ]),
    };
    const held: SweptInventory = {
      // Chunk 5 is listed; chunk 6 is not; chunk 40 ("14" in base 36) is too new.
      chunks: [5, 6, 40].map((number) => ({
        chunkId: `${hashed}-p0-e1-s1-c${number.toString(36)}`,
        owner: { volume: name, partition: 0 },
        bytes: 1,
      })),
      blobs: [],
    };
    expect(ids(orphansOn("s1", volume, held))).toEqual([`${hashed}-p0-e1-s1-c6`]);
  });
});

describe("reading a partition's recorded checkpoints", () => {
  const pointer = (node: string, opNum: number): CheckpointPointer => ({
    opNum,
    blobKey: blobKey(0, node, opNum),
    sleds: ["s1", "s2"],
    bytes: 100,
    createdAtMs: 0,
  });
  const header = (opNum: number, nextChunkNumber: number, chunks: number[]): CheckpointHeader => ({
    format: 1,
    opNum,
    flushedThroughOpNum: opNum,
    flushedThroughEpoch: 1,
    flushedThroughSession: 1,
    nextChunkNumber,
    chunks: chunks.map((number) => [number, chunkId(0, number), ["s1"], 10]),
  });

  test("every pointer read gives its next chunk number and table", () => {
    const pointers = new Map([
      ["a", pointer("a", 5)],
      ["b", pointer("b", 7)],
    ]);
    const headers = new Map([
      [blobKey(0, "a", 5), header(5, 3, [1])],
      [blobKey(0, "b", 7), header(7, 4, [1, 3])],
    ]);
    // A format 2 header lists its snapshots; format 1 has none.
    headers.set(blobKey(0, "a", 5), {
      ...header(5, 3, [1]),
      format: 2,
      treeBytes: 0,
      snapshots: [["snap-1", 4, 0]],
    });
    expect(partitionCheckpointsOf(volumeId, 0, pointers, headers)).toEqual({
      kind: "read",
      checkpoints: [
        {
          node: "a",
          opNum: 5,
          blobKey: blobKey(0, "a", 5),
          nextChunkNumber: 3,
          chunkIds: [chunkId(0, 1)],
          snapshotIds: ["snap-1"],
          sleds: ["s1", "s2"],
        },
        {
          node: "b",
          opNum: 7,
          blobKey: blobKey(0, "b", 7),
          nextChunkNumber: 4,
          chunkIds: [chunkId(0, 1), chunkId(0, 3)],
          snapshotIds: [],
          sleds: ["s1", "s2"],
        },
      ],
    });
  });

  test("an unreadable header keeps the partition: nothing of it is an orphan", () => {
    const pointers = new Map([
      ["a", pointer("a", 5)],
      ["b", pointer("b", 7)],
    ]);
    // b's header could not be fetched: had it been left out, chunk 3 (in b's table
    // only) and chunk 2 would look like orphans.
    const headers = new Map([[blobKey(0, "a", 5), header(5, 10, [1])]]);
    const state = partitionCheckpointsOf(volumeId, 0, pointers, headers);
    expect(state.kind).toBe("unreadable");
    const volume = volumeWith([[0, state]]);
    expect(
      orphansOn(
        "s1",
        volume,
        inventory(
          [
            [0, 2],
            [0, 3],
          ],
          [blobKey(0, "x", 1)],
        ),
      ),
    ).toEqual([]);
  });

  test("a header that disagrees with its pointer, or a pointer of another incarnation, keeps the partition", () => {
    const pointers = new Map([["a", pointer("a", 5)]]);
    expect(
      partitionCheckpointsOf(
        volumeId,
        0,
        pointers,
        new Map([[blobKey(0, "a", 5), header(6, 3, [])]]),
      ).kind,
    ).toBe("unreadable");
    const foreign = new Map([
      ["a", { ...pointer("a", 5), blobKey: "checkpoints/0-old/0/a/5-1-1" }],
    ]);
    expect(
      partitionCheckpointsOf(
        volumeId,
        0,
        foreign,
        new Map([["checkpoints/0-old/0/a/5-1-1", header(5, 3, [])]]),
      ).kind,
    ).toBe("unreadable");
  });
});

describe("the two-pass confirmation", () => {
  const volume = volumeWith([[0, { kind: "read", checkpoints: [checkpoint("a", 10, [])] }]]);
  const orphan = orphansOn("s1", volume, inventory([[0, 1]]));

  test("an unreferenced chunk is due only on a later pass at least the grace after the first", () => {
    const confirmations = new SweepConfirmations(60_000);
    expect(confirmations.confirm(orphan, 1000)).toEqual([]);
    expect(confirmations.confirm(orphan, 30_000)).toEqual([]);
    expect(confirmations.confirm(orphan, 60_999)).toEqual([]);
    expect(confirmations.confirm(orphan, 61_000)).toEqual(orphan);
  });

  test("an orphan missing from a pass starts its grace again", () => {
    const confirmations = new SweepConfirmations(60_000);
    expect(confirmations.confirm(orphan, 0)).toEqual([]);
    // Referenced again, or its sled did not answer: forgotten.
    expect(confirmations.confirm([], 30_000)).toEqual([]);
    expect(confirmations.confirm(orphan, 70_000)).toEqual([]);
    expect(confirmations.waiting).toBe(1);
    expect(confirmations.confirm(orphan, 130_000)).toEqual(orphan);
  });

  test("the same object on two sleds is confirmed on each sled separately", () => {
    const confirmations = new SweepConfirmations(10);
    const other = orphansOn("s2", volume, inventory([[0, 1]]));
    confirmations.confirm(orphan, 0);
    expect(confirmations.confirm([...orphan, ...other], 10)).toEqual(orphan);
  });
});

describe("confirmation across leader changes (sightings handed on)", () => {
  const grace = 60_000;
  /** A leader whose tenure holds one pass: it claims, passes `passMs` later, hands on. */
  function tenure(
    handed: readonly Sighting[],
    clockOffsetMs: number,
    claimAtMs: number,
    passMs: number,
    orphans: ReturnType<typeof orphansOn>,
  ) {
    // Every leader's monotonic clock has its own origin: only differences on one count.
    const confirmations = new SweepConfirmations(grace);
    confirmations.inherit(handed, claimAtMs + clockOffsetMs);
    const due = confirmations.confirm(orphans, claimAtMs + passMs + clockOffsetMs);
    return { due, handed: confirmations.sightings(100) };
  }

  test("an orphan is deleted though the leader changes every pass, far sooner than the grace", () => {
    // The chunk numbered 1 is unreferenced (below next 10, in no table), 2 is in a table,
    // and the blob is an upload whose pointer is recorded in the 4th tenure.
    const upload = blobKey(0, "a", 12);
    const before = volumeWith([[0, { kind: "read", checkpoints: [checkpoint("a", 10, [2])] }]]);
    const after = volumeWith([
      [
        0,
        {
          kind: "read",
          checkpoints: [checkpoint("a", 10, [2]), { ...checkpoint("a", 10, [2]), blobKey: upload }],
        },
      ],
    ]);
    let handed: readonly Sighting[] = [];
    const deleted: { pass: number; ids: string[] }[] = [];
    let realMs = 0;
    for (let pass = 0; pass < 30; pass++) {
      const volume = pass < 3 ? before : after;
      const orphans = orphansOn(
        "s1",
        volume,
        inventory(
          [
            [0, 1],
            [0, 2],
          ],
          [upload],
        ),
      );
      // 20 s between a claim and its pass, 5 s from a pass to the next leader's claim.
      const result = tenure(handed, (pass * 7_919_000) % 1_000_003, realMs, 20_000, orphans);
      if (result.due.length > 0) deleted.push({ pass, ids: ids(result.due) });
      handed = result.handed;
      realMs += 25_000;
    }
    // Served from its first sighting (pass 0), 20 s per later tenure: due at the fourth
    // pass, 75 s after it was first seen. A confirmation per tenure never made it due.
    expect(deleted[0]).toEqual({ pass: 3, ids: [chunkId(0, 1)] });
    // Referenced, or an upload orphaned for 50 s and then recorded: never.
    expect(deleted.flatMap((entry) => entry.ids)).not.toContain(chunkId(0, 2));
    expect(deleted.flatMap((entry) => entry.ids)).not.toContain(upload);
  });

  test("an upload recorded within the grace is never due, however often the leader changes", () => {
    const upload = blobKey(0, "a", 12);
    const before = volumeWith([[0, { kind: "read", checkpoints: [checkpoint("a", 10, [])] }]]);
    const after = volumeWith([
      [0, { kind: "read", checkpoints: [{ ...checkpoint("a", 10, []), blobKey: upload }] }],
    ]);
    let handed: readonly Sighting[] = [];
    let realMs = 0;
    for (let pass = 0; pass < 40; pass++) {
      // Recorded 50 s after it was first seen (passes at 20, 45 s...), then for good.
      const volume = realMs + 20_000 < 50_000 ? before : after;
      const orphans = orphansOn("s1", volume, inventory([], [upload]));
      const result = tenure(handed, -pass * 1_000_000, realMs, 20_000, orphans);
      expect(result.due).toEqual([]);
      handed = result.handed;
      realMs += 25_000;
    }
    expect(handed).toEqual([]);
  });

  test("nothing is due before the grace has passed in real time since its first sighting", () => {
    // Random tenures (1 to 3 passes, gaps, clock origins), some of which fail to hand on
    // (the record keeps what was handed before), and an orphan some passes miss. Real
    // time is tracked beside: `run` is when the run of sightings that the served time
    // stands for began, in this tenure and as handed on.
    let seed = 7;
    const random = () => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const volume = volumeWith([[0, { kind: "read", checkpoints: [checkpoint("a", 10, [])] }]]);
    const orphan = orphansOn("s1", volume, inventory([[0, 1]]));
    let handed: { sightings: readonly Sighting[]; run: number | undefined } = {
      sightings: [],
      run: undefined,
    };
    let realMs = 0;
    let dueCount = 0;
    for (let tenures = 0; tenures < 2000; tenures++) {
      const offset = Math.floor(random() * 1e9) - 5e8;
      const confirmations = new SweepConfirmations(grace);
      realMs += Math.floor(random() * 10_000);
      confirmations.inherit(handed.sightings, realMs + offset);
      let run = handed.run;
      const passes = 1 + Math.floor(random() * 3);
      for (let pass = 0; pass < passes; pass++) {
        realMs += Math.floor(random() * 30_000);
        const seen = random() < 0.9;
        run = seen ? (run ?? realMs) : undefined;
        const due = confirmations.confirm(seen ? orphan : [], realMs + offset);
        if (due.length > 0) {
          dueCount++;
          expect(realMs - run!).toBeGreaterThanOrEqual(grace);
        }
      }
      if (random() < 0.8) {
        const sightings = confirmations.sightings(100);
        handed = { sightings, run: sightings.length > 0 ? run : undefined };
      }
    }
    expect(dueCount).toBeGreaterThan(100);
  });

  test("at most the named number of sightings is handed on, most served first", () => {
    const volume = volumeWith([[0, { kind: "read", checkpoints: [checkpoint("a", 10, [])] }]]);
    const confirmations = new SweepConfirmations(grace);
    confirmations.inherit([[`s1\nchunk\n${chunkId(0, 3)}`, 500]], 0);
    confirmations.confirm(orphansOn("s1", volume, inventory([[0, 1]])), 1000);
    confirmations.confirm(
      orphansOn(
        "s1",
        volume,
        inventory([
          [0, 1],
          [0, 2],
          [0, 3],
        ]),
      ),
      3000,
    );
    // 3 was not seen in the first pass after the claim: its handed sighting is gone.
    expect(confirmations.sightings(2)).toEqual([
      [`s1\nchunk\n${chunkId(0, 1)}`, 2000],
      [`s1\nchunk\n${chunkId(0, 2)}`, 0],
    ]);
  });

  test("sightings of another shape hand nothing on", () => {
    const volume = volumeWith([[0, { kind: "read", checkpoints: [checkpoint("a", 10, [])] }]]);
    const orphan = orphansOn("s1", volume, inventory([[0, 1]]));
    const key = `s1\nchunk\n${chunkId(0, 1)}`;
    for (const junk of [{}, [[key, "60000"]], [[key, -1]], [[key, Number.NaN]], [key, 60_000]]) {
      const confirmations = new SweepConfirmations(grace);
      confirmations.inherit(junk as never, 0);
      expect(confirmations.confirm(orphan, 1)).toEqual([]);
    }
  });
});

describe("departed replicas' pointers", () => {
  const prefix = "checkpoints/1-abc/0/";
  const pointers = (entries: [string, number, string?][]) =>
    new Map(
      entries.map(([node, opNum, blobPrefix = prefix]) => [
        node,
        { opNum, blobKey: `${blobPrefix}${node}/${opNum}-1-1` },
      ]),
    );

  test("a departed node's pointer is forgotten only once a member's pointer is as new", () => {
    expect(
      departedPointers(
        ["a", "b"],
        pointers([
          ["a", 5],
          ["b", 6],
          ["gone", 7],
        ]),
        prefix,
      ),
    ).toEqual([]);
    expect(
      departedPointers(
        ["a", "b"],
        pointers([
          ["a", 7],
          ["gone", 7],
        ]),
        prefix,
      ),
    ).toEqual([{ node: "gone", opNum: 7 }]);
    expect(
      departedPointers(
        ["a"],
        pointers([
          ["a", 9],
          ["gone", 7],
          ["left", 3],
        ]),
        prefix,
      ),
    ).toEqual([
      { node: "gone", opNum: 7 },
      { node: "left", opNum: 3 },
    ]);
  });

  // Review 32: a member's pointer of another incarnation (recorded under the same name by
  // a deleted one's replica) counted as new, and the departed pointer of this one, the
  // newest a learner could be sent, was forgotten.
  test("a member's pointer of another incarnation makes no departed pointer forgettable", () => {
    expect(
      departedPointers(
        ["a"],
        pointers([
          ["a", 9, "checkpoints/9-old/0/"],
          ["gone", 7],
        ]),
        prefix,
      ),
    ).toEqual([]);
  });

  test("a member without a pointer makes no departed pointer forgettable", () => {
    expect(departedPointers(["a"], pointers([["gone", 1]]), prefix)).toEqual([]);
  });

  test("learners and joining nodes are members: their pointers stay", () => {
    const record = {
      primary: "a",
      secondaries: ["b"],
      joining: ["c"],
      learners: ["d"],
    };
    const members = [record.primary, ...record.secondaries, ...record.joining, ...record.learners];
    expect(
      departedPointers(
        members,
        pointers([
          ["a", 9],
          ["c", 1],
          ["d", 1],
        ]),
        prefix,
      ),
    ).toEqual([]);
  });
});

describe("forgetting a departed pointer in the catalogue", () => {
  const pointer = (opNum: number): CheckpointPointer => ({
    opNum,
    blobKey: blobKey(0, "gone", opNum),
    sleds: ["s1"],
    bytes: 1,
    createdAtMs: 0,
  });

  test("deletes the pointer it decided on, never a newer one recorded since", async () => {
    const catalogue = new Catalogue(new FakeStore());
    await catalogue.recordCheckpoint(name, 0, "gone", pointer(7));
    // The node rejoined and recorded a newer checkpoint after the sweep read op 7.
    await catalogue.recordCheckpoint(name, 0, "gone", pointer(9));
    expect(await catalogue.forgetCheckpoint(name, 0, "gone", 7)).toBe(false);
    expect((await catalogue.checkpoint(name, 0, "gone"))?.opNum).toBe(9);
    expect(await catalogue.forgetCheckpoint(name, 0, "gone", 9)).toBe(true);
    expect(await catalogue.checkpoint(name, 0, "gone")).toBeUndefined();
    expect(await catalogue.forgetCheckpoint(name, 0, "gone", 9)).toBe(false);
  });
});

describe("snapshots no record names", () => {
  const read = (checkpoints: RecordedCheckpoint[]): PartitionCheckpoints => ({
    kind: "read",
    checkpoints,
  });

  test("an id held by some partitions and named by no record is found, with its partitions", () => {
    const volume = volumeWith([
      [0, read([checkpoint("a", 5, [], 0, ["kept", "half"]), checkpoint("b", 5, [], 0, ["kept"])])],
      [1, read([checkpoint("a", 5, [], 1, ["kept"])])],
      [2, read([checkpoint("c", 5, [], 2, ["kept", "half", "stale"])])],
    ]);
    const found = unrecordedSnapshotsOf(volume, new Set(["kept"]), new Set());
    expect(found.map((snapshot) => [snapshot.id, snapshot.partitions])).toEqual([
      ["half", [0, 2]],
      ["stale", [2]],
    ]);
    expect(found.every((snapshot) => snapshot.volumeId === volumeId)).toBe(true);
  });

  test("a create in progress on this leader, and unreadable partitions, are left alone", () => {
    const volume = volumeWith([
      [0, read([checkpoint("a", 5, [], 0, ["creating"])])],
      [1, { kind: "unreadable", reason: "a header fetch failed" }],
    ]);
    expect(unrecordedSnapshotsOf(volume, new Set(), new Set(["creating"]))).toEqual([]);
  });

  test("an unrecorded id is due only when two passes a grace apart both found it", () => {
    const confirmations = new SweepConfirmations<UnrecordedSnapshot>(1000, unrecordedSnapshotKey);
    const half: UnrecordedSnapshot = { volume: name, volumeId, id: "half", partitions: [0] };
    expect(confirmations.confirm([half], 0)).toEqual([]);
    expect(confirmations.confirm([half], 999)).toEqual([]);
    // Recorded meanwhile (or dropped): the grace starts again when it is next seen.
    expect(confirmations.confirm([], 1500)).toEqual([]);
    expect(confirmations.confirm([half], 1600)).toEqual([]);
    expect(confirmations.confirm([half], 2600)).toEqual([half]);
  });
});
