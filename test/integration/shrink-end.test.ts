// The volume's end enforced by the head nodes, on real processes (coordinator, head
// nodes, sleds, NATS). A program using the client library is neither probed nor told of
// a shrink (only gateways are: attached.ts), so a Volume opened before a forced shrink
// still believes the old size. Before the head nodes knew the end, its writes past the
// new end were acknowledged, read back, and then discarded by the next grow's trim: an
// acknowledged write lost. Now each partition's primary is configured with the volume's
// end within it before the tail is trimmed, and refuses I/O past it (OutOfRange).

import { BallastClient, type Volume } from "@ballast/client";
import { type BallastError, ErrorCode, subjects } from "@ballast/protocol";
import { afterAll, beforeAll, expect, test } from "vitest";
import { connectTestBus, startTestCluster, type TestCluster } from "../support/cluster.ts";

const mebibyte = 1024 * 1024;
const name = "ends";
let cluster: TestCluster;
let user: Awaited<ReturnType<typeof connectTestBus>>;

beforeAll(async () => {
  cluster = await startTestCluster({ headNodes: 2, sleds: 2 });
  user = await connectTestBus(cluster.cluster.natsUrl, "client");
  await cluster.bus.request(subjects.coordinator.build(), {
    type: "volume.create.v1",
    name,
    sizeBytes: 3 * mebibyte,
    partitionBytes: mebibyte,
    replicaCount: 2,
  });
}, 60_000);
afterAll(async () => {
  await user?.close();
  await cluster?.stop();
});

function resize(sizeBytes: number) {
  return cluster.bus.request(
    subjects.coordinatorAdmin.build(),
    { type: "volume.resize.v1", name, sizeBytes, allowShrink: true, force: true },
    { deadlineMs: 60_000 },
  );
}

const filled = (length: number, byte: number) => new Uint8Array(length).fill(byte);

/** `bytes` is `length` bytes of `byte`: the first byte that is not, if any (none). */
function expectFilled(bytes: Uint8Array, length: number, byte: number) {
  expect(bytes.byteLength).toBe(length);
  expect(bytes.findIndex((value) => value !== byte)).toBe(-1);
}

/** What `work` rejects with (it must reject). */
async function refusal(work: Promise<unknown>): Promise<BallastError> {
  const outcome = await work.then(
    () => undefined,
    (error: BallastError) => error,
  );
  expect(outcome, "acknowledged past the volume's end").toBeDefined();
  return outcome!;
}

/** A refusal by a primary for reaching past the end (not the client's own check). */
function pastEnd(error: BallastError, volumeEnd: number) {
  expect(error.code).toBe(ErrorCode.OutOfRange);
  expect(error.details).toMatchObject({ remote: true, pastVolumeEnd: true, volumeEnd });
}

test("a client-library Volume opened before a forced shrink is refused past the new end, and nothing acknowledged is lost", async () => {
  const client = new BallastClient(user.bus);
  const volume: Volume = await client.openVolume(name);
  expect(volume.sizeBytes).toBe(3 * mebibyte);
  await volume.write(2.5 * mebibyte, filled(64 * 1024, 7));
  expectFilled(await volume.read(2.5 * mebibyte, 64 * 1024), 64 * 1024, 7);
  // One more Volume per probe below, each opened at the old size: a Volume that learns
  // the new size (a retry re-describes it) refuses by itself, and each probe must reach
  // a primary.
  const probes = await Promise.all([1, 2, 3, 4].map(() => client.openVolume(name)));

  // Shrunk to 1.5 MiB: partition 1 keeps half, partition 2 lies wholly past the end.
  const shrunk = await resize(1.5 * mebibyte);
  expect(shrunk.sizeBytes).toBe(1.5 * mebibyte);

  // The Volumes were told nothing; whatever they believe, the primaries refuse. Partition
  // 2 wholly past the end, partition 1 across it and wholly past it; a read too.
  const [across, zeroes, trim, read] = probes as [Volume, Volume, Volume, Volume];
  pastEnd(await refusal(volume.write(2.5 * mebibyte, filled(4096, 8))), 2 * mebibyte);
  pastEnd(await refusal(across.write(1.5 * mebibyte - 4096, filled(8192, 8))), 1.5 * mebibyte);
  pastEnd(await refusal(zeroes.writeZeroes(1.75 * mebibyte, 4096)), 1.5 * mebibyte);
  pastEnd(await refusal(trim.trim(2 * mebibyte, 4096)), 2 * mebibyte);
  pastEnd(await refusal(read.read(2.5 * mebibyte, 4096)), 2 * mebibyte);
  // Inside the new end, I/O goes on as before.
  await volume.write(1.5 * mebibyte - 4096, filled(4096, 9));
  expectFilled(await volume.read(1.5 * mebibyte - 4096, 4096), 4096, 9);

  // Grown back: the tail reads zeros (the shrink trimmed it, and nothing was written
  // there since: every write was refused), and the same Volume writes there again.
  const grown = await resize(3 * mebibyte);
  expect(grown.sizeBytes).toBe(3 * mebibyte);
  await volume.refreshSize();
  expectFilled(await volume.read(1.5 * mebibyte, 1.5 * mebibyte), 1.5 * mebibyte, 0);
  await volume.write(2.5 * mebibyte, filled(4096, 10));
  expectFilled(await volume.read(2.5 * mebibyte, 4096), 4096, 10);
  expectFilled(await volume.read(1.5 * mebibyte - 4096, 4096), 4096, 9);
  await Promise.all([volume, ...probes].map((opened) => opened.close()));
}, 180_000);
