// The snapshot requests of the leader against scripted partition primaries (a fake bus)
// and the real catalogue on an in-memory KV store: hold, take and release on every
// partition, then the record; a hold lost between its take and its release (a failover)
// gives the attempt up, drops its id everywhere and tries again with a new one; names
// taken answer AlreadyExists, unknown ones NotFound; delete drops on every partition and
// then forgets the record.

import { BallastError, ErrorCode, type Message, subjects } from "@ballast/protocol";
import { expect, test } from "vitest";
import { Catalogue, keys } from "../src/catalogue.ts";
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
      default:
        throw new Error(`unexpected ${message.type}`);
    }
  }
}

function start() {
  const store = new FakeStore();
  const catalogue = new Catalogue(store);
  store.put(keys.volume("v"), {
    name: "v",
    id: "1-aaaaaaaaaaaa",
    sizeBytes: 3 * partitionBytes,
    replicaCount: 2,
    partitionBytes,
    createdAtMs: 0,
  });
  const primaries = [new FakePrimary(), new FakePrimary(), new FakePrimary()];
  const snapshots = new Snapshots({
    service: {
      bus: {
        request: async (subject: string, message: Message) => {
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
  });
  return { catalogue, primaries, snapshots };
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
