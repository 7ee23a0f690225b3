// Scenario tests of the replica core: short scripts that drive primary and secondary
// cores by hand and check the effects they produce.

import { type BallastError, crc32c, ErrorCode, type MessageOf } from "@ballast/protocol";
import { describe, expect, test } from "vitest";
import { followerLogBytesFactor, type ReplicaLimits } from "../src/constants.ts";
import { encodeControlRecord } from "../src/replica/control-record.ts";
import type { Effect } from "../src/replica/effects.ts";
import { PartitionMetadata } from "../src/replica/metadata.ts";
import type { Note } from "../src/replica/note.ts";
import {
  type ClockReading,
  type Configuration,
  Replica,
  sledChunkIdOf,
} from "../src/replica/replica.ts";
import { publishCheckpoint, storedPointer } from "../src/testing/checkpoint.ts";
import { only, syncJournal } from "./effects-helpers.ts";

const partitionBytes = 1024 * 1024;
const configuration: Configuration = {
  epoch: 3,
  primary: "head-1",
  secondaries: ["head-2", "head-3"],
};

/** The identity of a replica of partition 0 of "vol". */
function identity(nodeId: string, session: number, bytes = partitionBytes) {
  return { nodeId, volume: "vol", partition: 0, partitionStart: 0, partitionBytes: bytes, session };
}

function replica(nodeId: string, session = 11, limits = {}) {
  const core = new Replica(identity(nodeId, session), { notes: [] }, limits);
  core.configure(configuration);
  return core;
}

function sectors(count: number, fill: number): Uint8Array {
  return new Uint8Array(count * 512).fill(fill);
}

type Notes = MessageOf<"replica.notes.v1">;
type Ack = MessageOf<"replica.ack.v1">;

function notesTo(effects: Effect[], to: string): Notes[] {
  return only(effects, "send")
    .filter((send) => send.to === to && send.message.type === "replica.notes.v1")
    .map((send) => send.message as Notes);
}

function acksTo(effects: Effect[], to: string): Ack[] {
  return only(effects, "send")
    .filter((send) => send.to === to && send.message.type === "replica.ack.v1")
    .map((send) => send.message as Ack);
}

function errorOf(effects: Effect[]): BallastError {
  const [reply] = only(effects, "reply.error");
  expect(reply).toBeDefined();
  return reply!.error;
}

describe("the write path", () => {
  test("a write is answered only after the primary and every secondary hold it durably", () => {
    const primary = replica("head-1");
    const secondaries = { "head-2": replica("head-2"), "head-3": replica("head-3") };
    primary.drainEffects();
    primary.onClientRequest({
      kind: "write",
      requestId: 1,
      epoch: 3,
      writes: [{ offset: 4096, data: sectors(2, 7) }],
    });
    const proposed = primary.drainEffects();
    expect(only(proposed, "journal.append")[0]?.notes.map((note) => note.opNum)).toEqual([1]);
    expect(only(proposed, "reply")).toEqual([]);

    // The primary's own journal is durable: still no reply, secondaries have nothing.
    expect(only(syncJournal(primary, proposed), "reply")).toEqual([]);

    for (const [id, secondary] of Object.entries(secondaries)) {
      const [message] = notesTo(proposed, id);
      secondary.onReplicationMessage(message!);
      const received = secondary.drainEffects();
      // An ack is produced only after the secondary's journal write is durable.
      expect(acksTo(received, "head-1")).toEqual([]);
      const [ack] = acksTo(syncJournal(secondary, received), "head-1");
      expect(ack).toMatchObject({ durableOpNum: 1, mismatch: false });
      primary.onReplicationMessage(ack!);
      const afterAck = primary.drainEffects();
      if (id === "head-2") expect(only(afterAck, "reply")).toEqual([]);
      else
        expect(only(afterAck, "reply")).toEqual([
          { type: "reply", requestId: 1, reply: { kind: "mutation", opNumFirst: 1, opNumLast: 1 } },
        ]);
    }
    expect(primary.commitOpNum).toBe(1);
  });

  test("a pending note is never readable; it is once committed", () => {
    const primary = new Replica(identity("head-1", 1), { notes: [] });
    primary.configure({ epoch: 1, primary: "head-1", secondaries: ["head-2"] });
    primary.onClientRequest({
      kind: "write",
      requestId: 1,
      epoch: 1,
      writes: [{ offset: 0, data: sectors(1, 9) }],
    });
    const effects = primary.drainEffects();
    syncJournal(primary, effects);
    const pending = primary.read(1, [{ offset: 0, length: 512 }]);
    expect(pending.asOfOpNum).toBe(0);
    expect(pending.ranges[0]!.parts).toEqual([
      { kind: "zero", offset: 0, length: 512, unmapped: true },
    ]);
    primary.onReplicationMessage({
      type: "replica.ack.v1",
      volume: "vol",
      partition: 0,
      epoch: 1,
      from: "head-2",
      session: 1,
      durableOpNum: 1,
      commitOpNum: 0,
      mismatch: false,
    });
    const committed = primary.read(1, [{ offset: 0, length: 512 }]);
    expect(committed.asOfOpNum).toBe(1);
    const part = committed.ranges[0]!.parts[0]!;
    expect(part.kind === "memory" && [...part.data]).toEqual(Array(512).fill(9));
  });

  test("a degraded epoch with no secondary commits on the primary's durability alone", () => {
    const primary = new Replica(identity("head-1", 1));
    primary.configure({ epoch: 4, primary: "head-1", secondaries: [] });
    primary.onClientRequest({
      kind: "trim",
      requestId: 5,
      epoch: 4,
      ranges: [{ offset: 0, length: 4096 }],
    });
    const replies = only(syncJournal(primary, primary.drainEffects()), "reply");
    expect(replies.map((reply) => reply.requestId)).toEqual([5]);
  });
});

describe("bad client input", () => {
  const cases: [string, Parameters<Replica["onClientRequest"]>[0], ErrorCode][] = [
    [
      "a wrong epoch",
      { kind: "write", requestId: 1, epoch: 2, writes: [{ offset: 0, data: sectors(1, 1) }] },
      ErrorCode.WrongEpoch,
    ],
    [
      "an unaligned offset",
      { kind: "write", requestId: 1, epoch: 3, writes: [{ offset: 100, data: sectors(1, 1) }] },
      ErrorCode.Unaligned,
    ],
    [
      "an unaligned length",
      { kind: "write", requestId: 1, epoch: 3, writes: [{ offset: 0, data: new Uint8Array(700) }] },
      ErrorCode.Unaligned,
    ],
    [
      "a range past the partition",
      {
        kind: "trim",
        requestId: 1,
        epoch: 3,
        ranges: [{ offset: partitionBytes - 512, length: 1024 }],
      },
      ErrorCode.OutOfRange,
    ],
    [
      "an empty range",
      { kind: "zeroes", requestId: 1, epoch: 3, ranges: [{ offset: 0, length: 0 }] },
      ErrorCode.InvalidArgument,
    ],
    [
      "more data than a request may carry",
      {
        kind: "write",
        requestId: 1,
        epoch: 3,
        writes: [0, 1, 2, 3, 4].map((index) => ({
          offset: index * 1024 * 1024 - index * 1024 * 1024,
          data: new Uint8Array(1024 * 1024),
        })),
      },
      ErrorCode.PayloadTooLarge,
    ],
  ];

  test.each(cases)("%s is refused with a typed error and assigns no op", (_what, request, code) => {
    const primary = new Replica(identity("head-1", 1, 8 * 1024 * 1024));
    primary.configure(configuration);
    primary.drainEffects();
    if (_what === "a range past the partition") {
      const small = replica("head-1");
      small.drainEffects();
      small.onClientRequest(request);
      expect(errorOf(small.drainEffects()).code).toBe(code);
      expect(small.lastOpNum).toBe(0);
      return;
    }
    primary.onClientRequest(request);
    const effects = primary.drainEffects();
    expect(errorOf(effects).code).toBe(code);
    expect(only(effects, "journal.append")).toEqual([]);
    expect(primary.lastOpNum).toBe(0);
  });

  test("a request naming a future epoch is refused and does not depose the primary", () => {
    // Only the coordinator (through configure) and replicas' acks speak for epochs; a
    // client's claim must not take a primary down.
    const primary = replica("head-1");
    primary.drainEffects();
    primary.onClientRequest({ kind: "flush", requestId: 1, epoch: 99 });
    expect(errorOf(primary.drainEffects()).code).toBe(ErrorCode.WrongEpoch);
    expect(primary.roleName).toBe("primary");
    expect(() => primary.read(3, [{ offset: 0, length: 512 }])).not.toThrow();
  });

  test("a secondary refuses client requests and reads, naming the primary", () => {
    const secondary = replica("head-2");
    secondary.onClientRequest({ kind: "flush", requestId: 9, epoch: 3 });
    const error = errorOf(secondary.drainEffects());
    expect(error.code).toBe(ErrorCode.NotPrimary);
    expect(error.details).toMatchObject({ primary: "head-1", epoch: 3 });
    expect(() => secondary.read(3, [{ offset: 0, length: 512 }])).toThrow(
      expect.objectContaining({ code: ErrorCode.NotPrimary }),
    );
  });

  test("a read that is unaligned, out of range or too large is refused", () => {
    const primary = replica("head-1");
    expect(() => primary.read(3, [{ offset: 1, length: 512 }])).toThrow(
      expect.objectContaining({ code: ErrorCode.Unaligned }),
    );
    expect(() => primary.read(3, [{ offset: partitionBytes, length: 512 }])).toThrow(
      expect.objectContaining({ code: ErrorCode.OutOfRange }),
    );
    expect(() => primary.read(3, Array(5).fill({ offset: 0, length: 1024 * 1024 }))).toThrow(
      expect.objectContaining({ code: ErrorCode.InvalidArgument }),
    );
    expect(() => primary.read(2, [{ offset: 0, length: 512 }])).toThrow(
      expect.objectContaining({ code: ErrorCode.WrongEpoch }),
    );
  });
});

describe("the volume's end within the partition (servedBytes)", () => {
  const served = 256 * 1024;

  /** A primary configured to serve the first `served` bytes of its 1 MiB partition. */
  function bounded(limit = served): Replica {
    const core = new Replica(identity("head-1", 11), { notes: [] });
    core.configure({ ...configuration, servedBytes: limit });
    core.drainEffects();
    return core;
  }

  test("a write, trim or write-zeroes reaching past the end is refused OutOfRange and assigns no op", () => {
    const primary = bounded();
    const past: Parameters<Replica["onClientRequest"]>[0][] = [
      {
        kind: "write",
        requestId: 1,
        epoch: 3,
        writes: [{ offset: served - 512, data: sectors(2, 1) }],
      },
      { kind: "write", requestId: 2, epoch: 3, writes: [{ offset: served, data: sectors(1, 1) }] },
      { kind: "trim", requestId: 3, epoch: 3, ranges: [{ offset: served, length: 512 }] },
      { kind: "zeroes", requestId: 4, epoch: 3, ranges: [{ offset: 0, length: served + 512 }] },
    ];
    for (const request of past) {
      primary.onClientRequest(request);
      const effects = primary.drainEffects();
      const error = errorOf(effects);
      expect(error.code).toBe(ErrorCode.OutOfRange);
      expect(error.details).toMatchObject({ volumeEnd: served, pastVolumeEnd: true });
      expect(only(effects, "journal.append")).toEqual([]);
    }
    expect(primary.lastOpNum).toBe(0);
    // Up to the end is served.
    primary.onClientRequest({
      kind: "write",
      requestId: 5,
      epoch: 3,
      writes: [{ offset: served - 512, data: sectors(1, 1) }],
    });
    expect(only(primary.drainEffects(), "reply.error")).toEqual([]);
    expect(primary.lastOpNum).toBe(1);
  });

  test("a resize's trim of the tail (pastEnd) is taken past the end, within the partition only", () => {
    const primary = bounded();
    primary.onClientRequest({
      kind: "trim",
      requestId: 1,
      epoch: 3,
      ranges: [{ offset: served, length: partitionBytes - served }],
      pastEnd: true,
    });
    expect(only(primary.drainEffects(), "reply.error")).toEqual([]);
    expect(primary.lastOpNum).toBe(1);
    primary.onClientRequest({
      kind: "trim",
      requestId: 2,
      epoch: 3,
      ranges: [{ offset: served, length: partitionBytes }],
      pastEnd: true,
    });
    expect(errorOf(primary.drainEffects()).code).toBe(ErrorCode.OutOfRange);
  });

  test("reads of the volume past the end are refused; a snapshot's are not bounded by it", () => {
    const primary = bounded();
    expect(() => primary.read(3, [{ offset: served - 512, length: 512 }])).not.toThrow();
    expect(() => primary.read(3, [{ offset: served - 512, length: 1024 }])).toThrow(
      expect.objectContaining({ code: ErrorCode.OutOfRange }),
    );
    // A snapshot keeps the size it was taken at: the end is not what refuses this read
    // (no snapshot of that id is).
    expect(() => primary.read(3, [{ offset: served, length: 512 }], undefined, "snap-1")).toThrow(
      expect.objectContaining({ code: ErrorCode.NotFound }),
    );
  });

  test("a partition wholly past the end serves nothing", () => {
    const primary = bounded(0);
    primary.onClientRequest({
      kind: "write",
      requestId: 1,
      epoch: 3,
      writes: [{ offset: 0, data: sectors(1, 1) }],
    });
    expect(errorOf(primary.drainEffects()).code).toBe(ErrorCode.OutOfRange);
    expect(() => primary.read(3, [{ offset: 0, length: 512 }])).toThrow(
      expect.objectContaining({ code: ErrorCode.OutOfRange }),
    );
  });

  test("the end changes only with the epoch: a configure of the same epoch cannot raise it", () => {
    const primary = bounded();
    // A stale configure of the epoch (from before the shrink) changes nothing.
    primary.configure({ ...configuration });
    primary.onClientRequest({
      kind: "write",
      requestId: 1,
      epoch: 3,
      writes: [{ offset: served, data: sectors(1, 1) }],
    });
    expect(errorOf(primary.drainEffects()).code).toBe(ErrorCode.OutOfRange);
    // The next epoch (a grow) raises it; one without the field serves the whole partition.
    primary.configure({ ...configuration, epoch: 4 });
    primary.drainEffects();
    primary.onClientRequest({
      kind: "write",
      requestId: 2,
      epoch: 4,
      writes: [{ offset: partitionBytes - 512, data: sectors(1, 1) }],
    });
    expect(only(primary.drainEffects(), "reply.error")).toEqual([]);
    expect(primary.lastOpNum).toBe(1);
  });
});

describe("replication edge cases", () => {
  function notesMessage(overrides: Partial<Notes>): Notes {
    return {
      type: "replica.notes.v1",
      volume: "vol",
      partition: 0,
      epoch: 3,
      primary: "head-1",
      session: 11,
      commitOpNum: 0,
      previousOpNum: 0,
      previousEpoch: 0,
      previousSession: 0,
      notes: [],
      ...overrides,
    };
  }
  function note(opNum: number, fill = opNum, epoch = 3, session = 11) {
    const data = sectors(1, fill);
    return {
      opNum,
      epoch,
      session,
      kind: "write" as const,
      offset: 0,
      length: 512,
      data,
      checksum: crc32c(data),
    };
  }

  test("a gap before the notes is not journaled; the ack asks for a resend", () => {
    const secondary = replica("head-2");
    secondary.onReplicationMessage(
      notesMessage({ previousOpNum: 4, previousEpoch: 3, previousSession: 11, notes: [note(5)] }),
    );
    const effects = secondary.drainEffects();
    expect(only(effects, "journal.append")).toEqual([]);
    expect(acksTo(effects, "head-1")).toEqual([
      expect.objectContaining({ mismatch: true, commitOpNum: 0 }),
    ]);
  });

  test("duplicated notes are journaled once", () => {
    const secondary = replica("head-2");
    const message = notesMessage({ notes: [note(1), note(2)] });
    secondary.onReplicationMessage(message);
    const first = secondary.drainEffects();
    expect(only(first, "journal.append")[0]?.notes.map((n) => n.opNum)).toEqual([1, 2]);
    secondary.onReplicationMessage(message);
    const second = secondary.drainEffects();
    expect(only(second, "journal.append")).toEqual([]);
    expect(acksTo(second, "head-1")).toHaveLength(1);
  });

  test("a follower whose journal is not released takes no notes past its bound (review-reach R2)", () => {
    // A secondary cut from the sleds only: its checkpoints are never stored, so nothing it
    // holds is released. Before, it took every note, its journal growing until its disk
    // was full. Now it stops at followerLogBytesFactor × logBytesMax (here 2 × 2 KiB): its
    // acks stop moving, the primary's commit waits, and the primary reports it stalled.
    const secondary = replica("head-2", 11, { logBytesMax: 2048 });
    const notes = Array.from({ length: 12 }, (_, index) => note(index + 1));
    secondary.onReplicationMessage(notesMessage({ notes }));
    const effects = secondary.drainEffects();
    // 512 bytes a note: eight fit within 4 KiB.
    expect(only(effects, "journal.append")[0]?.notes.map((n) => n.opNum)).toEqual([
      1, 2, 3, 4, 5, 6, 7, 8,
    ]);
    expect(secondary.heldLogBytes).toBe(8 * 512);
    secondary.onJournalDurable(8, only(effects, "journal.append")[0]!.generation);
    secondary.drainEffects();
    secondary.onReplicationMessage(
      notesMessage({ previousOpNum: 8, previousEpoch: 3, previousSession: 11, notes: [note(9)] }),
    );
    const again = secondary.drainEffects();
    expect(only(again, "journal.append")).toEqual([]);
    expect(acksTo(again, "head-1")).toEqual([
      expect.objectContaining({ durableOpNum: 8, mismatch: false }),
    ]);
    expect(secondary.heldLogBytes).toBe(8 * 512);
    expect(secondary.followerLogBytesMax).toBe(followerLogBytesFactor * 2048);
  });

  test("notes that skip an op number inside a message stop at the skip", () => {
    const secondary = replica("head-2");
    secondary.onReplicationMessage(notesMessage({ notes: [note(1), note(3)] }));
    expect(only(secondary.drainEffects(), "journal.append")[0]?.notes.map((n) => n.opNum)).toEqual([
      1,
    ]);
  });

  test("a write note whose data fails its checksum is not journaled", () => {
    const secondary = replica("head-2");
    const bad = { ...note(1), checksum: 12345 };
    secondary.onReplicationMessage(notesMessage({ notes: [bad] }));
    expect(only(secondary.drainEffects(), "journal.append")).toEqual([]);
  });

  test("a flush or control note whose data fails its checksum is not journaled", () => {
    // Damaged in flight after the primary computed its checksum: a snapshot id with one
    // letter changed, which still decodes. Before, only write notes were checked, so the
    // secondary took a snapshot under another id, alone.
    const record = encodeControlRecord({ kind: "snapshot.take", id: "snap-a" });
    const damagedRecord = encodeControlRecord({ kind: "snapshot.take", id: "snap-c" });
    expect(damagedRecord.byteLength).toBe(record.byteLength);
    for (const kind of ["control", "flush"] as const) {
      const secondary = replica("head-2");
      const damaged = {
        opNum: 1,
        epoch: 3,
        session: 11,
        kind,
        offset: 0,
        length: 0,
        data: damagedRecord,
        checksum: crc32c(record),
      };
      secondary.onReplicationMessage(notesMessage({ notes: [damaged] }));
      expect(only(secondary.drainEffects(), "journal.append"), kind).toEqual([]);
    }
  });

  test("a trim note with a checksum is not journaled", () => {
    const secondary = replica("head-2");
    const trim = {
      opNum: 1,
      epoch: 3,
      session: 11,
      kind: "trim" as const,
      offset: 0,
      length: 512,
      checksum: 1,
    };
    secondary.onReplicationMessage(notesMessage({ notes: [trim] }));
    expect(only(secondary.drainEffects(), "journal.append")).toEqual([]);
  });

  test("a damaged copy of a note the secondary holds truncates nothing", () => {
    // The resend of an acknowledged op, its checksum field damaged in flight. Before, it
    // was compared with the note held first: it differed, so the held note and every
    // note after it were truncated, though acknowledged to the primary, which may have
    // committed them on that acknowledgement.
    const secondary = replica("head-2");
    secondary.onReplicationMessage(notesMessage({ notes: [note(1), note(2)] }));
    syncJournal(secondary, secondary.drainEffects());
    expect(secondary.lastOpNum).toBe(2);
    const damaged = { ...note(1), checksum: (note(1).checksum ^ 1) >>> 0 };
    secondary.onReplicationMessage(notesMessage({ notes: [damaged, note(2)] }));
    const effects = secondary.drainEffects();
    expect(only(effects, "journal.truncate")).toEqual([]);
    expect(secondary.lastOpNum).toBe(2);
    expect(acksTo(effects, "head-1")).toEqual([
      expect.objectContaining({ durableOpNum: 2, mismatch: false }),
    ]);
  });

  test("a note whose apply throws is not counted committed", () => {
    // A control record that does not decode (one byte, 0xc1), with its checksum: a bug
    // on the primary, not damage on the way.
    const secondary = replica("head-2");
    const data = new Uint8Array([0xc1]);
    const damaged = {
      opNum: 1,
      epoch: 3,
      session: 11,
      kind: "control" as const,
      offset: 0,
      length: 0,
      data,
      checksum: crc32c(data),
    };
    secondary.onReplicationMessage(notesMessage({ commitOpNum: 1, notes: [damaged] }));
    const [append] = only(secondary.drainEffects(), "journal.append");
    expect(() => secondary.onJournalDurable(1, append!.generation)).toThrow();
    // Before, the op counted committed though never applied, and the next commit began
    // after it: its update of the tree was lost on this replica alone, silently.
    expect(secondary.commitOpNum).toBe(0);
  });

  test("notes from an older epoch are refused with an ack that names the newer epoch", () => {
    const secondary = replica("head-2");
    secondary.onReplicationMessage(notesMessage({ epoch: 2, notes: [note(1, 1, 2)] }));
    const effects = secondary.drainEffects();
    expect(only(effects, "journal.append")).toEqual([]);
    const [ack] = acksTo(effects, "head-1");
    expect(ack?.epoch).toBe(3);

    // The old primary learns of the newer epoch and stops serving.
    const old = new Replica(identity("head-1", 11));
    old.configure({ epoch: 2, primary: "head-1", secondaries: ["head-2"] });
    old.onClientRequest({
      kind: "write",
      requestId: 1,
      epoch: 2,
      writes: [{ offset: 0, data: sectors(1, 1) }],
    });
    old.drainEffects();
    old.onReplicationMessage({ ...ack!, session: 11 });
    expect(errorOf(old.drainEffects()).code).toBe(ErrorCode.WrongEpoch);
    expect(old.roleName).toBe("idle");
  });

  test("a new primary's log replaces an uncommitted tail from another session", () => {
    const secondary = replica("head-2");
    secondary.onReplicationMessage(
      notesMessage({ session: 10, notes: [note(1, 1, 3, 10), note(2, 2, 3, 10)] }),
    );
    syncJournal(secondary, secondary.drainEffects());
    expect(secondary.lastOpNum).toBe(2);
    // The restarted primary (session 11) kept op 1 but assigned op 2 anew.
    secondary.onReplicationMessage(
      notesMessage({
        session: 11,
        commitOpNum: 0,
        previousOpNum: 1,
        previousEpoch: 3,
        previousSession: 10,
        notes: [note(2, 99, 3, 11)],
      }),
    );
    const effects = secondary.drainEffects();
    expect(only(effects, "journal.truncate")).toEqual([expect.objectContaining({ afterOpNum: 1 })]);
    expect(
      only(effects, "journal.append")
        .at(-1)
        ?.notes.map((n) => [n.opNum, n.session]),
    ).toEqual([[2, 11]]);
  });
});

describe("backpressure", () => {
  test("writes past the in-flight window wait, then go in as commits make room", () => {
    const primary = new Replica(
      identity("head-1", 1),
      { notes: [] },
      { notesInflightMax: 2, requestDeadlineTicks: 1000 },
    );
    primary.configure({ epoch: 1, primary: "head-1", secondaries: [] });
    for (let requestId = 1; requestId <= 4; requestId++) {
      primary.onClientRequest({
        kind: "write",
        requestId,
        epoch: 1,
        writes: [{ offset: 0, data: sectors(1, requestId) }],
      });
    }
    const first = primary.drainEffects();
    expect(
      only(first, "journal.append").flatMap((append) => append.notes.map((n) => n.opNum)),
    ).toEqual([1, 2]);
    const replies = only(syncJournal(primary, first), "reply").map((reply) => reply.requestId);
    expect(replies).toEqual([1, 2]);
    primary.tick();
    const admitted = primary.drainEffects();
    expect(
      only(admitted, "journal.append").flatMap((append) => append.notes.map((n) => n.opNum)),
    ).toEqual([3, 4]);
  });

  test("a write held up by a slow secondary times out with a clear error", () => {
    const primary = new Replica(identity("head-1", 1), { notes: [] }, { requestDeadlineTicks: 5 });
    primary.configure({ epoch: 1, primary: "head-1", secondaries: ["head-2"] });
    primary.onClientRequest({
      kind: "write",
      requestId: 1,
      epoch: 1,
      writes: [{ offset: 0, data: sectors(1, 1) }],
    });
    syncJournal(primary, primary.drainEffects());
    for (let tick = 0; tick < 4; tick++) primary.tick();
    expect(only(primary.drainEffects(), "reply.error")).toEqual([]);
    primary.tick();
    const error = errorOf(primary.drainEffects());
    expect(error.code).toBe(ErrorCode.Timeout);
    expect(error.message).toMatch(/not committed by its deadline/);
  });
});

describe("flush, checkpoint and recovery", () => {
  test("a flush moves metadata to a chunk on every replica, then a checkpoint releases the journal", async () => {
    const limits = { flushBytesThreshold: 1, checkpointIntervalTicks: 1 };
    const primary = new Replica(identity("head-1", 1), { notes: [] }, limits);
    primary.configure({ epoch: 1, primary: "head-1", secondaries: [] });
    primary.onClientRequest({
      kind: "write",
      requestId: 1,
      epoch: 1,
      writes: [{ offset: 1024, data: sectors(4, 5) }],
    });
    syncJournal(primary, primary.drainEffects());
    primary.onClientRequest({
      kind: "write",
      requestId: 2,
      epoch: 1,
      writes: [{ offset: 2048, data: sectors(1, 6) }],
    });
    syncJournal(primary, primary.drainEffects());
    primary.tick();
    const [write] = only(primary.drainEffects(), "chunk.write");
    // Only live bytes are packed: three of op 1's four sectors, and op 2's one sector.
    expect(write?.data.byteLength).toBe(4 * 512);
    primary.onChunkWritten(write!.chunkNumber, ["sled-1", "sled-2"]);
    const recorded = primary.drainEffects();
    const [record] = only(recorded, "journal.append");
    expect(record?.notes[0]?.kind).toBe("flush");
    syncJournal(primary, recorded);
    expect(primary.metadata.flushedThroughOpNum).toBe(2);
    const [piece] = primary.metadata.tree.lookup(1024, 512);
    expect(piece?.location).toEqual({ kind: "chunk", chunkId: write!.chunkNumber, offset: 0 });

    primary.tick();
    const [checkpoint] = only(primary.drainEffects(), "checkpoint.write");
    expect(checkpoint?.opNum).toBe(3);
    publishCheckpoint(primary, checkpoint!.opNum);
    // Released through op 2; the journal keeps op 2 itself, which a restart resumes after.
    expect(only(primary.drainEffects(), "journal.release")).toEqual([
      { type: "journal.release", throughOpNum: 1 },
    ]);

    // A restart from that checkpoint plus the journal's remaining notes reads the same.
    const restored = await PartitionMetadata.restore(checkpoint!.snapshot);
    const again = new Replica(identity("head-1", 2), {
      checkpoint: restored,
      notes: [record!.notes[0]!],
    });
    expect(again.commitOpNum).toBe(3);
    expect(again.metadata.fingerprint()).toBe(primary.metadata.fingerprint());
  });

  test("a checkpoint is taken after a set number of ops, without waiting for its interval", () => {
    const limits = {
      flushBytesThreshold: 1,
      checkpointIntervalTicks: 1_000_000,
      checkpointIntervalOps: 5,
    };
    const primary = new Replica(identity("head-1", 1), { notes: [] }, limits);
    primary.configure({ epoch: 1, primary: "head-1", secondaries: [] });
    const checkpoints: number[] = [];
    const settle = () => {
      for (
        let effects = primary.drainEffects();
        effects.length > 0;
        effects = primary.drainEffects()
      ) {
        for (const effect of effects) {
          if (effect.type === "journal.append") {
            primary.onJournalDurable(effect.notes.at(-1)!.opNum, effect.generation);
          } else if (effect.type === "chunk.write") {
            primary.onChunkWritten(effect.chunkNumber, ["sled-1", "sled-2"]);
          } else if (effect.type === "checkpoint.write") {
            checkpoints.push(effect.opNum);
            primary.onCheckpointDurable(effect.opNum);
          } else if (effect.type === "checkpoint.store") {
            primary.onCheckpointStored(effect.opNum, storedPointer(effect));
          } else if (effect.type === "checkpoint.record") {
            primary.onCheckpointRecorded(effect.opNum);
          }
        }
      }
    };
    for (let requestId = 1; requestId <= 12; requestId++) {
      primary.onClientRequest({
        kind: "write",
        requestId,
        epoch: 1,
        writes: [{ offset: 0, data: sectors(1, requestId) }],
      });
      settle();
      primary.tick();
      settle();
    }
    expect(checkpoints.length).toBeGreaterThanOrEqual(2);
    for (let index = 1; index < checkpoints.length; index++) {
      expect(checkpoints[index]! - checkpoints[index - 1]!).toBeGreaterThanOrEqual(5);
    }
  });

  test("a journal that starts after the checkpoint is refused as missing notes", () => {
    const metadata = new PartitionMetadata();
    expect(
      () =>
        new Replica(identity("head-1", 2), {
          checkpoint: { metadata, opNum: 3 },
          notes: [
            { opNum: 6, epoch: 1, session: 1, kind: "trim", offset: 0, length: 512, checksum: 0 },
          ],
        }),
    ).toThrow(/notes are missing/);
  });
});

/** An ack from `from` to a primary of session `session`. */
function ack(
  from: string,
  epoch: number,
  session: number,
  fields: Partial<Pick<Ack, "durableOpNum" | "commitOpNum" | "mismatch">>,
): Ack {
  return {
    type: "replica.ack.v1",
    volume: "vol",
    partition: 0,
    epoch,
    from,
    session,
    durableOpNum: 0,
    commitOpNum: 0,
    mismatch: false,
    ...fields,
  };
}

/**
 * A primary with no followers, under `limits`, that has written one block and flushed it
 * to two sleds (its chunk recorded): what the checkpoint tests start from.
 */
function soloPrimaryFlushed(limits: Partial<ReplicaLimits>): Replica {
  const primary = new Replica(identity("head-1", 1), { notes: [] }, limits);
  primary.configure({ epoch: 1, primary: "head-1", secondaries: [] });
  writeOne(primary, 1, 1, 1);
  syncJournal(primary, primary.drainEffects());
  primary.tick();
  const [chunk] = only(primary.drainEffects(), "chunk.write");
  primary.onChunkWritten(chunk!.chunkNumber, ["sled-1", "sled-2"]);
  syncJournal(primary, primary.drainEffects());
  return primary;
}

function writeOne(core: Replica, requestId: number, epoch: number, fill: number, offset = 0) {
  core.onClientRequest({
    kind: "write",
    requestId,
    epoch,
    writes: [{ offset, data: sectors(1, fill) }],
  });
}

describe("commit stalls", () => {
  test("a voting follower that keeps a commit waiting past the limit is reported; a learner never is", () => {
    const primary = new Replica(identity("head-1", 1), { notes: [] }, { commitStallTicks: 5 });
    primary.configure({
      epoch: 1,
      primary: "head-1",
      secondaries: ["head-2"],
      learners: ["head-3"],
    });
    writeOne(primary, 1, 1, 1);
    syncJournal(primary, primary.drainEffects());
    expect(primary.commitOpNum).toBe(0);
    for (let tick = 0; tick < 4; tick++) primary.tick();
    expect(primary.followers().some((follower) => follower.stalledTicks !== undefined)).toBe(false);
    primary.tick();
    const stalled = primary.followers();
    expect(stalled.find((follower) => follower.node === "head-2")?.stalledTicks).toBe(5);
    // The learner lags as far, but a commit never waits on it.
    expect(stalled.find((follower) => follower.node === "head-3")?.stalledTicks).toBeUndefined();

    // Once it acknowledges, the commit goes through and nothing waits on it any more.
    primary.onReplicationMessage(ack("head-2", 1, 1, { durableOpNum: 1 }));
    expect(primary.commitOpNum).toBe(1);
    expect(primary.followers().every((follower) => follower.stalledTicks === undefined)).toBe(true);
  });

  test("a follower behind the primary's own unfinished journal write is not stalled", () => {
    const primary = new Replica(identity("head-1", 1), { notes: [] }, { commitStallTicks: 3 });
    primary.configure({ epoch: 1, primary: "head-1", secondaries: ["head-2"] });
    writeOne(primary, 1, 1, 1);
    primary.drainEffects(); // the primary's own append is not durable yet
    for (let tick = 0; tick < 10; tick++) primary.tick();
    expect(primary.followers()[0]?.stalledTicks).toBeUndefined();
  });

  test("a primary whose own journal keeps a write waiting past the limit reports itself stalled", () => {
    // A disk that hangs without failing: its followers hold the notes and wait for
    // nothing, so none can report it; the primary cannot commit without its own copy,
    // and says so itself.
    const primary = new Replica(identity("head-1", 1), { notes: [] }, { primaryStallTicks: 4 });
    primary.configure({ epoch: 1, primary: "head-1", secondaries: ["head-2"] });
    expect(primary.ownStalledTicks()).toBe(0);
    writeOne(primary, 1, 1, 1);
    const first = primary.drainEffects(); // its own append does not complete
    for (let tick = 0; tick < 3; tick++) primary.tick();
    expect(primary.ownStalledTicks()).toBe(0);
    primary.tick();
    expect(primary.ownStalledTicks()).toBe(4);
    // The secondary holding the note does not make the primary's journal any faster.
    primary.onReplicationMessage(ack("head-2", 1, 1, { durableOpNum: 1 }));
    expect(primary.commitOpNum).toBe(0);
    expect(primary.ownStalledTicks()).toBe(4);
    // Progress resets the wait: a slow disk that keeps up is not a stalled one.
    writeOne(primary, 2, 1, 2, 4096);
    const second = primary.drainEffects();
    syncJournal(primary, first);
    expect(primary.commitOpNum).toBe(1);
    expect(primary.ownStalledTicks()).toBe(0);
    for (let tick = 0; tick < 3; tick++) primary.tick();
    expect(primary.ownStalledTicks()).toBe(0);
    syncJournal(primary, second);
    for (let tick = 0; tick < 10; tick++) primary.tick();
    expect(primary.ownStalledTicks()).toBe(0);
  });

  test("a release or truncation the journal completes ahead of a waiting write is progress", () => {
    // The journal runs one operation at a time: a slow disk that finishes a release
    // queued before the write is working, and the write has waited only since then.
    const primary = new Replica(identity("head-1", 1), { notes: [] }, { primaryStallTicks: 4 });
    primary.configure({ epoch: 1, primary: "head-1", secondaries: ["head-2"] });
    writeOne(primary, 1, 1, 1);
    primary.drainEffects(); // its own append waits behind the slow disk
    for (let tick = 0; tick < 3; tick++) primary.tick();
    primary.onJournalProgress();
    for (let tick = 0; tick < 3; tick++) primary.tick();
    expect(primary.ownStalledTicks()).toBe(0);
    // With no progress after it, the bound is reached as before.
    primary.tick();
    expect(primary.ownStalledTicks()).toBe(4);
  });

  test("a secondary never reports its own journal stalled: its primary reports it", () => {
    const secondary = new Replica(identity("head-2", 1), { notes: [] }, { primaryStallTicks: 2 });
    secondary.configure({ epoch: 1, primary: "head-1", secondaries: ["head-2"] });
    for (let tick = 0; tick < 10; tick++) secondary.tick();
    expect(secondary.ownStalledTicks()).toBe(0);
  });

  test("the stall of an inherited tail counts from the start of the epoch", () => {
    const notes = [1, 2].map((opNum) => ({
      opNum,
      epoch: 1,
      session: 1,
      kind: "trim" as const,
      offset: 0,
      length: 512,
      checksum: 0,
    }));
    const primary = new Replica(identity("head-1", 2), { notes }, { commitStallTicks: 4 });
    for (let tick = 0; tick < 10; tick++) primary.tick();
    primary.configure({ epoch: 2, primary: "head-1", secondaries: ["head-2"] });
    expect(primary.tailCommitted).toBe(false);
    for (let tick = 0; tick < 3; tick++) primary.tick();
    expect(primary.followers()[0]?.stalledTicks).toBeUndefined();
    primary.tick();
    expect(primary.followers()[0]?.stalledTicks).toBe(4);
    primary.onReplicationMessage(ack("head-2", 2, 2, { durableOpNum: 2 }));
    expect(primary.tailCommitted).toBe(true);
  });
});

describe("learners and release", () => {
  /** A primary alone with one learner, with ops 1–2 flushed and a checkpoint written. */
  function primaryWithCheckpoint(limits: object) {
    const primary = new Replica(
      identity("head-1", 1),
      { notes: [] },
      // No checkpoint of its own accord: the test asks for one when it wants it.
      { flushBytesThreshold: 1, checkpointIntervalTicks: 1e9, checkpointRetryTicks: 0, ...limits },
    );
    primary.configure({ epoch: 1, primary: "head-1", secondaries: [], learners: ["head-2"] });
    writeOne(primary, 1, 1, 1);
    writeOne(primary, 2, 1, 2, 512);
    syncJournal(primary, primary.drainEffects());
    primary.tick();
    const [chunk] = only(primary.drainEffects(), "chunk.write");
    primary.onChunkWritten(chunk!.chunkNumber, ["sled-1", "sled-2"]);
    syncJournal(primary, primary.drainEffects());
    expect(primary.metadata.flushedThroughOpNum).toBe(2);
    return primary;
  }

  function checkpointNow(primary: Replica): Effect[] {
    primary.requestCheckpoint();
    primary.tick();
    const [checkpoint] = only(primary.drainEffects(), "checkpoint.write");
    expect(checkpoint).toBeDefined();
    publishCheckpoint(primary, checkpoint!.opNum);
    return primary.drainEffects();
  }

  test("a checkpoint is published step by step; a failed step releases nothing and the next retries", () => {
    const primary = primaryWithCheckpoint({ learnerPinTicks: 0 });
    primary.tick();
    primary.drainEffects();
    const keys: string[] = [];
    for (const failAt of ["write", "store", "record"] as const) {
      primary.requestCheckpoint();
      primary.tick();
      const [write] = only(primary.drainEffects(), "checkpoint.write");
      expect(write).toBeDefined();
      const opNum = write!.opNum;
      if (failAt !== "write") {
        primary.onCheckpointDurable(opNum);
        const [store] = only(primary.drainEffects(), "checkpoint.store");
        keys.push(store!.blobKey);
        // Reports out of order, or again, change nothing.
        primary.onCheckpointRecorded(opNum);
        primary.onCheckpointDurable(opNum);
        expect(primary.drainEffects()).toEqual([]);
        if (failAt === "record") {
          primary.onCheckpointStored(opNum, storedPointer(store!));
          expect(only(primary.drainEffects(), "checkpoint.record")).toHaveLength(1);
        }
      }
      primary.onCheckpointFailed(opNum);
      primary.onCheckpointRecorded(opNum); // too late: the checkpoint failed
      expect(primary.drainEffects()).toEqual([]);
      expect(primary.releasedThroughOpNum).toBe(0);
      expect(primary.recordedCheckpoint).toBeUndefined();
    }

    // The next goes through: the journal is released and the replaced blob deleted.
    primary.requestCheckpoint();
    primary.tick();
    const [write] = only(primary.drainEffects(), "checkpoint.write");
    const old = {
      opNum: 1,
      blobKey: "checkpoints/old",
      sleds: ["sled-3"],
      bytes: 1,
      createdAtMs: 0,
    };
    const { pointer } = publishCheckpoint(primary, write!.opNum, old);
    keys.push(pointer.blobKey);
    // Every upload at the same op has its own key: a store never overwrites a recorded blob.
    expect(new Set(keys).size).toBe(keys.length);
    const effects = primary.drainEffects();
    expect(only(effects, "blob.delete")).toEqual([
      { type: "blob.delete", blobKey: "checkpoints/old", sleds: ["sled-3"] },
    ]);
    expect(only(effects, "journal.release")).toEqual([
      { type: "journal.release", throughOpNum: 1 },
    ]);
    expect(primary.recordedCheckpoint).toEqual(pointer);

    // Recorded over itself (the same record again): nothing to delete.
    primary.requestCheckpoint();
    primary.tick();
    const [again] = only(primary.drainEffects(), "checkpoint.write");
    primary.onCheckpointDurable(again!.opNum);
    const [store] = only(primary.drainEffects(), "checkpoint.store");
    const same = storedPointer(store!);
    primary.onCheckpointStored(again!.opNum, same);
    primary.drainEffects();
    primary.onCheckpointRecorded(again!.opNum, same);
    expect(only(primary.drainEffects(), "blob.delete")).toEqual([]);
    expect(primary.recordedCheckpoint).toEqual(same);
  });

  test("a checkpoint asked for that fails is taken again on an idle primary, until one is recorded", () => {
    // The replicator's case: the recorded checkpoint lost a live copy, nothing new is
    // flushed, and the checkpoint it asks for fails (a slow sled, a coordinator leader
    // change). Nothing else would ever take another: the request must stand.
    const retryTicks = 7;
    const primary = soloPrimaryFlushed({
      flushBytesThreshold: 1,
      checkpointIntervalTicks: 1e9,
      checkpointRetryTicks: retryTicks,
    });
    primary.requestCheckpoint();
    for (let tick = 0; tick < retryTicks; tick++) primary.tick();
    const [first] = only(primary.drainEffects(), "checkpoint.write");
    publishCheckpoint(primary, first!.opNum);
    primary.drainEffects();
    const recorded = primary.recordedCheckpoint!;
    expect(recorded).toBeDefined();
    const checkpointWrites = () => only(primary.drainEffects(), "checkpoint.write");
    for (let tick = 0; tick < 100; tick++) primary.tick();
    expect(checkpointWrites()).toEqual([]); // idle: nothing flushed since, nothing asked

    // Asked once, as the replicator asks per recorded blob; the store step fails.
    primary.requestCheckpoint();
    primary.tick();
    const [asked] = checkpointWrites();
    expect(asked).toBeDefined();
    primary.onCheckpointDurable(asked!.opNum);
    expect(only(primary.drainEffects(), "checkpoint.store")).toHaveLength(1);
    primary.onCheckpointFailed(asked!.opNum);
    primary.onCheckpointFailed(asked!.opNum); // again: changes nothing

    // The idle primary is not held quiet past the retry (the shell would never tick it),
    // and the retry comes checkpointRetryTicks after the failed one started.
    expect(primary.quietTicks()).toBeLessThan(retryTicks);
    for (let tick = 0; tick < retryTicks - 1; tick++) primary.tick();
    expect(checkpointWrites()).toEqual([]);
    primary.tick();
    const [retried] = checkpointWrites();
    expect(retried).toBeDefined();
    // The record step fails this time: still asked for.
    primary.onCheckpointDurable(retried!.opNum);
    const [store] = only(primary.drainEffects(), "checkpoint.store");
    primary.onCheckpointStored(retried!.opNum, storedPointer(store!, ["sled-1", "sled-4"]));
    expect(only(primary.drainEffects(), "checkpoint.record")).toHaveLength(1);
    primary.onCheckpointFailed(retried!.opNum);
    expect(primary.recordedCheckpoint).toEqual(recorded);
    for (let tick = 0; tick < retryTicks; tick++) primary.tick();
    const [third] = checkpointWrites();
    expect(third).toBeDefined();
    const { pointer } = publishCheckpoint(primary, third!.opNum, recorded);
    expect(primary.recordedCheckpoint).toEqual(pointer);
    expect(pointer.blobKey).not.toBe(recorded.blobKey);

    // Recorded: the request is met, and the idle primary takes no more.
    for (let tick = 0; tick < 100; tick++) primary.tick();
    expect(checkpointWrites()).toEqual([]);
    expect(primary.quietTicks()).toBeGreaterThan(100);
  });

  test("a checkpoint nobody asked for that fails is not turned into a request", () => {
    // Only a request is kept: a periodic checkpoint that fails is retried by its own
    // reasons (flushed bytes the recorded one lacks), at the interval, as before.
    const primary = soloPrimaryFlushed({
      flushBytesThreshold: 1,
      checkpointIntervalTicks: 20,
      checkpointRetryTicks: 2,
    });
    let started: number | undefined;
    for (let tick = 1; tick <= 20 && started === undefined; tick++) {
      primary.tick();
      if (only(primary.drainEffects(), "checkpoint.write").length > 0) started = tick;
    }
    expect(started).toBeDefined();
    primary.onCheckpointFailed(primary.commitOpNum);
    // Not after checkpointRetryTicks: after the interval.
    for (let tick = 0; tick < 19; tick++) primary.tick();
    expect(only(primary.drainEffects(), "checkpoint.write")).toEqual([]);
    primary.tick();
    expect(only(primary.drainEffects(), "checkpoint.write")).toHaveLength(1);
  });

  test("a checkpoint due by its releasable bytes that keeps failing is paced, not retried every tick", () => {
    // An outage of every sled but one, or of the coordinator's leader: each checkpoint
    // fails, and flushed bytes keep the next due. Unpaced, the core started one on every
    // tick (a local file written and synced, the sleds asked again) and was never quiet.
    const retryTicks = 7;
    const primary = new Replica(
      identity("head-1", 1),
      { notes: [] },
      {
        flushBytesThreshold: 1,
        checkpointReleasableBytes: 1,
        checkpointIntervalTicks: 1e9,
        checkpointRetryTicks: retryTicks,
      },
    );
    primary.configure({ epoch: 1, primary: "head-1", secondaries: [] });
    const flushOne = (requestId: number) => {
      writeOne(primary, requestId, 1, requestId);
      syncJournal(primary, primary.drainEffects());
      primary.tick();
      const [chunk] = only(primary.drainEffects(), "chunk.write");
      primary.onChunkWritten(chunk!.chunkNumber, ["sled-1", "sled-2"]);
      syncJournal(primary, primary.drainEffects());
    };
    flushOne(1);
    const startedAt: number[] = [];
    let failures = 0;
    const ticks = 3 * retryTicks + 1;
    for (let tick = 1; tick <= ticks; tick++) {
      primary.tick();
      for (const write of only(primary.drainEffects(), "checkpoint.write")) {
        startedAt.push(tick);
        // Alternate the step that fails: the pause is the same whichever it is.
        primary.onCheckpointDurable(write.opNum);
        const [store] = only(primary.drainEffects(), "checkpoint.store");
        if (failures++ % 2 === 1) {
          primary.onCheckpointStored(write.opNum, storedPointer(store!));
          expect(only(primary.drainEffects(), "checkpoint.record")).toHaveLength(1);
        }
        primary.onCheckpointFailed(write.opNum);
        // Quiet until the retry, no longer: a shell skipping ticks must not miss it.
        expect(primary.quietTicks()).toBe(retryTicks - 1);
      }
    }
    expect(startedAt.length).toBeGreaterThan(1);
    expect(startedAt.length).toBeLessThanOrEqual(4);
    for (let index = 1; index < startedAt.length; index++) {
      expect(startedAt[index]! - startedAt[index - 1]!).toBe(retryTicks);
    }

    // The skipped ticks count: the retry starts on the tick the pause ends.
    const last = startedAt[startedAt.length - 1]!;
    const quiet = primary.quietTicks();
    expect(quiet).toBe(last + retryTicks - (ticks + 1));
    expect(quiet).toBeGreaterThan(0);
    primary.tick(quiet);
    const [retried] = only(primary.drainEffects(), "checkpoint.write");
    expect(retried).toBeDefined();
    publishCheckpoint(primary, retried!.opNum);
    primary.drainEffects();
    expect(primary.recordedCheckpoint?.opNum).toBe(retried!.opNum);

    // Recorded: the pause is over, and the next checkpoint due is taken at once.
    flushOne(2);
    expect(primary.quietTicks()).toBe(0);
    primary.tick();
    expect(only(primary.drainEffects(), "checkpoint.write")).toHaveLength(1);
  });

  test("a learner that makes no progress does not hold the journal, and is told to rebuild", () => {
    const primary = primaryWithCheckpoint({ learnerPinTicks: 5 });
    for (let tick = 0; tick < 5; tick++) primary.tick();
    primary.drainEffects();
    expect(only(checkpointNow(primary), "journal.release")).toEqual([
      { type: "journal.release", throughOpNum: 1 },
    ]);
    expect(primary.releasedThroughOpNum).toBe(2);
    expect(primary.followers()[0]?.needsRebuild).toBeUndefined();
    // The learner finally answers: its log does not reach the release point.
    primary.onReplicationMessage(ack("head-2", 1, 1, { commitOpNum: 0, mismatch: true }));
    expect(primary.followers()).toEqual([
      { node: "head-2", matchOpNum: 0, learner: true, needsRebuild: true },
    ]);
    // It is sent no more notes that it could only refuse; the writes go on.
    writeOne(primary, 3, 1, 3);
    const effects = primary.drainEffects();
    expect(notesTo(effects, "head-2")).toEqual([]);
    expect(only(syncJournal(primary, effects), "reply").map((reply) => reply.requestId)).toEqual([
      3,
    ]);
  });

  test("a learner made a voter after the notes it lacked were released is told to rebuild", () => {
    const primary = primaryWithCheckpoint({ learnerPinTicks: 5 });
    for (let tick = 0; tick < 5; tick++) primary.tick();
    primary.drainEffects();
    checkpointNow(primary);
    expect(primary.releasedThroughOpNum).toBe(2);
    // The coordinator saw it caught up earlier and makes it count for commit (joining).
    primary.configure({ epoch: 2, primary: "head-1", secondaries: ["head-2"] });
    primary.drainEffects();
    primary.onReplicationMessage(ack("head-2", 2, 1, { commitOpNum: 0, mismatch: true }));
    expect(primary.followers()).toEqual([
      { node: "head-2", matchOpNum: 0, learner: false, needsRebuild: true },
    ]);
  });

  test("a restarted primary with released notes records a fresh checkpoint, once", async () => {
    const primary = primaryWithCheckpoint({});
    const appended: Note[] = [];
    primary.tick();
    const [first] = only(primary.drainEffects(), "checkpoint.write");
    expect(first).toBeUndefined(); // nothing asked for it yet: released nothing
    primary.requestCheckpoint();
    primary.tick();
    const [checkpoint] = only(primary.drainEffects(), "checkpoint.write");
    publishCheckpoint(primary, checkpoint!.opNum);
    expect(primary.releasedThroughOpNum).toBe(0); // the learner has matched nothing
    primary.onReplicationMessage(ack("head-2", 1, 1, { durableOpNum: 3 }));
    for (let opNum = 1; opNum <= primary.lastOpNum; opNum++) {
      appended.push((primary as unknown as { log: Map<number, Note> }).log.get(opNum)!);
    }
    primary.requestCheckpoint();
    primary.tick();
    const ticked = primary.drainEffects();
    const [second] = only(ticked, "checkpoint.write");
    // The learner now has what the first checkpoint covers: it goes at this tick.
    const [release] = only(ticked, "journal.release");
    publishCheckpoint(primary, second!.opNum);
    expect(primary.releasedThroughOpNum).toBe(2);
    const journal = appended.filter((note) => note.opNum > release!.throughOpNum);

    const restarted = new Replica(
      identity("head-1", 2),
      { checkpoint: await PartitionMetadata.restore(second!.snapshot), notes: journal },
      { checkpointIntervalTicks: 1e9, checkpointRetryTicks: 3 },
    );
    expect(restarted.releasedThroughOpNum).toBe(2);
    restarted.configure({ epoch: 2, primary: "head-1", secondaries: [] });
    const checkpoints = () => only(restarted.drainEffects(), "checkpoint.write");
    restarted.tick();
    restarted.tick();
    expect(checkpoints()).toEqual([]);
    restarted.tick();
    const [fresh] = checkpoints();
    expect(fresh?.opNum).toBe(restarted.commitOpNum);
    publishCheckpoint(restarted, fresh!.opNum);
    for (let tick = 0; tick < 10; tick++) restarted.tick();
    expect(checkpoints()).toEqual([]);
  });

  test("notes a follower held back at the checkpoint go once it has them, with nothing flushed since", () => {
    // Found by the failover simulator with sled cuts (review-reach): a checkpoint recorded
    // just after an epoch change (every follower's match reset to 0 until it acknowledges)
    // released nothing, and only the next checkpoint released anything. That needs newly
    // flushed bytes, which need a write, which needs journal room: a full journal of
    // flushed, recorded notes then kept every write waiting for good.
    const primary = primaryWithCheckpoint({ learnerPinTicks: 1000 });
    primary.onReplicationMessage(ack("head-2", 1, 1, { durableOpNum: 2 }));
    primary.drainEffects();
    // The learner becomes a voter in a new epoch: its match starts again from nothing.
    primary.configure({ epoch: 2, primary: "head-1", secondaries: ["head-2"] });
    primary.drainEffects();
    expect(only(checkpointNow(primary), "journal.release")).toEqual([]);
    expect(primary.releasedThroughOpNum).toBe(0);
    // It acknowledges what it holds: the recorded checkpoint's notes go at the next tick.
    primary.onReplicationMessage(ack("head-2", 2, 1, { durableOpNum: 2 }));
    primary.drainEffects();
    primary.tick();
    expect(only(primary.drainEffects(), "journal.release")).toEqual([
      { type: "journal.release", throughOpNum: 1 },
    ]);
    expect(primary.releasedThroughOpNum).toBe(2);
    // And no more than once.
    for (let tick = 0; tick < 5; tick++) primary.tick();
    expect(only(primary.drainEffects(), "journal.release")).toEqual([]);
  });

  test("a learner that is catching up holds the release until it has the notes", () => {
    const primary = primaryWithCheckpoint({ learnerPinTicks: 1000 });
    primary.onReplicationMessage(ack("head-2", 1, 1, { durableOpNum: 1 }));
    primary.drainEffects();
    expect(only(checkpointNow(primary), "journal.release")).toEqual([]);
    expect(primary.releasedThroughOpNum).toBe(1);
  });
});

describe("flush requests", () => {
  test("a flush answers once earlier writes are committed, with every chunk write failing", () => {
    const primary = new Replica(
      identity("head-1", 1),
      { notes: [] },
      { flushBytesThreshold: 1, flushRetryTicks: 1 },
    );
    primary.configure({ epoch: 1, primary: "head-1", secondaries: ["head-2"] });
    writeOne(primary, 1, 1, 1);
    syncJournal(primary, primary.drainEffects());
    primary.onReplicationMessage(ack("head-2", 1, 1, { durableOpNum: 1 }));
    expect(only(primary.drainEffects(), "reply").map((reply) => reply.requestId)).toEqual([1]);
    // A write still in flight when the flush arrives is included in it.
    writeOne(primary, 2, 1, 2);
    primary.onClientRequest({ kind: "flush", requestId: 3, epoch: 1 });
    const effects = primary.drainEffects();
    // It nudges a flush to sleds, which fails; nobody waits for it.
    const [chunk] = only(effects, "chunk.write");
    expect(chunk).toBeDefined();
    primary.onChunkFailed(chunk!.chunkNumber);
    // Durable on the primary, not yet on the secondary: neither is answered.
    expect(only(syncJournal(primary, effects), "reply")).toEqual([]);
    primary.onReplicationMessage(ack("head-2", 1, 1, { durableOpNum: 2 }));
    expect(only(primary.drainEffects(), "reply")).toEqual([
      { type: "reply", requestId: 2, reply: { kind: "mutation", opNumFirst: 2, opNumLast: 2 } },
      { type: "reply", requestId: 3, reply: { kind: "flush", flushedOpNum: 2 } },
    ]);
    expect(primary.metadata.flushedThroughOpNum).toBe(0);
  });
});

describe("full sleds", () => {
  /** A primary (one secondary) whose journal is half full of committed writes. */
  function halfFullPrimary() {
    const primary = new Replica(
      identity("head-1", 1),
      { notes: [] },
      {
        logBytesMax: 8 * 512,
        flushBytesThreshold: 1,
        flushRetryTicks: 3,
        flushIntervalTicks: 1000,
      },
    );
    primary.configure({ epoch: 1, primary: "head-1", secondaries: ["head-2"] });
    for (let request = 1; request <= 4; request++)
      writeOne(primary, request, 1, request, request * 512);
    syncJournal(primary, primary.drainEffects());
    primary.onReplicationMessage(ack("head-2", 1, 1, { durableOpNum: 4 }));
    expect(only(primary.drainEffects(), "reply")).toHaveLength(4);
    return primary;
  }

  /** Lets the flush start and answers its chunk write with `outcome`. */
  function flushAnswered(primary: Replica, outcome: "no-space" | "other" | "ok") {
    let chunk: Extract<Effect, { type: "chunk.write" }> | undefined;
    for (let tick = 0; tick < 10 && chunk === undefined; tick++) {
      primary.tick();
      [chunk] = only(primary.drainEffects(), "chunk.write");
    }
    expect(chunk).toBeDefined();
    if (outcome === "ok") primary.onChunkWritten(chunk!.chunkNumber, ["sled-1", "sled-2"]);
    else primary.onChunkFailed(chunk!.chunkNumber, outcome === "no-space" ? "no-space" : undefined);
  }

  test("writes are answered NoSpace at once, trims still go ahead, and a good flush ends it", () => {
    const primary = halfFullPrimary();
    // A write that waits for journal room when the flush fails for no space is answered too.
    primary.onClientRequest({
      kind: "write",
      requestId: 10,
      epoch: 1,
      writes: [{ offset: 8192, data: sectors(8, 9) }],
    });
    expect(only(primary.drainEffects(), "journal.append")).toEqual([]);
    flushAnswered(primary, "no-space");
    let error = errorOf(primary.drainEffects());
    expect(error.code).toBe(ErrorCode.NoSpace);
    expect(error.message).toMatch(/^sleds are full: /);

    writeOne(primary, 11, 1, 5, 8192);
    error = errorOf(primary.drainEffects());
    expect(error.code).toBe(ErrorCode.NoSpace);
    primary.onClientRequest({
      kind: "zeroes",
      requestId: 12,
      epoch: 1,
      ranges: [{ offset: 0, length: 512 }],
    });
    expect(errorOf(primary.drainEffects()).code).toBe(ErrorCode.NoSpace);

    // A trim is taken: it is how space comes back.
    primary.onClientRequest({
      kind: "trim",
      requestId: 13,
      epoch: 1,
      ranges: [{ offset: 512, length: 2048 }],
    });
    const trimmed = primary.drainEffects();
    expect(only(trimmed, "reply.error")).toEqual([]);
    expect(only(trimmed, "journal.append")[0]?.notes.map((note) => note.kind)).toEqual(["trim"]);

    // Once a flush gets its chunk onto sleds, writes are taken again.
    flushAnswered(primary, "ok");
    writeOne(primary, 14, 1, 6, 8192);
    expect(only(primary.drainEffects(), "reply.error")).toEqual([]);
  });

  test("a flush that fails for another reason leaves writes waiting, as before", () => {
    const primary = halfFullPrimary();
    flushAnswered(primary, "other");
    writeOne(primary, 10, 1, 5, 8192);
    expect(only(primary.drainEffects(), "reply.error")).toEqual([]);
  });
});

describe("a primary cut from the sleds (review-reach R1)", () => {
  /** A primary with committed data to flush whose every chunk write is answered `outcome`. */
  function primaryFlushing(primaryStallTicks: number) {
    const primary = new Replica(
      identity("head-1", 1),
      { notes: [] },
      { flushBytesThreshold: 1, flushRetryTicks: 2, primaryStallTicks },
    );
    primary.configure({ epoch: 1, primary: "head-1", secondaries: ["head-2"] });
    writeOne(primary, 1, 1, 1);
    syncJournal(primary, primary.drainEffects());
    primary.onReplicationMessage(ack("head-2", 1, 1, { durableOpNum: 1 }));
    /** Ticks once; answers any chunk write it starts with `outcome`. */
    const tick = (outcome: "no-space" | "other" | "ok") => {
      primary.tick();
      for (const chunk of only(primary.drainEffects(), "chunk.write")) {
        if (outcome === "ok") primary.onChunkWritten(chunk.chunkNumber, ["sled-1", "sled-2"]);
        else
          primary.onChunkFailed(chunk.chunkNumber, outcome === "no-space" ? "no-space" : undefined);
      }
    };
    return { primary, tick };
  }

  test("reports its flushes stalled once every chunk write has failed for primaryStallTicks", () => {
    // Before, nothing counted this: the journal could never be released, and once full
    // every write waited and timed out while its node reported a healthy primary.
    const { primary, tick } = primaryFlushing(6);
    expect(primary.flushStalledTicks()).toBe(0);
    tick("other"); // the first failure starts the count
    for (let ticks = 0; ticks < 5; ticks++) tick("other");
    expect(primary.flushStalledTicks()).toBe(0);
    tick("other");
    expect(primary.flushStalledTicks()).toBe(6);
    // Staying primary into a new epoch (its secondary dropped) keeps the count.
    primary.configure({ epoch: 2, primary: "head-1", secondaries: [] });
    tick("other");
    expect(primary.flushStalledTicks()).toBe(7);
    // A chunk written ends it.
    for (let ticks = 0; ticks < 3; ticks++) tick("ok");
    expect(primary.flushStalledTicks()).toBe(0);
  });

  test("full sleds are not a cut: they are answered NoSpace, and another primary would find them full", () => {
    const { primary, tick } = primaryFlushing(2);
    for (let ticks = 0; ticks < 10; ticks++) tick("no-space");
    expect(primary.flushStalledTicks()).toBe(0);
    // A failure of another kind after them counts from itself.
    tick("other");
    tick("other");
    tick("other");
    expect(primary.flushStalledTicks()).toBeGreaterThanOrEqual(2);
  });

  test("a replica that stops being primary reports nothing, and counts afresh as primary again", () => {
    const { primary, tick } = primaryFlushing(2);
    for (let ticks = 0; ticks < 5; ticks++) tick("other");
    expect(primary.flushStalledTicks()).toBeGreaterThanOrEqual(2);
    primary.configure({ epoch: 2, primary: "head-2", secondaries: ["head-1"] });
    expect(primary.flushStalledTicks()).toBe(0);
    primary.configure({ epoch: 3, primary: "head-1", secondaries: ["head-2"] });
    expect(primary.flushStalledTicks()).toBe(0);
  });
});

describe("a primary cut from the sleds once its journal is mostly flushed notes (seed 9126046)", () => {
  /**
   * A primary with no followers whose one flushed block holds half its journal, and whose
   * checkpoints are stored (`ok`) or not (`fail`) as it ticks.
   */
  function primaryCheckpointing(logBytesMax: number) {
    const primary = soloPrimaryFlushed({
      logBytesMax,
      flushBytesThreshold: 1,
      primaryStallTicks: 6,
      checkpointIntervalTicks: 1,
      checkpointRetryTicks: 2,
      checkpointStoreRetryTicksMax: 2,
    });
    /**
     * Ticks once; answers the store of any checkpoint it starts with `outcome`. Returns
     * how many it started.
     */
    const tick = (outcome: "fail" | "ok") => {
      primary.tick();
      const writes = only(primary.drainEffects(), "checkpoint.write");
      for (const write of writes) {
        primary.onCheckpointDurable(write.opNum);
        const [store] = only(primary.drainEffects(), "checkpoint.store");
        if (outcome === "ok") primary.onCheckpointStored(write.opNum, storedPointer(store!));
        else primary.onCheckpointFailed(write.opNum);
      }
      return writes.length;
    };
    return { primary, tick };
  }

  test("reports its flushes stalled once every checkpoint store has failed for primaryStallTicks", () => {
    // Before, nothing counted this: writes wait for room, so no chunk write is tried and
    // none fails, and the journal waits on a checkpoint whose stores fail. The primary
    // reported no stall, and the partition's writes waited for as long as the cut lasted
    // while its secondary could take over.
    const { primary, tick } = primaryCheckpointing(1024);
    primary.onClientRequest({
      kind: "write",
      requestId: 2,
      epoch: 1,
      writes: [{ offset: 4096, data: sectors(2, 2) }],
    });
    expect(only(primary.drainEffects(), "journal.append")).toEqual([]); // waits for room
    expect(tick("fail")).toBe(1); // the first failed store starts the count
    for (let ticks = 0; ticks < 5; ticks++) tick("fail");
    expect(primary.flushStalledTicks()).toBe(0);
    tick("fail");
    expect(primary.flushStalledTicks()).toBe(6);
    for (let ticks = 0; ticks < 4; ticks++) tick("fail");
    expect(primary.flushStalledTicks()).toBe(10);
    // A checkpoint stored ends it: the sleds are in reach again.
    for (let ticks = 0; ticks < 3; ticks++) tick("ok");
    expect(primary.flushStalledTicks()).toBe(0);
  });

  test("stores that fail while flushed notes hold less than half the journal count for nothing", () => {
    // Writes still find room, and the chunk writes they lead to find the cut.
    const { primary, tick } = primaryCheckpointing(4096);
    let stores = 0;
    for (let ticks = 0; ticks < 20; ticks++) stores += tick("fail");
    expect(stores).toBeGreaterThan(5);
    expect(primary.flushStalledTicks()).toBe(0);
  });
});

describe("read leases", () => {
  const range = [{ offset: 0, length: 512 }];
  /** A leased primary of epoch 1, and what a read at a reading of both clocks answers. */
  const leasedPrimary = () => {
    const primary = new Replica(identity("head-1", 1), { notes: [] });
    primary.configure({ epoch: 1, primary: "head-1", secondaries: [], leased: true });
    const refused = (now: ClockReading, epoch = 1) => {
      try {
        primary.read(epoch, range, now);
        return undefined;
      } catch (error) {
        return (error as BallastError).code;
      }
    };
    return { primary, refused };
  };
  /** Both clocks at once; the wall clock a fixed way ahead of the monotonic one unless given. */
  const at = (monoMs: number, wallMs = monoMs + 1_700_000_000_000) => ({ monoMs, wallMs });

  test("a leased primary reads only before its lease, by the clocks it is given", () => {
    const { primary, refused } = leasedPrimary();
    const lease = 3000;
    expect(refused(at(100))).toBe(ErrorCode.Unavailable); // no lease yet
    primary.renewLease(1, at(100), lease);
    expect(refused(at(3099))).toBeUndefined();
    expect(refused(at(3100))).toBe(ErrorCode.Unavailable);
    primary.renewLease(2, at(6000), lease); // a grant for another epoch renews nothing
    expect(refused(at(3200))).toBe(ErrorCode.Unavailable);
    primary.renewLease(1, at(3200), lease);
    expect(refused(at(6000))).toBeUndefined();
    // Staying primary into a new epoch (a secondary came or went) keeps the lease: the
    // coordinator promises per partition and node, so reads go on through it.
    primary.configure({ epoch: 2, primary: "head-1", secondaries: ["head-2"], leased: true });
    expect(refused(at(6000), 2)).toBeUndefined();
    expect(refused(at(6200), 2)).toBe(ErrorCode.Unavailable);
    primary.renewLease(2, at(6000), lease);
    expect(refused(at(6300), 2)).toBeUndefined();
    // Deposed, then primary again: the old grant is gone and a new one is needed.
    primary.configure({ epoch: 3, primary: "head-2", secondaries: ["head-1"], leased: true });
    primary.configure({ epoch: 4, primary: "head-1", secondaries: ["head-2"], leased: true });
    expect(refused(at(6300), 4)).toBe(ErrorCode.Unavailable);
    primary.renewLease(4, at(6500), lease);
    expect(refused(at(6600), 4)).toBeUndefined();
    // Unleased (static) sets need none.
    primary.configure({ epoch: 5, primary: "head-1", secondaries: [] });
    expect(refused(at(1e9), 5)).toBeUndefined();
  });

  test("a primary made idle by a follower's ack of the new epoch keeps its lease if that epoch keeps it primary", () => {
    // A secondary dropped, then a learner added: the learner's ack of the new epoch can
    // reach the primary before its own configure does. The primary goes idle until then;
    // once configured primary again, its lease still holds (the coordinator never named
    // another primary), so reads go on. Before, that lease was dropped and reads of a
    // partition with a healthy primary failed until the next grant.
    const { primary, refused } = leasedPrimary();
    primary.configure({ epoch: 2, primary: "head-1", secondaries: ["head-2"], leased: true });
    primary.renewLease(2, at(100), 3000);
    expect(refused(at(200), 2)).toBeUndefined();
    primary.onReplicationMessage(ack("head-3", 3, 1, {}));
    expect(primary.roleName).toBe("idle");
    expect(refused(at(300), 2)).toBe(ErrorCode.NotPrimary);
    primary.configure({
      epoch: 3,
      primary: "head-1",
      secondaries: ["head-2"],
      learners: ["head-3"],
      leased: true,
    });
    expect(primary.holdsLeaseGrant).toBe(true);
    expect(refused(at(400), 3)).toBeUndefined();
    // Made idle by the ack, then named out: the lease goes, and it never comes back
    // by a later configure naming this node primary again.
    primary.onReplicationMessage(ack("head-2", 4, 1, {}));
    primary.configure({ epoch: 4, primary: "head-2", secondaries: ["head-1"], leased: true });
    expect(primary.holdsLeaseGrant).toBe(false);
    primary.configure({ epoch: 5, primary: "head-1", secondaries: ["head-2"], leased: true });
    expect(refused(at(500), 5)).toBe(ErrorCode.Unavailable);
  });

  test("a primary frozen with its clocks held serves no read once its wall clock is set right", () => {
    // A VM stopped for 10 s whose monotonic clock stood still (kvmclock is held while a
    // guest is stopped): on resume it reads 500 ms since the grant's send, well inside a
    // 3 s lease, but its wall clock, set right by a guest agent or NTP, says 10.5 s. The
    // coordinator may have promoted another primary meanwhile.
    const { primary, refused } = leasedPrimary();
    const wall = 1_700_000_000_000;
    primary.renewLease(1, { monoMs: 0, wallMs: wall }, 3000);
    expect(refused({ monoMs: 500, wallMs: wall + 500 })).toBeUndefined();
    expect(refused({ monoMs: 500, wallMs: wall + 10_500 })).toBe(ErrorCode.Unavailable);
    // Held, whichever clock says it has run out.
    expect(refused({ monoMs: 3000, wallMs: wall + 500 })).toBe(ErrorCode.Unavailable);
    expect(refused({ monoMs: 500, wallMs: wall + 3000 })).toBe(ErrorCode.Unavailable);
  });

  test("a wall clock stepped back only ends a lease early: the monotonic bound still holds", () => {
    const { primary, refused } = leasedPrimary();
    const wall = 1_700_000_000_000;
    primary.renewLease(1, { monoMs: 0, wallMs: wall }, 3000);
    // Stepped back 10 s: a time before the grant's send is no time to trust.
    expect(refused({ monoMs: 400, wallMs: wall - 9_600 })).toBe(ErrorCode.Unavailable);
    // The next grant, sent on the stepped clock, holds again from there.
    primary.renewLease(1, { monoMs: 500, wallMs: wall - 9_500 }, 3000);
    expect(refused({ monoMs: 600, wallMs: wall - 9_400 })).toBeUndefined();
    // Its monotonic end still bounds it, whatever the wall clock says.
    expect(refused({ monoMs: 3500, wallMs: wall - 9_400 })).toBe(ErrorCode.Unavailable);
    // A later grant answered out of order (an older send) does not replace a newer one.
    primary.renewLease(1, { monoMs: 100, wallMs: wall + 100 }, 3000);
    expect(refused({ monoMs: 600, wallMs: wall - 9_400 })).toBeUndefined();
    // No reading of the clocks: refused.
    expect(() => primary.read(1, range)).toThrow(/cannot be checked/);
  });
});

describe("volume incarnations", () => {
  test("partition 0 of two incarnations names its first chunk differently", () => {
    const firstChunk = (volumeId: string) => {
      const primary = new Replica(
        { ...identity("head-1", 1), volume: "vol", volumeId },
        { notes: [] },
        { flushBytesThreshold: 1 },
      );
      primary.configure({ epoch: 1, primary: "head-1", secondaries: [] });
      writeOne(primary, 1, 1, 1);
      syncJournal(primary, primary.drainEffects());
      primary.tick();
      return only(primary.drainEffects(), "chunk.write")[0]!.sledChunkId;
    };
    const one = firstChunk("v1a2b3c4");
    const other = firstChunk("v9f8e7d6");
    expect(one).not.toBe(other);
    for (const id of [one, other]) expect(id).toMatch(/^[a-z0-9][a-z0-9-]{0,63}$/);
  });

  test("a chunk id stays within the sled's limit for the longest ids and numbers", () => {
    const id = sledChunkIdOf(
      { volume: "v", volumeId: "x".repeat(32), partition: 0xffff_ffff, session: 0xffff_ffff },
      Number.MAX_SAFE_INTEGER,
      Number.MAX_SAFE_INTEGER,
    );
    expect(id.length).toBeLessThanOrEqual(64);
    expect(id).toMatch(/^[a-z0-9][a-z0-9-]*$/);
  });
});

describe("followers the primary has not heard from", () => {
  test("a learner is reported unheard at op 0 until it acknowledges in the epoch (seeds 9600248, 9602764)", () => {
    // An empty partition (a new volume's): commit point 0. A learner whose node never
    // opened its replica (its configure waiting on a hung disk, or lost) answers nothing;
    // its 0 must not read as a match of that commit point.
    const primary = new Replica(identity("head-1", 1), { notes: [] }, {});
    primary.configure({ epoch: 1, primary: "head-1", secondaries: [], learners: ["head-2"] });
    primary.drainEffects();
    expect(primary.commitOpNum).toBe(0);
    expect(primary.followers()).toEqual([
      { node: "head-2", matchOpNum: 0, learner: true, unheard: true },
    ]);
    // A hello (an ack of no session) is no acknowledgement of this primary.
    primary.onReplicationMessage(ack("head-2", 1, 0, {}));
    expect(primary.followers()[0]?.unheard).toBe(true);
    // An acknowledgement of its session is: op 0 is now a match.
    primary.onReplicationMessage(ack("head-2", 1, 1, {}));
    expect(primary.followers()).toEqual([{ node: "head-2", matchOpNum: 0, learner: true }]);
    // A new epoch starts its progress afresh: unheard again until it answers.
    primary.configure({ epoch: 2, primary: "head-1", secondaries: [], learners: ["head-2"] });
    primary.drainEffects();
    expect(primary.followers()[0]?.unheard).toBe(true);
    primary.onReplicationMessage(ack("head-2", 2, 1, {}));
    expect(primary.followers()[0]?.unheard).toBeUndefined();
    // A voter (a joiner: heard as a learner before) is never marked; its silence is a stall.
    primary.configure({ epoch: 3, primary: "head-1", secondaries: ["head-2"] });
    primary.drainEffects();
    expect(primary.followers()).toEqual([{ node: "head-2", matchOpNum: 0, learner: false }]);
  });
});
