// The head node shell's part in snapshots, on a real journal and a fake service in place
// of NATS: the primary serves its partition's control subject (hold, take, release,
// drop, rollback), reads may name a snapshot, and a held write is answered only at the
// release.

import { type BallastError, subjects } from "@ballast/protocol";
import { afterEach, beforeEach, expect, test } from "vitest";
import { type FakeService, startHeadNode } from "./fake-service.ts";

let service: FakeService;
let stop: () => Promise<void>;

beforeEach(async () => {
  ({ service, stop } = await startHeadNode("ballast-headnode-snapshot-"));
  await service.inbox({
    type: "headnode.configure.v1",
    volume: "vol",
    partition: 0,
    partitionStart: 0,
    partitionBytes: 1024 * 1024,
    epoch: 1,
    primary: "head-1",
    secondaries: [],
    sleds: ["sled-1"],
  });
});

afterEach(async () => {
  await stop();
});

const control = (message: Record<string, unknown>) =>
  service.call(subjects.partitionControl.build("vol", 0), {
    volume: "vol",
    partition: 0,
    volumeId: "vol",
    ...message,
  });

const write = (fill: number) =>
  service.call(subjects.volume.build("vol", 0), {
    type: "volume.write.v1",
    volume: "vol",
    partition: 0,
    epoch: 1,
    writes: [{ offset: 0, data: new Uint8Array(4096).fill(fill) }],
  });

async function read(snapshot?: string): Promise<number> {
  const { data } = (await service.call(subjects.volume.build("vol", 0), {
    type: "volume.read.v1",
    volume: "vol",
    partition: 0,
    epoch: 1,
    reads: [{ offset: 0, length: 4096 }],
    ...(snapshot === undefined ? {} : { snapshot }),
  })) as { data: Uint8Array[] };
  return data[0]![0]!;
}

test("a snapshot taken on the control subject reads apart from the volume; drop removes it", async () => {
  await write(1);
  const taken = (await control({ type: "partition.snapshot.take.v1", snapshot: "s-1" })) as {
    opNum: number;
  };
  expect(taken).toMatchObject({ epoch: 1 });
  const again = await control({ type: "partition.snapshot.take.v1", snapshot: "s-1" });
  expect(again).toEqual(taken);
  await write(2);
  expect(await read()).toBe(2);
  expect(await read("s-1")).toBe(1);
  await control({ type: "partition.snapshot.drop.v1", snapshot: "s-1" });
  const error = await read("s-1").catch((failure: BallastError) => failure);
  expect((error as BallastError).code).toBe("NotFound");
});

test("a held write is answered at the release; the release says the hold held", async () => {
  await control({ type: "partition.snapshot.hold.v1", hold: "h-1", holdMs: 30_000 });
  let answered = false;
  const held = write(3).then(() => {
    answered = true;
  });
  await new Promise((resolve) => setTimeout(resolve, 200));
  expect(answered).toBe(false);
  await control({ type: "partition.snapshot.take.v1", snapshot: "s-2" });
  expect(await control({ type: "partition.snapshot.release.v1", hold: "h-1" })).toEqual({
    held: true,
  });
  await held;
  expect(await read("s-2")).toBe(3); // committed before the take, though not yet answered
  const other = await control({
    type: "partition.snapshot.take.v1",
    volumeId: "old",
    snapshot: "x",
  }).catch((failure: BallastError) => failure.code);
  expect(other).toBe("NotFound");
});

test("a rollback on the control subject makes the volume read the snapshot again", async () => {
  await write(1);
  await control({ type: "partition.snapshot.take.v1", snapshot: "s-3" });
  await write(2);
  const rolled = await control({ type: "partition.snapshot.rollback.v1", snapshot: "s-3" });
  expect(rolled).toMatchObject({ epoch: 1 });
  expect(await read()).toBe(1);
  expect(await read("s-3")).toBe(1);
  const missing = await control({ type: "partition.snapshot.rollback.v1", snapshot: "nope" }).catch(
    (failure: BallastError) => failure.code,
  );
  expect(missing).toBe("NotFound");
});
