// The snapshot requests of the leader against scripted partition primaries (a fake bus)
// and the real catalogue on an in-memory KV store: hold, take and release on every
// partition, then the record; a hold lost between its take and its release (a failover)
// gives the attempt up, drops its id everywhere and tries again with a new one (a given
// up attempt stops its retries and lets its requests settle before it releases and
// drops, so that no hold or take lands after them); names
// taken answer AlreadyExists, unknown ones NotFound; delete drops on every partition and
// then forgets the record. Rollback: every partition rolls back to the snapshot's id,
// refused while a live gateway reports the volume attached (or does not answer) unless
// forced, and a partition that fails is named in the error. Store writes that fail after
// (or without) being stored, as a JetStream publish whose acknowledgement is lost does
// (`LostAckStore`): no record is ever left naming trees that were dropped. A delete cut
// off halfway (its leader dead after the mark, the drops or some of them): the snapshot is
// neither listed nor rolled back to, and the next leader, a retry or a create of the name
// finishes the delete.

import { BallastError, ErrorCode, type Message, subjects } from "@ballast/protocol";
import { expect, test } from "vitest";
import { Catalogue, keys } from "../src/catalogue.ts";
import { snapshotRetryMs, snapshotRollbackMarkMs } from "../src/constants.ts";
import { Snapshots } from "../src/snapshots.ts";
import { FakeStore } from "./fake-store.ts";

const partitionBytes = 1024 * 1024;

/** One partition's primary, as the coordinator sees it over the bus. */
class FakePrimary {
  epoch = 1;
  opNum = 10;
  hold: string | undefined;
  readonly snapshots = new Map<string, number>();
  readonly log: string[] = [];
  /** The snapshot ids rolled back to, in order. */
  readonly rolledBack: string[] = [];
  /** Set: rollbacks fail with it. */
  rollbackFailure: BallastError | undefined;
  /**
   * Set: a rollback, once the primary has found the snapshot (its note proposed), is
   * answered done only when this settles, as a slow partition would; meanwhile other
   * requests (a drop) go through. Done even if a drop came first: a head node that
   * answered a rollback note committed after a drop as done did exactly this.
   */
  rollbackGate: Promise<void> | undefined;
  /** Called after each take: a test's failover. */
  afterTake: (() => void) | undefined;

  answer(message: Message): unknown {
    this.log.push(message.type);
    switch (message.type) {
      case "partition.snapshot.hold.v1":
        this.hold = message.hold;
        return { epoch: this.epoch, lastOpNum: this.opNum };
      case "partition.snapshot.take.v1": {
        if (!this.snapshots.has(message.snapshot))
          this.snapshots.set(message.snapshot, ++this.opNum);
        const answer = { epoch: this.epoch, opNum: this.snapshots.get(message.snapshot)! };
        this.afterTake?.();
        return answer;
      }
      case "partition.snapshot.release.v1": {
        const held = this.hold === message.hold;
        this.hold = undefined;
        return { held };
      }
      case "partition.snapshot.drop.v1":
        this.snapshots.delete(message.snapshot);
        return { epoch: this.epoch, opNum: ++this.opNum };
      case "partition.snapshot.rollback.v1":
        if (this.rollbackFailure !== undefined) throw this.rollbackFailure;
        if (!this.snapshots.has(message.snapshot)) throw new BallastError(ErrorCode.NotFound, "no");
        if (this.rollbackGate !== undefined) {
          return this.rollbackGate.then(() => {
            this.rolledBack.push(message.snapshot);
            return { epoch: this.epoch, opNum: ++this.opNum };
          });
        }
        this.rolledBack.push(message.snapshot);
        return { epoch: this.epoch, opNum: ++this.opNum };
      default:
        throw new Error(`unexpected ${message.type}`);
    }
  }
}

/** A gateway's node.info details, or undefined: it does not answer. */
type GatewayDetails = Record<string, unknown> | undefined;

/**
 * How a fake store write fails: stored and then a lost acknowledgement, not stored, or
 * never answered (its writer died before sending it: the write hangs and is not stored).
 */
type WriteFailure = "stored-then-timeout" | "timeout" | "hangs";

/**
 * A fake control store whose snapshot-record writes can fail as a JetStream publish
 * does when its acknowledgement is lost: the test says, per write, whether the store
 * kept it before the timeout. Reads of snapshot records can be made to fail too.
 */
class LostAckStore extends FakeStore {
  /** Consulted before each create, update or delete of a snapshot key. */
  onWrite:
    | ((operation: "create" | "update" | "delete", key: string) => WriteFailure | undefined)
    | undefined;
  /** Reads of snapshot keys that fail next. */
  failingReads = 0;

  override async get(key: string) {
    if (key.startsWith("snapshot.") && this.failingReads > 0) {
      this.failingReads--;
      throw timeout();
    }
    return super.get(key);
  }

  override async create(key: string, value: Uint8Array): Promise<number> {
    return this.write("create", key, () => super.create(key, value));
  }

  override async update(key: string, value: Uint8Array, revision: number): Promise<number> {
    return this.write("update", key, () => super.update(key, value, revision));
  }

  override async delete(key: string, options?: { previousSeq?: number }): Promise<void> {
    await this.write("delete", key, () => super.delete(key, options));
  }

  private async write<T>(
    operation: "create" | "update" | "delete",
    key: string,
    apply: () => Promise<T>,
  ): Promise<T> {
    const failure = key.startsWith("snapshot.") ? this.onWrite?.(operation, key) : undefined;
    if (failure === "timeout") throw timeout();
    if (failure === "hangs") await new Promise(() => undefined);
    const result = await apply();
    if (failure === "stored-then-timeout") throw timeout();
    return result;
  }
}

/** What nats.js throws when a publish's acknowledgement does not come in time. */
function timeout(): Error {
  return Object.assign(new Error("TIMEOUT"), { name: "TimeoutError" });
}

/** Fails the next `count` writes of `operation` with `failure`, then lets them through. */
function failWrites(
  store: LostAckStore,
  operation: "create" | "update" | "delete",
  failure: WriteFailure,
  count = 1,
): void {
  let left = count;
  store.onWrite = (made) => {
    if (made !== operation || left === 0) return undefined;
    left--;
    return failure;
  };
}

const drops = (primary: FakePrimary) =>
  primary.log.filter((type) => type === "partition.snapshot.drop.v1").length;

/** Timer turns `until` waits at most for a condition (each a millisecond or more). */
const untilTurnsMax = 1000;

/** Waits until `condition` holds (a request left running has got that far). */
async function until(condition: () => boolean): Promise<void> {
  for (let turn = 0; turn < untilTurnsMax && !condition(); turn++) {
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  expect(condition()).toBe(true);
}

function start(
  gateways: Record<string, GatewayDetails> = {},
  store = new FakeStore(),
  // Shared by two leaders in turn: the partitions outlive the coordinator.
  primaries = [new FakePrimary(), new FakePrimary(), new FakePrimary()],
  // The monotonic clock rollback marks are aged on (the real one if absent).
  markClock?: () => number,
) {
  const catalogue = new Catalogue(store);
  // A fake of the store marks: records each witnessed create with how many snapshot
  // records of "v" the store held then; `refuse` set, it refuses as a catalogue behind
  // the sleds' witness does.
  const storeMarks = {
    witnessed: [] as { what: string; records: number }[],
    refuse: undefined as string | undefined,
    async witnessCreate(what: string) {
      if (this.refuse !== undefined) throw new BallastError(ErrorCode.Unavailable, this.refuse);
      const records = (await catalogue.snapshotsIncludingDeleting("v")).length;
      this.witnessed.push({ what, records });
    },
  };
  store.put(keys.volume("v"), {
    name: "v",
    id: "1-aaaaaaaaaaaa",
    sizeBytes: 3 * partitionBytes,
    replicaCount: 2,
    partitionBytes,
    createdAtMs: 0,
  });
  const snapshots = new Snapshots({
    service: {
      bus: {
        request: async (subject: string, message: Message) => {
          for (const [id, details] of Object.entries(gateways)) {
            if (subject !== subjects.node.build("gateway", id)) continue;
            if (details === undefined) throw new BallastError(ErrorCode.Timeout, "no answer");
            return { details };
          }
          const index = primaries.findIndex(
            (_, partition) => subject === subjects.partitionControl.build("v", partition),
          );
          if (index < 0) throw new Error(`unexpected subject ${subject}`);
          return primaries[index]!.answer(message);
        },
      },
      logger: { info: () => undefined, warn: () => undefined },
    } as never,
    catalogue,
    members: {
      list: () => [
        ...Object.keys(gateways).map((id) => ({ kind: "gateway", id, alive: true })),
        { kind: "gateway", id: "dead-gateway", alive: false },
        { kind: "headnode", id: "head-1", alive: true },
      ],
    },
    storeMarks,
    ...(markClock === undefined ? {} : { markClock }),
  });
  return { catalogue, primaries, snapshots, store, storeMarks };
}

test("a create holds, takes and releases on every partition, then records the ops", async () => {
  const { snapshots, primaries, catalogue } = start();
  const state = await snapshots.create({ type: "snapshot.create.v1", volume: "v", name: "s" });
  expect(state.partitions).toEqual([
    { index: 0, opNum: 11 },
    { index: 1, opNum: 11 },
    { index: 2, opNum: 11 },
  ]);
  for (const primary of primaries) {
    // Every hold before any take, every take before any release.
    expect(primary.log).toEqual([
      "partition.snapshot.hold.v1",
      "partition.snapshot.take.v1",
      "partition.snapshot.release.v1",
    ]);
    expect(primary.snapshots.get(state.id)).toBe(11);
  }
  expect((await catalogue.snapshot("v", "s"))?.value.id).toBe(state.id);
  const again = await snapshots
    .create({ type: "snapshot.create.v1", volume: "v", name: "s" })
    .catch((error: BallastError) => error.code);
  expect(again).toBe(ErrorCode.AlreadyExists);
  expect((await snapshots.list("v")).snapshots.map((entry) => entry.name)).toEqual(["s"]);
});

test("a create witnesses the catalogue sequence on the sleds before it writes any record", async () => {
  const { snapshots, primaries, catalogue, storeMarks } = start();
  await snapshots.create({ type: "snapshot.create.v1", volume: "v", name: "s" });
  // Witnessed once, while the store held no record of the snapshot yet.
  expect(storeMarks.witnessed).toEqual([{ what: "snapshot s of v", records: 0 }]);
  expect((await catalogue.snapshot("v", "s"))?.value).toBeDefined();
  // Refused (a catalogue behind the sleds' witness): nothing is held, taken or written.
  storeMarks.refuse = "the control store is older than the data";
  const refused = await snapshots
    .create({ type: "snapshot.create.v1", volume: "v", name: "t" })
    .catch((error: BallastError) => error);
  expect(refused).toBeInstanceOf(BallastError);
  expect((refused as BallastError).code).toBe(ErrorCode.Unavailable);
  expect(await catalogue.snapshotIncludingDeleting("v", "t")).toBeUndefined();
  for (const primary of primaries) {
    expect(primary.log.filter((type) => type === "partition.snapshot.hold.v1")).toHaveLength(1);
  }
});

test("a hold lost after its take gives the attempt up: its id is dropped, a new one recorded", async () => {
  const { snapshots, primaries, catalogue } = start();
  const partition1 = primaries[1]!;
  partition1.afterTake = () => {
    // A failover just after the take: the new primary has the snapshot but no hold.
    partition1.epoch = 2;
    partition1.hold = undefined;
    partition1.afterTake = undefined;
  };
  const state = await snapshots.create({ type: "snapshot.create.v1", volume: "v", name: "s" });
  // Two attempts: the first given up (and its id dropped), the second recorded.
  expect(primaries[0]!.log.filter((type) => type === "partition.snapshot.take.v1")).toHaveLength(2);
  for (const primary of primaries) {
    expect([...primary.snapshots.keys()]).toEqual([state.id]); // the first id is gone
    expect(primary.log).toContain("partition.snapshot.drop.v1");
  }
  expect((await catalogue.snapshot("v", "s"))?.value.id).toBe(state.id);
});

test("a create that cannot hold anywhere answers an error and records nothing", async () => {
  const { snapshots, primaries, catalogue } = start();
  for (const primary of primaries) {
    primary.answer = (message: Message) => {
      if (message.type === "partition.snapshot.release.v1") return { held: false };
      return FakePrimary.prototype.answer.call(primary, message);
    };
  }
  const error = await snapshots
    .create({ type: "snapshot.create.v1", volume: "v", name: "s" })
    .catch((failure: BallastError) => failure);
  expect(error).toBeInstanceOf(BallastError);
  expect((error as BallastError).code).toBe(ErrorCode.Unavailable);
  expect(await catalogue.snapshot("v", "s")).toBeUndefined();
  for (const primary of primaries) expect(primary.snapshots.size).toBe(0);
});

test("a partition with no checkpoint room for another snapshot ends the create at once with its NoSpace", async () => {
  const { snapshots, primaries, catalogue } = start();
  const full = primaries[1]!;
  full.answer = (message: Message) => {
    if (message.type === "partition.snapshot.take.v1") {
      full.log.push(message.type);
      throw new BallastError(
        ErrorCode.NoSpace,
        `snapshot ${message.snapshot} refused on v/1: its checkpoint would need up to 300000000 bytes; delete snapshots of this volume first`,
      );
    }
    return FakePrimary.prototype.answer.call(full, message);
  };
  const error = await snapshots
    .create({ type: "snapshot.create.v1", volume: "v", name: "s" })
    .catch((failure: BallastError) => failure);
  expect(error).toBeInstanceOf(BallastError);
  expect((error as BallastError).code).toBe(ErrorCode.NoSpace);
  expect((error as BallastError).message).toMatch(/delete snapshots of this volume first/);
  // One attempt, not one per attempt allowed: another would be refused the same way.
  expect(full.log.filter((type) => type === "partition.snapshot.take.v1")).toHaveLength(1);
  // Nothing recorded, and the partitions that took it dropped it again.
  expect(await catalogue.snapshotIncludingDeleting("v", "s")).toBeUndefined();
  for (const primary of primaries) {
    expect(primary.snapshots.size).toBe(0);
    expect(primary.hold).toBeUndefined();
  }
});

test("a take still in flight when the attempt is given up lands before the drop, never after it", async () => {
  const { snapshots, primaries } = start();
  const [full, slow] = [primaries[0]!, primaries[1]!];
  // Partition 1's take is answered only once the test opens it: in flight meanwhile.
  let open: () => void = () => undefined;
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  slow.answer = (message: Message) => {
    if (message.type !== "partition.snapshot.take.v1") {
      return FakePrimary.prototype.answer.call(slow, message);
    }
    slow.log.push("take sent");
    return opened.then(() => FakePrimary.prototype.answer.call(slow, message));
  };
  full.answer = (message: Message) => {
    if (message.type !== "partition.snapshot.take.v1") {
      return FakePrimary.prototype.answer.call(full, message);
    }
    // Opened after every step this refusal sets off without waiting (the bus and the
    // store here answer in microtasks): a release or drop not waiting for the take
    // comes first.
    setTimeout(open, 0);
    throw new BallastError(ErrorCode.NoSpace, "no checkpoint room for another snapshot");
  };
  const error = await snapshots
    .create({ type: "snapshot.create.v1", volume: "v", name: "s" })
    .catch((failure: BallastError) => failure);
  expect((error as BallastError).code).toBe(ErrorCode.NoSpace);
  await opened;
  await new Promise((resolve) => setImmediate(resolve));
  // Before, the drop came first and the take then left an orphan tree on partition 1.
  const taken = slow.log.indexOf("partition.snapshot.take.v1");
  expect(taken).toBeGreaterThan(0);
  expect(taken).toBeLessThan(slow.log.indexOf("partition.snapshot.drop.v1"));
  expect(slow.snapshots.size).toBe(0);
});

test("a partition retrying when the attempt is given up sends nothing more", async () => {
  const { snapshots, primaries } = start();
  const [full, failing] = [primaries[0]!, primaries[1]!];
  // Partition 1 has no primary to take it (a failover that does not end): retryable.
  failing.answer = (message: Message) => {
    if (message.type !== "partition.snapshot.take.v1") {
      return FakePrimary.prototype.answer.call(failing, message);
    }
    failing.log.push(message.type);
    throw new BallastError(ErrorCode.Unavailable, "no primary");
  };
  full.answer = (message: Message) => {
    if (message.type !== "partition.snapshot.take.v1") {
      return FakePrimary.prototype.answer.call(full, message);
    }
    throw new BallastError(ErrorCode.NoSpace, "no checkpoint room for another snapshot");
  };
  const error = await snapshots
    .create({ type: "snapshot.create.v1", volume: "v", name: "s" })
    .catch((failure: BallastError) => failure);
  expect((error as BallastError).code).toBe(ErrorCode.NoSpace);
  const sentBy = failing.log.length;
  // Past several retry intervals: before, its retries went on until the create's deadline.
  await new Promise((resolve) => setTimeout(resolve, snapshotRetryMs * 3));
  expect(failing.log.slice(sentBy)).toEqual([]);
  expect(failing.log.lastIndexOf("partition.snapshot.take.v1")).toBeLessThan(
    failing.log.indexOf("partition.snapshot.drop.v1"),
  );
});

test("delete drops on every partition, then forgets the record; unknown names are NotFound", async () => {
  const { snapshots, primaries, catalogue } = start();
  const state = await snapshots.create({ type: "snapshot.create.v1", volume: "v", name: "s" });
  await snapshots.delete({ type: "snapshot.delete.v1", volume: "v", name: "s" });
  for (const primary of primaries) expect(primary.snapshots.has(state.id)).toBe(false);
  expect(await catalogue.snapshot("v", "s")).toBeUndefined();
  for (const request of [
    snapshots.delete({ type: "snapshot.delete.v1", volume: "v", name: "s" }),
    snapshots.list("nope"),
  ]) {
    expect(await request.catch((error: BallastError) => error.code)).toBe(ErrorCode.NotFound);
  }
});

test("a delete naming a snapshot id refuses another snapshot of the name, and deletes nothing (review-retries item 2)", async () => {
  const { snapshots, primaries, catalogue } = start();
  const first = await snapshots.create({ type: "snapshot.create.v1", volume: "v", name: "s" });
  // The first attempt deleted it; its answer was lost. Someone takes "s" again.
  await snapshots.delete({ type: "snapshot.delete.v1", volume: "v", name: "s", id: first.id });
  const second = await snapshots.create({ type: "snapshot.create.v1", volume: "v", name: "s" });
  expect(second.id).not.toBe(first.id);
  // The retry names the one it meant: refused NotFound (for the CLI, done), and kept.
  const retry = await snapshots
    .delete({ type: "snapshot.delete.v1", volume: "v", name: "s", id: first.id })
    .catch((error: BallastError) => error);
  expect(retry).toMatchObject({ code: ErrorCode.NotFound, details: { current: second.id } });
  expect((await catalogue.snapshot("v", "s"))?.value.id).toBe(second.id);
  for (const primary of primaries) expect(primary.snapshots.has(second.id)).toBe(true);
  // Naming the current one, or none (an older client), deletes it.
  await snapshots.delete({ type: "snapshot.delete.v1", volume: "v", name: "s", id: second.id });
  expect(await catalogue.snapshot("v", "s")).toBeUndefined();
});

test("a rollback rolls every partition back to the snapshot's id; again is the same", async () => {
  const { snapshots, primaries } = start({ "gw-1": { attached: { other: 2, "v@s": 1 } } });
  const state = await snapshots.create({ type: "snapshot.create.v1", volume: "v", name: "s" });
  const rollback = { type: "volume.rollback.v1", volume: "v", snapshot: "s" } as const;
  const result = await snapshots.rollback(rollback);
  expect(result).toEqual({
    volume: "v",
    snapshot: "s",
    partitions: [
      { index: 0, opNum: 12 },
      { index: 1, opNum: 12 },
      { index: 2, opNum: 12 },
    ],
    partitionCount: 3,
  });
  await snapshots.rollback(rollback);
  for (const primary of primaries) expect(primary.rolledBack).toEqual([state.id, state.id]);
  const unknown = await snapshots
    .rollback({ ...rollback, snapshot: "nope" })
    .catch((error: BallastError) => error.code);
  expect(unknown).toBe(ErrorCode.NotFound);
});

test("a rollback is refused while a gateway has the volume attached or does not answer, unless forced", async () => {
  for (const [details, why] of [
    [{ attached: { v: 1 } }, /1 NBD connection\(s\) through gateway gw-1/],
    [undefined, /gateway gw-1 did not say/],
  ] as const) {
    const { snapshots, primaries } = start({ "gw-0": { attached: {} }, "gw-1": details });
    await snapshots.create({ type: "snapshot.create.v1", volume: "v", name: "s" });
    const rollback = { type: "volume.rollback.v1", volume: "v", snapshot: "s" } as const;
    const refused = await snapshots.rollback(rollback).catch((error: BallastError) => error);
    expect(refused).toBeInstanceOf(BallastError);
    expect((refused as BallastError).code).toBe(ErrorCode.InvalidArgument);
    expect((refused as BallastError).message).toMatch(/volume v is attached/);
    expect((refused as BallastError).message).toMatch(why);
    for (const primary of primaries) expect(primary.rolledBack).toEqual([]);
    await snapshots.rollback({ ...rollback, force: true });
    for (const primary of primaries) expect(primary.rolledBack).toHaveLength(1);
  }
});

test("a rollback that fails on a partition names it; a volume resized since is refused", async () => {
  const { snapshots, primaries, catalogue, store } = start();
  await snapshots.create({ type: "snapshot.create.v1", volume: "v", name: "s" });
  primaries[1]!.rollbackFailure = new BallastError(ErrorCode.InvalidArgument, "broken");
  const rollback = { type: "volume.rollback.v1", volume: "v", snapshot: "s" } as const;
  const failed = await snapshots.rollback(rollback).catch((error: BallastError) => error);
  expect((failed as BallastError).code).toBe(ErrorCode.Unavailable);
  expect((failed as BallastError).message).toMatch(/did not finish on partitions 1 \(broken\)/);
  expect(primaries[0]!.rolledBack).toHaveLength(1);
  primaries[1]!.rollbackFailure = undefined;
  const volume = (await catalogue.volume("v"))!.value;
  store.put(keys.volume("v"), { ...volume, sizeBytes: 4 * partitionBytes });
  const resized = await snapshots.rollback(rollback).catch((error: BallastError) => error);
  expect((resized as BallastError).code).toBe(ErrorCode.InvalidArgument);
  expect((resized as BallastError).message).toMatch(
    /is 4194304 bytes but snapshot s was taken at 3145728 bytes/,
  );
});

test("a rollback to a snapshot of another size is refused even with as many partitions, and goes once resized back", async () => {
  // Shrunk from 3 partitions to 2.5: still 3 partitions. A rollback that went on would
  // keep the size, hiding the snapshot's last half partition until a grow trims it.
  const { snapshots, primaries, catalogue, store } = start();
  await snapshots.create({ type: "snapshot.create.v1", volume: "v", name: "s" });
  const volume = (await catalogue.volume("v"))!.value;
  store.put(keys.volume("v"), { ...volume, sizeBytes: 2.5 * partitionBytes });
  const rollback = { type: "volume.rollback.v1", volume: "v", snapshot: "s" } as const;
  const refused = await snapshots.rollback(rollback).catch((error: BallastError) => error);
  expect((refused as BallastError).code).toBe(ErrorCode.InvalidArgument);
  expect((refused as BallastError).message).toMatch(
    /volume v is 2621440 bytes but snapshot s was taken at 3145728 bytes \(resized since\): .*resize it to 3145728 bytes and retry/,
  );
  for (const primary of primaries) expect(primary.rolledBack).toEqual([]);
  store.put(keys.volume("v"), volume);
  await snapshots.rollback(rollback);
  for (const primary of primaries) expect(primary.rolledBack).toHaveLength(1);
});

// Rollback against a delete: the next leader deletes the snapshot while a leader whose
// lease ran out mid-request is still rolling back to it, held up at partition 1.

/** Holds rollbacks on `primary` until the returned function is called. */
function holdRollbacks(primary: FakePrimary): () => void {
  let open!: () => void;
  primary.rollbackGate = new Promise((resolve) => {
    open = resolve;
  });
  return open;
}

test("a snapshot delete while a rollback to it runs is refused, and goes once the rollback ended", async () => {
  const store = new FakeStore();
  const first = start({}, store);
  const state = await first.snapshots.create({
    type: "snapshot.create.v1",
    volume: "v",
    name: "s",
  });
  const open = holdRollbacks(first.primaries[1]!);
  const rolling = first.snapshots
    .rollback({ type: "volume.rollback.v1", volume: "v", snapshot: "s", force: true })
    .catch((error: BallastError) => error);
  await until(() => first.primaries[0]!.rolledBack.length === 1);
  await until(() => first.primaries[2]!.rolledBack.length === 1);

  const second = start({}, store, first.primaries);
  const refused = await second.snapshots
    .delete({ type: "snapshot.delete.v1", volume: "v", name: "s" })
    .catch((error: BallastError) => error);
  expect((refused as BallastError).code).toBe(ErrorCode.Unavailable);
  expect((refused as BallastError).message).toMatch(/snapshot s of v is being rolled back to/);
  for (const primary of first.primaries) {
    expect(drops(primary)).toBe(0);
    expect(primary.snapshots.has(state.id)).toBe(true);
  }

  open();
  expect(await rolling).toMatchObject({ volume: "v", snapshot: "s" });
  for (const primary of first.primaries) expect(primary.rolledBack).toEqual([state.id]);
  // The rollback took its mark away: the delete goes at once.
  expect((await second.catalogue.snapshot("v", "s"))!.value.rollbacks).toBeUndefined();
  expect(
    await second.snapshots.delete({ type: "snapshot.delete.v1", volume: "v", name: "s" }),
  ).toEqual({ deleted: true });
});

test("a rollback held up past its mark while the snapshot is deleted does not answer success", async () => {
  const store = new FakeStore();
  const first = start({}, store);
  await first.snapshots.create({ type: "snapshot.create.v1", volume: "v", name: "s" });
  const open = holdRollbacks(first.primaries[1]!);
  const rolling = first.snapshots
    .rollback({ type: "volume.rollback.v1", volume: "v", snapshot: "s", force: true })
    .catch((error: BallastError) => error);
  await until(() => first.primaries[0]!.rolledBack.length === 1);

  // The next leader sees the mark, and a mark's life later by its own clock the delete
  // goes on, and drops the snapshot on every partition (partition 1's rollback is
  // already past its check, and is answered done below, as a head node that did not
  // tell would).
  let markClockMs = 0;
  const second = start({}, store, first.primaries, () => markClockMs);
  const deleteS = { type: "snapshot.delete.v1", volume: "v", name: "s" } as const;
  expect(await second.snapshots.delete(deleteS).catch((error: BallastError) => error.code)).toBe(
    ErrorCode.Unavailable,
  );
  markClockMs += snapshotRollbackMarkMs + 1;
  expect(await second.snapshots.delete(deleteS)).toEqual({ deleted: true });
  for (const primary of first.primaries) expect(drops(primary)).toBe(1);

  open();
  const answer = await rolling;
  expect(answer).toBeInstanceOf(BallastError);
  expect((answer as BallastError).code).toBe(ErrorCode.NotFound);
  expect((answer as BallastError).message).toMatch(
    /snapshot s of volume v was deleted while the rollback to it ran.*may be only partly rolled back/,
  );
  expect((answer as BallastError).details).toMatchObject({ deletedDuringRollback: true });
});

/**
 * Snapshot `s` of `v`, with a rollback mark another leader wrote at `sinceMs` by its
 * wall clock (its rollback running, or its leader dead), and a leader whose monotonic
 * clock a test moves.
 */
async function markedByAnother(sinceMs: number) {
  const store = new FakeStore();
  const first = start({}, store);
  await first.snapshots.create({ type: "snapshot.create.v1", volume: "v", name: "s" });
  const read = (await first.catalogue.snapshot("v", "s"))!;
  store.put("snapshot.v.s", { ...read.value, rollbacks: [{ token: "other", sinceMs }] });
  const clock = { ms: 1_000 };
  const leader = start({}, store, first.primaries, () => clock.ms);
  const deleted = () =>
    leader.snapshots
      .delete({ type: "snapshot.delete.v1", volume: "v", name: "s" })
      .catch((error: BallastError) => error);
  return { clock, deleted, primaries: first.primaries };
}

test("a rollback mark written by a leader whose wall clock is behind still holds off a delete", async () => {
  // The marking leader's clock two minutes behind this one's (or this one's stepped
  // forward): by the wall clocks the mark is past its life, though written just now.
  const { clock, deleted, primaries } = await markedByAnother(Date.now() - 2 * 60_000);
  expect(await deleted()).toMatchObject({
    code: ErrorCode.Unavailable,
    message: expect.stringMatching(/snapshot s of v is being rolled back to/),
  });
  clock.ms += snapshotRollbackMarkMs;
  expect(await deleted()).toMatchObject({ code: ErrorCode.Unavailable });
  for (const primary of primaries) expect(drops(primary)).toBe(0);
  // A mark's life after this leader first saw it, the mark holds nothing.
  clock.ms += 1;
  expect(await deleted()).toEqual({ deleted: true });
});

test("a rollback mark written by a leader whose wall clock is ahead holds off a delete for its life only", async () => {
  const { clock, deleted } = await markedByAnother(Date.now() + 60 * 60_000);
  expect(await deleted()).toMatchObject({ code: ErrorCode.Unavailable });
  clock.ms += snapshotRollbackMarkMs + 1;
  expect(await deleted()).toEqual({ deleted: true });
});

// A JetStream write can be stored and still fail at the client (its acknowledgement
// lost or late). Dropping the trees then would leave a record naming a snapshot no
// partition has: listed, but unreadable and no good to roll back to. The record is
// written twice: marked creating by `create` before the takes, then listed by a
// compare-and-set (`update`) after them.

test("a creating record's write stored before its timeout goes on; one not stored takes nothing", async () => {
  const store = new LostAckStore();
  const { snapshots, primaries, catalogue } = start({}, store);
  failWrites(store, "create", "timeout");
  const failed = await snapshots
    .create({ type: "snapshot.create.v1", volume: "v", name: "s" })
    .catch((error: BallastError) => error);
  expect((failed as BallastError).code).toBe(ErrorCode.Unavailable);
  expect(await catalogue.snapshotIncludingDeleting("v", "s")).toBeUndefined();
  for (const primary of primaries) expect(primary.log).toEqual([]);
  failWrites(store, "create", "stored-then-timeout");
  const state = await snapshots.create({ type: "snapshot.create.v1", volume: "v", name: "s" });
  expect((await catalogue.snapshot("v", "s"))?.value.id).toBe(state.id);
  for (const primary of primaries) expect(primary.snapshots.has(state.id)).toBe(true);
});

test("a record write stored before its timeout answers success and keeps the trees", async () => {
  const store = new LostAckStore();
  const { snapshots, primaries, catalogue } = start({}, store);
  failWrites(store, "update", "stored-then-timeout");
  const state = await snapshots.create({ type: "snapshot.create.v1", volume: "v", name: "s" });
  expect((await catalogue.snapshot("v", "s"))?.value.id).toBe(state.id);
  for (const primary of primaries) {
    expect(drops(primary)).toBe(0);
    expect(primary.snapshots.has(state.id)).toBe(true);
  }
  // Readable: a rollback to it finds it on every partition.
  await snapshots.rollback({ type: "volume.rollback.v1", volume: "v", snapshot: "s" });
  for (const primary of primaries) expect(primary.rolledBack).toEqual([state.id]);
});

test("a record write of unknown outcome keeps the trees; a retry names the snapshot it recorded", async () => {
  const store = new LostAckStore();
  const { snapshots, primaries, catalogue } = start({}, store);
  // Stored, but the read back fails too: the leader cannot tell that it was.
  store.onWrite = (operation) => {
    if (operation !== "update") return undefined;
    store.onWrite = undefined;
    store.failingReads = 1;
    return "stored-then-timeout";
  };
  const failed = await snapshots
    .create({ type: "snapshot.create.v1", volume: "v", name: "s" })
    .catch((error: BallastError) => error);
  expect(failed).toBeInstanceOf(BallastError);
  expect((failed as BallastError).code).toBe(ErrorCode.Unavailable); // the client retries
  const recorded = (await catalogue.snapshot("v", "s"))!.value;
  expect((failed as BallastError).message).toContain(`id ${recorded.id}`);
  for (const primary of primaries) {
    expect(drops(primary)).toBe(0);
    expect(primary.snapshots.has(recorded.id)).toBe(true);
  }
  // Nothing is creating it any more: had no record been written, the sweep would drop it.
  expect(snapshots.creatingIds().size).toBe(0);
  const retried = await snapshots
    .create({ type: "snapshot.create.v1", volume: "v", name: "s" })
    .catch((error: BallastError) => error);
  expect((retried as BallastError).code).toBe(ErrorCode.AlreadyExists);
  expect((retried as BallastError).message).toContain(`id ${recorded.id}`);
  await snapshots.rollback({ type: "volume.rollback.v1", volume: "v", snapshot: "s" });
  for (const primary of primaries) expect(primary.rolledBack).toEqual([recorded.id]);
});

test("a record write not stored leaves the trees to the sweep; one refused as a conflict drops them", async () => {
  const store = new LostAckStore();
  const { snapshots, primaries, catalogue } = start({}, store);
  failWrites(store, "update", "timeout");
  const unknown = await snapshots
    .create({ type: "snapshot.create.v1", volume: "v", name: "s" })
    .catch((error: BallastError) => error);
  expect((unknown as BallastError).code).toBe(ErrorCode.Unavailable);
  expect(await catalogue.snapshot("v", "s")).toBeUndefined();
  for (const primary of primaries) {
    expect(drops(primary)).toBe(0);
    expect(primary.snapshots.size).toBe(1); // unrecorded: the orphan sweep's
  }

  // The creating record was removed past its grace and another create took the name
  // while this one was taking: the listing certainly failed, and never will apply.
  store.onWrite = (operation, key) => {
    if (operation !== "update") return undefined;
    store.onWrite = undefined;
    store.put(key, {
      volume: "v",
      name: "t",
      id: "other",
      volumeId: "1-aaaaaaaaaaaa",
      createdAtMs: 1,
      partitions: [],
    });
    return undefined;
  };
  const conflict = await snapshots
    .create({ type: "snapshot.create.v1", volume: "v", name: "t" })
    .catch((error: BallastError) => error);
  expect((conflict as BallastError).code).toBe(ErrorCode.Unavailable);
  expect((conflict as BallastError).message).toContain("removed meanwhile");
  expect((await catalogue.snapshot("v", "t"))?.value.id).toBe("other");
  for (const primary of primaries) {
    expect(drops(primary)).toBe(1);
    expect(primary.snapshots.size).toBe(1); // the first create's only
  }
});

test("a delete whose record removal is stored before its timeout, or not stored, still removes it", async () => {
  for (const failure of ["stored-then-timeout", "timeout"] as const) {
    const store = new LostAckStore();
    const { snapshots, primaries, catalogue } = start({}, store);
    const state = await snapshots.create({ type: "snapshot.create.v1", volume: "v", name: "s" });
    failWrites(store, "delete", failure);
    const answer = await snapshots.delete({ type: "snapshot.delete.v1", volume: "v", name: "s" });
    expect(answer).toEqual({ deleted: true });
    // No record is left naming the trees just dropped.
    expect(await catalogue.snapshot("v", "s")).toBeUndefined();
    for (const primary of primaries) expect(primary.snapshots.has(state.id)).toBe(false);
  }
});

test("a delete whose record removal keeps failing says so, and a retry finishes it", async () => {
  const store = new LostAckStore();
  const { snapshots, catalogue } = start({}, store);
  await snapshots.create({ type: "snapshot.create.v1", volume: "v", name: "s" });
  store.onWrite = (operation) => (operation === "delete" ? "timeout" : undefined);
  const failed = await snapshots
    .delete({ type: "snapshot.delete.v1", volume: "v", name: "s" })
    .catch((error: BallastError) => error);
  expect((failed as BallastError).code).toBe(ErrorCode.Unavailable);
  expect((failed as BallastError).message).toMatch(/whether its record was removed is unknown/);
  store.onWrite = undefined;
  await snapshots.delete({ type: "snapshot.delete.v1", volume: "v", name: "s" });
  expect(await catalogue.snapshot("v", "s")).toBeUndefined();
});

test("a delete whose leader dies after the drops lists nothing, and the next leader finishes it", async () => {
  const store = new LostAckStore();
  const first = start({}, store);
  const state = await first.snapshots.create({
    type: "snapshot.create.v1",
    volume: "v",
    name: "s",
  });
  await first.snapshots.create({ type: "snapshot.create.v1", volume: "v", name: "t" });
  // The leader dies between its drops and the record's removal: the removal never lands.
  store.onWrite = (operation) => (operation === "delete" ? "hangs" : undefined);
  void first.snapshots.delete({ type: "snapshot.delete.v1", volume: "v", name: "s" });
  await until(() => first.primaries.every((primary) => drops(primary) === 1));
  for (const primary of first.primaries) expect(primary.snapshots.has(state.id)).toBe(false);

  // Its trees are gone: nothing may list it, resolve it for a read, clone or roll back to it.
  store.onWrite = undefined;
  const second = start({}, store, first.primaries);
  expect((await second.snapshots.list("v")).snapshots.map((entry) => entry.name)).toEqual(["t"]);
  expect(await second.catalogue.snapshot("v", "s")).toBeUndefined();
  const rollback = await second.snapshots
    .rollback({ type: "volume.rollback.v1", volume: "v", snapshot: "s", force: true })
    .catch((error: BallastError) => error);
  expect((rollback as BallastError).code).toBe(ErrorCode.NotFound);
  expect((rollback as BallastError).message).toMatch(/snapshot s of volume v is being deleted/);
  for (const primary of first.primaries) expect(primary.rolledBack).toEqual([]);

  // The next leader's sweep finishes it: the drops again (harmless), then the record.
  const marked = (await second.catalogue.snapshotIncludingDeleting("v", "s"))!;
  const volume = (await second.catalogue.volume("v"))!.value;
  expect(await second.snapshots.finishDeleting(volume, marked)).toBe(true);
  expect(await second.catalogue.snapshotIncludingDeleting("v", "s")).toBeUndefined();
  for (const primary of first.primaries) expect(drops(primary)).toBe(2);
  // A record with no mark, as older coordinators wrote them all, reads as it did.
  await second.snapshots.rollback({
    type: "volume.rollback.v1",
    volume: "v",
    snapshot: "t",
    force: true,
  });
});

test("a delete cut off with some partitions dropped is finished by a create of the name", async () => {
  const first = start();
  const old = await first.snapshots.create({ type: "snapshot.create.v1", volume: "v", name: "s" });
  // Partition 2 never answers this leader's drop: it dies with the other two done.
  const partition2 = first.primaries[2]!;
  const answer = partition2.answer.bind(partition2);
  partition2.answer = (message: Message) =>
    message.type === "partition.snapshot.drop.v1" ? new Promise(() => undefined) : answer(message);
  void first.snapshots.delete({ type: "snapshot.delete.v1", volume: "v", name: "s" });
  await until(() => drops(first.primaries[0]!) === 1 && drops(first.primaries[1]!) === 1);
  expect(partition2.snapshots.has(old.id)).toBe(true);
  expect((await first.snapshots.list("v")).snapshots).toEqual([]);

  // A create of the name finishes the delete first; while a partition refuses, it says so.
  const second = start({}, first.store, first.primaries);
  partition2.answer = (message: Message) => {
    if (message.type === "partition.snapshot.drop.v1") {
      throw new BallastError(ErrorCode.InvalidArgument, "broken");
    }
    return answer(message);
  };
  const create = { type: "snapshot.create.v1", volume: "v", name: "s" } as const;
  const refused = await second.snapshots.create(create).catch((error: BallastError) => error);
  expect((refused as BallastError).code).toBe(ErrorCode.Unavailable);
  expect((refused as BallastError).message).toMatch(/s of v is being deleted/);
  expect((await second.snapshots.list("v")).snapshots).toEqual([]);
  partition2.answer = answer;
  const fresh = await second.snapshots.create(create);
  expect(fresh.id).not.toBe(old.id);
  for (const primary of first.primaries) expect([...primary.snapshots.keys()]).toEqual([fresh.id]);
  expect((await second.snapshots.list("v")).snapshots.map((entry) => entry.id)).toEqual([fresh.id]);
});

test("a delete's mark stored before its timeout goes on; one not stored drops nothing and keeps it", async () => {
  const store = new LostAckStore();
  const { snapshots, primaries } = start({}, store);
  const state = await snapshots.create({ type: "snapshot.create.v1", volume: "v", name: "s" });
  failWrites(store, "update", "timeout");
  const failed = await snapshots
    .delete({ type: "snapshot.delete.v1", volume: "v", name: "s" })
    .catch((error: BallastError) => error);
  expect((failed as BallastError).code).toBe(ErrorCode.Unavailable);
  expect((failed as BallastError).message).toMatch(/could not be marked for deletion/);
  for (const primary of primaries) expect(drops(primary)).toBe(0);
  expect((await snapshots.list("v")).snapshots.map((entry) => entry.id)).toEqual([state.id]);

  failWrites(store, "update", "stored-then-timeout");
  const answer = await snapshots.delete({ type: "snapshot.delete.v1", volume: "v", name: "s" });
  expect(answer).toEqual({ deleted: true });
  expect((await snapshots.list("v")).snapshots).toEqual([]);
  for (const primary of primaries) expect(primary.snapshots.has(state.id)).toBe(false);
});

test("a rollback's mark stored before its timeout goes on; one not stored rolls nothing back", async () => {
  const store = new LostAckStore();
  const { snapshots, primaries, catalogue } = start({}, store);
  await snapshots.create({ type: "snapshot.create.v1", volume: "v", name: "s" });
  const rollback = { type: "volume.rollback.v1", volume: "v", snapshot: "s", force: true } as const;
  failWrites(store, "update", "timeout");
  const refused = await snapshots.rollback(rollback).catch((error: BallastError) => error);
  expect((refused as BallastError).code).toBe(ErrorCode.Unavailable);
  expect((refused as BallastError).message).toMatch(/could not be marked.*nothing was rolled back/);
  for (const primary of primaries) expect(primary.rolledBack).toEqual([]);
  failWrites(store, "update", "stored-then-timeout");
  await snapshots.rollback(rollback);
  for (const primary of primaries) expect(primary.rolledBack).toHaveLength(1);
  expect((await catalogue.snapshot("v", "s"))!.value.rollbacks).toBeUndefined();
});

test("a snapshot or rollback is refused while a shrink begun earlier is not finished, and goes once it is", async () => {
  // A shrink that failed after lowering the ends leaves `shrinkingTo` recorded and the
  // tail maybe trimmed on some partitions only: a snapshot would keep that tail at the
  // old size; a rollback would bring back data the shrink's finish trims again.
  const { snapshots, primaries, catalogue, store } = start();
  await snapshots.create({ type: "snapshot.create.v1", volume: "v", name: "before" });
  const volume = (await catalogue.volume("v"))!.value;
  store.put(keys.volume("v"), {
    ...volume,
    shrinkingTo: 2 * partitionBytes,
    shrinkingFrom: volume.sizeBytes,
  });
  const create = await snapshots
    .create({ type: "snapshot.create.v1", volume: "v", name: "s" })
    .catch((error: BallastError) => error);
  expect(create).toBeInstanceOf(BallastError);
  expect((create as BallastError).code).toBe(ErrorCode.Unavailable);
  expect((create as BallastError).message).toMatch(
    /volume v is being shrunk from 3145728 to 2097152 bytes/,
  );
  const rollback = await snapshots
    .rollback({ type: "volume.rollback.v1", volume: "v", snapshot: "before" })
    .catch((error: BallastError) => error);
  expect((rollback as BallastError).code).toBe(ErrorCode.Unavailable);
  for (const primary of primaries) {
    // Only the first create's three steps: nothing held, taken or rolled back since.
    expect(primary.log).toHaveLength(3);
    expect(primary.rolledBack).toEqual([]);
  }
  expect(await catalogue.snapshot("v", "s")).toBeUndefined();
  store.put(keys.volume("v"), volume);
  await snapshots.create({ type: "snapshot.create.v1", volume: "v", name: "s" });
  expect((await catalogue.snapshot("v", "s"))?.value.name).toBe("s");
});
