// Fuzzing during the chaos run: malformed messages to every subject of the protocol
// (packages/protocol/src/subjects.ts: coordinator, every node's inbox, every partition's
// volume subject, every replica's, heartbeats) and random bytes to the NBD port, while
// the workload and the nemesis run. Afterwards every service must still run and the
// history must still check.
//
// Only malformed input is sent: random bytes, msgpack that is not a map, maps without a
// string type or of an unknown type, and maps of every known type whose usual fields
// all have the wrong type. A well-formed request (say a volume delete) would be obeyed,
// rightly, and is not fuzzing.

import { connect } from "node:net";
import { encodeValue, messageTypes, type ServiceKind, subjects } from "@ballast/protocol";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Random } from "./random.ts";

/** Pause between two fuzz messages. */
export const fuzzIntervalMs = 50;
/** How long a fuzz request waits for an answer (most get an error reply). */
export const fuzzReplyWaitMs = 500;

export interface FuzzStats {
  messages: number;
  answered: number;
  nbdConnections: number;
}

const wrongValues: unknown[] = [
  -1,
  2 ** 53,
  Number.NaN,
  "",
  "x".repeat(300),
  [],
  {},
  null,
  true,
  new Uint8Array(3),
];
const usualFields = [
  "name",
  "volume",
  "partition",
  "nodeId",
  "node",
  "epoch",
  "offset",
  "length",
  "data",
  "opNum",
  "chunkId",
  "blobId",
  "sizeBytes",
  "replicaCount",
  "entries",
  "notes",
];

function randomBytes(random: Random, max: number): Uint8Array {
  const bytes = new Uint8Array(random.int(max));
  for (let index = 0; index < bytes.length; index++) bytes[index] = random.int(256);
  return bytes;
}

export function malformedMessage(random: Random): Uint8Array {
  switch (random.int(5)) {
    case 0:
      return randomBytes(random, 256);
    case 1:
      return encodeValue(random.pick(wrongValues));
    case 2:
      return encodeValue({ type: random.pick(wrongValues), volume: "chaos-two" });
    case 3:
      return encodeValue({ type: `fuzz.${random.int(1000)}.v1`, partition: 0 });
    default: {
      const message: Record<string, unknown> = { type: random.pick(messageTypes) };
      for (const field of usualFields) message[field] = random.pick(wrongValues);
      return encodeValue(message);
    }
  }
}

export function fuzzSubjects(
  nodes: readonly { kind: ServiceKind; id: string }[],
  volumes: readonly { name: string; partitions: number }[],
  headNodes: readonly string[],
): string[] {
  const list = [subjects.coordinator.build()];
  for (const { kind, id } of nodes) list.push(subjects.node.build(kind, id));
  list.push(subjects.heartbeat.build("headnode", "fuzz-node"));
  for (const volume of volumes) {
    for (let partition = 0; partition < volume.partitions; partition++) {
      list.push(subjects.volume.build(volume.name, partition));
      for (const head of headNodes) list.push(subjects.replica.build(volume.name, partition, head));
    }
  }
  return list;
}

/** Sends fuzz until `keepGoing()` says stop. */
export async function runFuzz(
  connection: NatsConnection,
  subjectList: readonly string[],
  nbdPort: number,
  random: Random,
  keepGoing: () => boolean,
): Promise<FuzzStats> {
  const stats: FuzzStats = { messages: 0, answered: 0, nbdConnections: 0 };
  while (keepGoing()) {
    await new Promise((resolve) => setTimeout(resolve, fuzzIntervalMs));
    if (random.int(20) === 0) {
      stats.nbdConnections++;
      await nbdGarbage(nbdPort, randomBytes(random, 2048));
      continue;
    }
    const subject = random.pick(subjectList);
    stats.messages++;
    try {
      await connection.request(subject, malformedMessage(random), { timeout: fuzzReplyWaitMs });
      stats.answered++;
    } catch {
      // No answer (a publication-only subject, a node down) or no responders: fine.
    }
  }
  return stats;
}

function nbdGarbage(port: number, bytes: Uint8Array): Promise<void> {
  return new Promise((resolve) => {
    const socket = connect({ host: "127.0.0.1", port });
    const done = () => {
      socket.destroy();
      resolve();
    };
    socket.setTimeout(1000, done);
    socket.once("error", done);
    socket.once("close", done);
    socket.once("connect", () => {
      socket.write(bytes);
      setTimeout(done, 200);
    });
  });
}
