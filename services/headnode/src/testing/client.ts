// The client's side of the simulators (simulation/simulation.ts, simulation/failover.ts):
// the requests a client sends a replica, drawn from the simulation's one seeded
// generator, and a read's reply resolved to bytes as the head node shell would before
// answering. Both simulators draw their requests here, so a change to the mix of
// requests changes both alike (and changes what every seed replays).

import { type BallastError, limits } from "@ballast/protocol";
import type { ReadResult, Reply } from "../replica/effects.ts";
import type { ClientRequest } from "../replica/replica.ts";
import type { SimRandom } from "./fakes.ts";

/** A read, which the simulators serve from the core directly (`Replica.read`). */
export interface ReadRequest {
  kind: "read";
  requestId: number;
  epoch: number;
  offset: number;
  length: number;
}

/** What a simulated client sends a replica. */
export type SimRequest = ClientRequest | ReadRequest;

/** What a simulated client hears back. */
export type ClientOutcome = { ok: true; reply: Reply } | { ok: false; error: BallastError };

/** Most sectors one range of a drawn request covers. */
const rangeSectorsMax = 8;
/** Most writes one drawn write request carries. */
const writesPerRequestMax = 3;

/**
 * A request at random within the partition at `partitionStart`, with request id and
 * epoch 0 for the caller to fill in: 55% writes of 1 to 3 ranges (each sector filled
 * with one non-zero byte, so a read shows which write it came from), 7% trims, 6% write
 * zeroes, 2% flushes and 30% reads.
 */
export function randomRequest(
  random: SimRandom,
  partitionStart: number,
  partitionBytes: number,
): SimRequest {
  const sectors = partitionBytes / limits.sectorBytes;
  const pickRange = () => {
    const length = random.integer(1, rangeSectorsMax) * limits.sectorBytes;
    const offset =
      partitionStart +
      random.integer(0, sectors - length / limits.sectorBytes) * limits.sectorBytes;
    return { offset, length };
  };
  const roll = random.integer(0, 99);
  if (roll < 55) {
    const writes = Array.from({ length: random.integer(1, writesPerRequestMax) }, () => {
      const { offset, length } = pickRange();
      const data = new Uint8Array(length);
      for (let index = 0; index < length; index += limits.sectorBytes)
        data.fill(random.integer(1, 255), index, index + limits.sectorBytes);
      return { offset, data };
    });
    return { kind: "write", requestId: 0, epoch: 0, writes };
  }
  if (roll < 62) return { kind: "trim", requestId: 0, epoch: 0, ranges: [pickRange()] };
  if (roll < 68) return { kind: "zeroes", requestId: 0, epoch: 0, ranges: [pickRange()] };
  if (roll < 70) return { kind: "flush", requestId: 0, epoch: 0 };
  return { kind: "read", requestId: 0, epoch: 0, ...pickRange() };
}

/**
 * The bytes of a read's first range: its parts are views of the replica's memory and of
 * chunks on the sleds (`chunks`, by sled chunk id). A part naming a chunk that was never
 * written is a violation (`fail`), and reads as zeroes.
 */
export function resolveRead(
  read: ReadResult,
  chunks: ReadonlyMap<string, Uint8Array>,
  fail: (check: string, message: string) => void,
): Uint8Array {
  const range = read.ranges[0]!;
  const bytes = new Uint8Array(range.length);
  for (const part of range.parts) {
    const at = part.offset - range.offset;
    switch (part.kind) {
      case "zero":
        break;
      case "memory":
        bytes.set(part.data, at);
        break;
      case "chunk": {
        const chunk = chunks.get(part.chunk.sledChunkId);
        if (chunk === undefined) {
          fail("read", `chunk ${part.chunk.sledChunkId} is referenced but was never written`);
          break;
        }
        bytes.set(chunk.subarray(part.chunkOffset, part.chunkOffset + part.length), at);
        break;
      }
      default: {
        const unreachable: never = part;
        throw new Error(`unknown part ${JSON.stringify(unreachable)}`);
      }
    }
  }
  return bytes;
}
