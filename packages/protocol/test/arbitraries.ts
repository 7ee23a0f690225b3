// fast-check generators for every message type of the catalogue. A new message type
// must get a generator here: the round-trip property checks that each type is covered.

import fc from "fast-check";
import { limits, type Message, type MessageType, noteKinds, serviceKinds } from "../src/index.ts";

const name = fc.stringMatching(/^[a-z0-9][a-z0-9-]{0,20}$/);
const safe = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER });
const volumeOffset = fc.integer({ min: 0, max: limits.volumeBytesMax });
const small = fc.integer({ min: 0, max: 1_000_000 });
const data = fc.uint8Array({ maxLength: 2048 });
const range = fc.record({ offset: volumeOffset, length: volumeOffset });
const entryCount = { minLength: 1, maxLength: 8 };
const address = { volume: name, partition: small, epoch: safe };

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
  "cluster.status.v1": fc.record(
    { type: fc.constant("cluster.status.v1" as const), probe: fc.boolean() },
    { requiredKeys: ["type"] },
  ),
  "volume.write.v1": fc.record({
    type: fc.constant("volume.write.v1" as const),
    ...address,
    writes: fc.array(fc.record({ offset: volumeOffset, data }), entryCount),
  }),
  "volume.read.v1": fc.record({
    type: fc.constant("volume.read.v1" as const),
    ...address,
    reads: fc.array(range, entryCount),
  }),
  "volume.trim.v1": fc.record({
    type: fc.constant("volume.trim.v1" as const),
    ...address,
    ranges: fc.array(range, entryCount),
  }),
  "volume.write-zeroes.v1": fc.record({
    type: fc.constant("volume.write-zeroes.v1" as const),
    ...address,
    ranges: fc.array(range, entryCount),
  }),
  "volume.flush.v1": fc.record({ type: fc.constant("volume.flush.v1" as const), ...address }),
  "replica.notes.v1": fc.record({
    type: fc.constant("replica.notes.v1" as const),
    ...address,
    primary: name,
    commitOpNum: safe,
    notes: fc.array(
      fc.record(
        {
          opNum: safe,
          kind: fc.constantFrom(...noteKinds),
          offset: volumeOffset,
          length: volumeOffset,
          data,
          checksum: fc.integer({ min: 0, max: 0xffff_ffff }),
        },
        { requiredKeys: ["opNum", "kind", "offset", "length", "checksum"] },
      ),
      { maxLength: 8 },
    ),
  }),
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
