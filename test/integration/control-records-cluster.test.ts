// Damaged control records on a running cluster (real nats-server, coordinator, head
// nodes): the leader neither crashes, nor wedges, nor acts on them, and every other
// volume is served. Two victims: `victim`, whose volume record holds msgpack (what a
// client once had a coordinator publish onto the key: before, every list, status and
// describe failed "not valid JSON" for every client), and `mangled`, whose volume
// record is JSON of the wrong types (before, it was read as a volume, and a delete acted
// on it: deleted its partition records and wrote a purge record for its "id"). Beside
// them a snapshot record with a number JSON reads as Infinity and a partition record
// of the wrong types.

import {
  BallastError,
  buckets,
  coordinatorSubjectOf,
  ErrorCode,
  encodeValue,
  type Message,
} from "@ballast/protocol";
import type { Bus } from "@ballast/runtime";
import { Kvm } from "@nats-io/kv";
import { afterAll, beforeAll, expect, test } from "vitest";
import { startTestCluster, type TestCluster, waitFor } from "../support/cluster.ts";
import { readBytes, writeBlocks } from "../support/faults.ts";
import { logLinesContaining } from "../support/logs.ts";

const mebibyte = 1024 * 1024;
const partitionBytes = 4 * mebibyte;
const requestDeadlineMs = 10_000;
/** Said once per damaged record by the leader (catalogue.ts `UnreadableRecords`). */
const reportLine = "a control record does not decode";

let cluster: TestCluster;

beforeAll(async () => {
  cluster = await startTestCluster({ headNodes: 2, sleds: 1 });
});
afterAll(() => cluster?.stop());

function ask(bus: Bus, message: Message) {
  return bus.request(coordinatorSubjectOf(message.type), message as never, {
    deadlineMs: requestDeadlineMs,
  }) as Promise<Record<string, unknown>>;
}

async function failureOf(work: Promise<unknown>): Promise<BallastError> {
  const error = await work.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(BallastError);
  return error as BallastError;
}

test("damaged records are skipped or refused, never acted on, and the other volumes are served", async () => {
  const { bus } = cluster;
  for (const name of ["good", "victim", "mangled"]) {
    await ask(bus, {
      type: "volume.create.v1",
      name,
      sizeBytes: 2 * partitionBytes,
      partitionBytes,
      replicaCount: 2,
    });
  }
  await writeBlocks(bus, "good", 0, 0, 4, 0x5a);

  const kv = await new Kvm(bus.connection).open(buckets.control);
  const text = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));
  await kv.put("volume.victim", encodeValue({ ok: true, result: { name: "victim" } }));
  await kv.put(
    "volume.mangled",
    text({ name: "mangled", id: ["not", "an", "id"], sizeBytes: "huge", replicaCount: 2 }),
  );
  await kv.put("partition.victim.1", text({ volume: "victim", partition: "1", epoch: -1 }));
  await kv.put(
    "snapshot.good.broken",
    new TextEncoder().encode(
      '{"volume":"good","name":"broken","id":"s1","volumeId":"x","createdAtMs":1e400,"partitions":[]}',
    ),
  );

  // Listing and status answer, without the damaged volumes, every time.
  for (let round = 0; round < 3; round++) {
    const listed = (await ask(bus, { type: "volume.list.v1" })) as {
      volumes: { name: string }[];
    };
    expect(listed.volumes.map((volume) => volume.name)).toEqual(["good"]);
    const status = (await ask(bus, { type: "cluster.status.v1" })) as {
      volumes: Record<string, unknown>[];
    };
    expect(status.volumes.map((volume) => volume.name)).toEqual(["good"]);
    const snapshots = (await ask(bus, { type: "snapshot.list.v1", volume: "good" })) as {
      snapshots: unknown[];
    };
    expect(snapshots.snapshots).toEqual([]);
  }

  // A damaged volume is neither "not found" nor deleted: the request is refused, naming
  // the key and what is wrong, never the stored text.
  for (const name of ["victim", "mangled"]) {
    const described = await failureOf(ask(bus, { type: "volume.describe.v1", name }));
    expect(described.code).toBe(ErrorCode.Internal);
    expect(described.message).toContain(`control record volume.${name} is unreadable`);
    const deleted = await failureOf(ask(bus, { type: "volume.delete.v1", name }));
    expect(deleted.message).toContain(`control record volume.${name} is unreadable`);
  }
  const mangledDescribe = await failureOf(
    ask(bus, { type: "volume.describe.v1", name: "mangled" }),
  );
  expect(mangledDescribe.message).not.toContain("huge");
  // Their partition records are all still there, and no purge was recorded.
  for (const name of ["victim", "mangled"]) {
    for (const partition of [0, 1]) {
      expect((await kv.get(`partition.${name}.${partition}`))?.operation).toBe("PUT");
    }
  }
  const purges: string[] = [];
  for await (const key of await kv.keys("purge.>")) purges.push(key);
  expect(purges).toEqual([]);

  // The good volume is still served: written, read back, described.
  await writeBlocks(bus, "good", 1, partitionBytes, 4, 0xa5);
  expect(new Set(await readBytes(bus, "good", 0, 0, 4 * 4096))).toEqual(new Set([0x5a]));
  expect(new Set(await readBytes(bus, "good", 1, partitionBytes, 4 * 4096))).toEqual(
    new Set([0xa5]),
  );
  const good = (await ask(bus, { type: "volume.describe.v1", name: "good" })) as {
    partitions: unknown[];
  };
  expect(good.partitions).toHaveLength(2);

  // Each damaged record is reported once by the leader, however often it was read.
  const reported = await waitFor("the reports of every damaged record", async () => {
    const hits = await logLinesContaining(cluster.dataDir, [reportLine]);
    const keys = hits.map((hit) => (JSON.parse(hit.line) as { key: string }).key).sort();
    return keys.includes("partition.victim.1") ? keys : undefined;
  });
  expect(reported).toEqual([
    "partition.victim.1",
    "snapshot.good.broken",
    "volume.mangled",
    "volume.victim",
  ]);
  const crashes = await logLinesContaining(cluster.dataDir, [
    "periodic work failed",
    "could not read the catalogue",
    "is not valid JSON",
  ]);
  expect(crashes).toEqual([]);
});
