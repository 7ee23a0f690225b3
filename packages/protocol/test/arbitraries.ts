// fast-check generators for every message type of the catalogue. A new message type
// must get a generator here: the round-trip property checks that each type is covered.

import fc from "fast-check";
import { limits, type Message, type MessageType, noteKinds, serviceKinds } from "../src/index.ts";

const name = fc.stringMatching(/^[a-z0-9][a-z0-9-]{0,20}$/);
const safe = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER });
const volumeOffset = fc.integer({ min: 0, max: limits.volumeBytesMax });
const small = fc.integer({ min: 0, max: 1_000_000 });
const uint32 = fc.integer({ min: 0, max: 0xffff_ffff });
const data = fc.uint8Array({ maxLength: 2048 });
const range = fc.record({ offset: volumeOffset, length: volumeOffset });
const entryCount = { minLength: 1, maxLength: 8 };
const address = { volume: name, partition: small, epoch: safe };
/** A mutation's ordering fence: a 128-bit hex session and a sequence from 1. */
const fence = fc.record({
  session: fc.stringMatching(/^[0-9a-f]{32}$/),
  sequence: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
});
const chunkOwner = fc.record({ volume: name, partition: fc.integer({ min: 0, max: 0xffff_ffff }) });
const chunkId = fc.stringMatching(/^[a-z0-9][a-z0-9-]{0,63}$/);
const blobKey = fc.stringMatching(/^[a-z0-9][a-z0-9._/-]{0,40}$/);
const uploadId = fc.uuid().map((uuid) => uuid.toLowerCase());
const crc = fc.integer({ min: 0, max: 0xffff_ffff });

export const messageArbitraries: {
  [T in MessageType]: fc.Arbitrary<Extract<Message, { type: T }>>;
} = {
  "heartbeat.v1": fc.record({
    type: fc.constant("heartbeat.v1" as const),
    kind: fc.constantFrom(...serviceKinds),
    nodeId: name,
    pid: small,
    startedAtMs: safe,
    sentAtMs: safe,
    sequence: safe,
    version: fc.string({ maxLength: 20 }),
  }),
  "node.info.v1": fc.record({ type: fc.constant("node.info.v1" as const) }),
  "link.offer.v1": fc.record({
    type: fc.constant("link.offer.v1" as const),
    key: fc.uint8Array({ minLength: 32, maxLength: 32 }),
  }),
  "cluster.status.v1": fc.record(
    { type: fc.constant("cluster.status.v1" as const), probe: fc.boolean() },
    { requiredKeys: ["type"] },
  ),
  "volume.create.v1": fc.record(
    {
      type: fc.constant("volume.create.v1" as const),
      name,
      sizeBytes: volumeOffset,
      replicaCount: fc.constantFrom(2, 3),
      partitionBytes: volumeOffset,
    },
    { requiredKeys: ["type", "name", "sizeBytes"] },
  ),
  "volume.describe.v1": fc.record({ type: fc.constant("volume.describe.v1" as const), name }),
  "volume.list.v1": fc.record({ type: fc.constant("volume.list.v1" as const) }),
  "volume.delete.v1": fc.record(
    { type: fc.constant("volume.delete.v1" as const), name, force: fc.boolean() },
    { requiredKeys: ["type", "name"] },
  ),
  "volume.resize.v1": fc.record(
    {
      type: fc.constant("volume.resize.v1" as const),
      name,
      sizeBytes: volumeOffset,
      allowShrink: fc.boolean(),
      force: fc.boolean(),
    },
    { requiredKeys: ["type", "name", "sizeBytes"] },
  ),
  "volume.clone.v1": fc.record(
    {
      type: fc.constant("volume.clone.v1" as const),
      volume: name,
      snapshot: name,
      name,
      replicaCount: fc.constantFrom(2, 3),
    },
    { requiredKeys: ["type", "volume", "snapshot", "name"] },
  ),
  "volume.write.v1": fc.record(
    {
      type: fc.constant("volume.write.v1" as const),
      ...address,
      writes: fc.array(fc.record({ offset: volumeOffset, data }), entryCount),
      fence,
    },
    { requiredKeys: ["type", "volume", "partition", "epoch", "writes"] },
  ),
  "volume.read.v1": fc.record(
    {
      type: fc.constant("volume.read.v1" as const),
      ...address,
      reads: fc.array(range, entryCount),
      snapshot: name,
      unmapped: fc.boolean(),
    },
    { requiredKeys: ["type", "volume", "partition", "epoch", "reads"] },
  ),
  "volume.trim.v1": fc.record(
    {
      type: fc.constant("volume.trim.v1" as const),
      ...address,
      ranges: fc.array(range, entryCount),
      fence,
    },
    { requiredKeys: ["type", "volume", "partition", "epoch", "ranges"] },
  ),
  "volume.write-zeroes.v1": fc.record(
    {
      type: fc.constant("volume.write-zeroes.v1" as const),
      ...address,
      ranges: fc.array(range, entryCount),
      fence,
    },
    { requiredKeys: ["type", "volume", "partition", "epoch", "ranges"] },
  ),
  "volume.flush.v1": fc.record({ type: fc.constant("volume.flush.v1" as const), ...address }),
  "snapshot.create.v1": fc.record({
    type: fc.constant("snapshot.create.v1" as const),
    volume: name,
    name,
  }),
  "snapshot.list.v1": fc.record({ type: fc.constant("snapshot.list.v1" as const), volume: name }),
  "snapshot.delete.v1": fc.record({
    type: fc.constant("snapshot.delete.v1" as const),
    volume: name,
    name,
  }),
  "partition.snapshot.hold.v1": fc.record({
    type: fc.constant("partition.snapshot.hold.v1" as const),
    volume: name,
    partition: small,
    volumeId: name,
    hold: name,
    holdMs: fc.integer({ min: 1, max: 60_000 }),
  }),
  "partition.snapshot.take.v1": fc.record({
    type: fc.constant("partition.snapshot.take.v1" as const),
    volume: name,
    partition: small,
    volumeId: name,
    snapshot: name,
  }),
  "partition.snapshot.release.v1": fc.record({
    type: fc.constant("partition.snapshot.release.v1" as const),
    volume: name,
    partition: small,
    volumeId: name,
    hold: name,
  }),
  "partition.snapshot.drop.v1": fc.record({
    type: fc.constant("partition.snapshot.drop.v1" as const),
    volume: name,
    partition: small,
    volumeId: name,
    snapshot: name,
  }),
  "partition.snapshot.rollback.v1": fc.record({
    type: fc.constant("partition.snapshot.rollback.v1" as const),
    volume: name,
    partition: small,
    volumeId: name,
    snapshot: name,
  }),
  "gateway.volume.shrunk.v1": fc.record({
    type: fc.constant("gateway.volume.shrunk.v1" as const),
    volume: name,
  }),
  "volume.rollback.v1": fc.record(
    {
      type: fc.constant("volume.rollback.v1" as const),
      volume: name,
      snapshot: name,
      force: fc.boolean(),
    },
    { requiredKeys: ["type", "volume", "snapshot"] },
  ),
  "replica.notes.v1": fc.record({
    type: fc.constant("replica.notes.v1" as const),
    ...address,
    primary: name,
    session: uint32,
    commitOpNum: safe,
    previousOpNum: safe,
    previousEpoch: safe,
    previousSession: uint32,
    notes: fc.array(
      fc.record(
        {
          opNum: safe,
          epoch: safe,
          session: uint32,
          kind: fc.constantFrom(...noteKinds),
          offset: volumeOffset,
          length: volumeOffset,
          data,
          checksum: uint32,
        },
        { requiredKeys: ["opNum", "epoch", "session", "kind", "offset", "length", "checksum"] },
      ),
      { maxLength: 8 },
    ),
  }),
  "headnode.configure.v1": fc.record({
    type: fc.constant("headnode.configure.v1" as const),
    volume: name,
    partition: small,
    partitionStart: volumeOffset,
    partitionBytes: volumeOffset,
    epoch: safe,
    primary: name,
    secondaries: fc.array(name, { maxLength: 2 }),
    sleds: fc.array(name, { minLength: 1, maxLength: 4 }),
  }),
  "checkpoint.record.v1": fc.record({
    type: fc.constant("checkpoint.record.v1" as const),
    volume: name,
    volumeId: name,
    partition: small,
    node: name,
    checkpoint: fc.record({
      opNum: safe,
      blobKey: fc.stringMatching(/^[a-z0-9][a-z0-9._/-]{0,40}$/),
      sleds: fc.array(name, { minLength: 1, maxLength: 3 }),
      bytes: safe,
      createdAtMs: safe,
    }),
  }),
  "headnode.replica.status.v1": fc.record({
    type: fc.constant("headnode.replica.status.v1" as const),
    volume: name,
    partition: small,
  }),
  "headnode.drop.v1": fc.record({
    type: fc.constant("headnode.drop.v1" as const),
    volume: name,
    volumeId: name,
  }),
  "headnode.leftovers.v1": fc.record({
    type: fc.constant("headnode.leftovers.v1" as const),
    node: name,
    volumeIds: fc.array(name, { minLength: 1, maxLength: 4 }),
  }),
  "headnode.report.v1": fc.record({
    type: fc.constant("headnode.report.v1" as const),
    node: name,
    primaries: fc.array(
      fc.record({
        volume: name,
        partition: small,
        epoch: safe,
        session: safe,
        commitOpNum: safe,
        tailCommitted: fc.boolean(),
        followers: fc.array(fc.record({ node: name, matchOpNum: safe, learner: fc.boolean() }), {
          maxLength: 2,
        }),
      }),
      { maxLength: 4 },
    ),
  }),
  "replica.ack.v1": fc.record({
    type: fc.constant("replica.ack.v1" as const),
    ...address,
    from: name,
    session: uint32,
    durableOpNum: safe,
    commitOpNum: safe,
    mismatch: fc.boolean(),
  }),
  "sled.chunk.write.v1": fc.record({
    type: fc.constant("sled.chunk.write.v1" as const),
    owner: chunkOwner,
    chunkId,
    data,
  }),
  "sled.chunk.read.v1": fc.record({
    type: fc.constant("sled.chunk.read.v1" as const),
    owner: chunkOwner,
    chunkId,
    offset: safe,
    length: safe,
  }),
  "sled.chunk.read-many.v1": fc.record({
    type: fc.constant("sled.chunk.read-many.v1" as const),
    owner: chunkOwner,
    reads: fc.array(fc.record({ chunkId, offset: safe, length: safe }), entryCount),
  }),
  "sled.chunk.delete.v1": fc.record({
    type: fc.constant("sled.chunk.delete.v1" as const),
    owner: chunkOwner,
    chunkId,
  }),
  "sled.chunk.stat.v1": fc.record({
    type: fc.constant("sled.chunk.stat.v1" as const),
    owner: chunkOwner,
    chunkId,
  }),
  "sled.chunk.damaged.v1": fc.record(
    {
      type: fc.constant("sled.chunk.damaged.v1" as const),
      startAfter: chunkId,
      limit: fc.integer({ min: 1, max: 1000 }),
    },
    { requiredKeys: ["type"] },
  ),
  "sled.stat.v1": fc.record({ type: fc.constant("sled.stat.v1" as const) }),
  "sled.blob.begin.v1": fc.record({
    type: fc.constant("sled.blob.begin.v1" as const),
    key: blobKey,
    bytes: safe,
    checksum: crc,
  }),
  "sled.blob.part.v1": fc.record({
    type: fc.constant("sled.blob.part.v1" as const),
    uploadId,
    offset: safe,
    data,
  }),
  "sled.blob.commit.v1": fc.record({
    type: fc.constant("sled.blob.commit.v1" as const),
    uploadId,
  }),
  "sled.blob.abort.v1": fc.record({
    type: fc.constant("sled.blob.abort.v1" as const),
    uploadId,
  }),
  "sled.blob.get.v1": fc.record(
    { type: fc.constant("sled.blob.get.v1" as const), key: blobKey, offset: safe, length: safe },
    { requiredKeys: ["type", "key", "offset"] },
  ),
  "sled.blob.delete.v1": fc.record({
    type: fc.constant("sled.blob.delete.v1" as const),
    key: blobKey,
  }),
  "sled.blob.list.v1": fc.record(
    {
      type: fc.constant("sled.blob.list.v1" as const),
      prefix: fc.string({ maxLength: 20 }),
      startAfter: blobKey,
      limit: fc.integer({ min: 1, max: 1000 }),
    },
    { requiredKeys: ["type"] },
  ),
  "sled.chunk.list.v1": fc.record(
    {
      type: fc.constant("sled.chunk.list.v1" as const),
      volume: name,
      startAfter: chunkId,
      limit: fc.integer({ min: 1, max: 1000 }),
    },
    { requiredKeys: ["type"] },
  ),
  "sled.scrub.v1": fc.record({ type: fc.constant("sled.scrub.v1" as const) }),
};

export const anyMessage: fc.Arbitrary<Message> = fc.oneof(
  ...(Object.values(messageArbitraries) as fc.Arbitrary<Message>[]),
);

/** Buffers decode as Buffer; compare them as plain bytes. */
export function plain(value: unknown): unknown {
  if (value instanceof Uint8Array) return Array.from(value);
  if (Array.isArray(value)) return value.map(plain);
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]));
  }
  return value;
}
