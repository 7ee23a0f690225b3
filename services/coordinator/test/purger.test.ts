// The purger's shell against scripted sleds (in-memory inventories behind a fake bus)
// and the real catalogue on an in-memory KV store.

import { BallastError, ErrorCode, type Message, subjects } from "@ballast/protocol";
import { describe, expect, test } from "vitest";
import { Catalogue, keys } from "../src/catalogue.ts";
import type { Member } from "../src/membership.ts";
import { Purger } from "../src/purger.ts";
import type { Tenure } from "../src/tenure.ts";
import { FakeStore } from "./fake-store.ts";

interface Chunk {
  chunkId: string;
  owner: { volume: string; partition: number };
}

class FakeSled {
  readonly chunks = new Map<string, Chunk>();
  readonly blobs = new Set<string>();
  alive = true;

  answer(message: Message): unknown {
    switch (message.type) {
      case "sled.chunk.list.v1": {
        // Pages of one, so that paging is exercised.
        const ids = [...this.chunks.keys()]
          .filter((id) => this.chunks.get(id)!.owner.volume === message.volume)
          .filter((id) => message.startAfter === undefined || id > message.startAfter)
          .sort();
        return {
          chunks: ids.slice(0, 1).map((id) => ({ ...this.chunks.get(id)!, bytes: 4096 })),
          truncated: ids.length > 1,
        };
      }
      case "sled.blob.list.v1": {
        const found = [...this.blobs]
          .filter((key) => key.startsWith(message.prefix ?? ""))
          .filter((key) => message.startAfter === undefined || key > message.startAfter)
          .sort();
        return { blobs: found.map((key) => ({ key })), truncated: false };
      }
      case "sled.chunk.delete.v1":
        if (!this.chunks.delete(message.chunkId)) throw new BallastError(ErrorCode.NotFound, "");
        return { freedBytes: 4096 };
      case "sled.blob.delete.v1":
        if (!this.blobs.delete(message.key)) throw new BallastError(ErrorCode.NotFound, "");
        return { freedBytes: 4096 };
      default:
        throw new Error(`unexpected ${message.type}`);
    }
  }
}

const dead = { volume: "v", volumeId: "1-aaaaaaaaaaaa", deletedAtMs: 1 };
const liveId = "2-bbbbbbbbbbbb";

function fill(sled: FakeSled): void {
  for (const [volume, volumeId] of [
    ["v", dead.volumeId],
    ["v", liveId],
    ["w", "1-cccccccccccc"],
  ] as const) {
    for (const partition of [0, 1]) {
      const chunkId = `${volumeId}-p${partition}-e1-s1-c0`;
      sled.chunks.set(chunkId, { chunkId, owner: { volume, partition } });
      sled.blobs.add(`checkpoints/${volumeId}/${partition}/h1/5-1-1`);
    }
  }
}

async function harness() {
  const store = new FakeStore();
  const catalogue = new Catalogue(store);
  store.put(keys.volume("v"), {
    name: "v",
    id: liveId,
    sizeBytes: 1,
    replicaCount: 2,
    partitionBytes: 1,
    createdAtMs: 1,
  });
  await catalogue.recordPurge(dead);
  const sleds = new Map([
    ["sled-1", new FakeSled()],
    ["sled-2", new FakeSled()],
  ]);
  for (const sled of sleds.values()) fill(sled);
  const tenure = { ready: true } as Tenure;
  const purger = new Purger({
    service: {
      bus: {
        request: async (subject: string, message: Message) => {
          const id = subject.split(".").at(-1)!;
          expect(subject).toBe(subjects.node.build(id));
          const sled = sleds.get(id)!;
          if (!sled.alive) throw new BallastError(ErrorCode.Unavailable, "no responders");
          return sled.answer(message);
        },
      },
      logger: { info: () => undefined, warn: () => undefined },
    } as never,
    catalogue,
    heartbeats: {
      list: () =>
        [...sleds].map(([id, sled]) => ({ id, kind: "sled", alive: sled.alive }) as Member),
      listening: () => false,
    },
    tenures: { held: () => tenure, current: () => tenure },
    times: { graceMs: 0, retainMs: 0, ageMsMax: 1_000_000 },
  });
  const left = (sled: FakeSled) => [...sled.chunks.keys(), ...sled.blobs].sort();
  return { store, sleds, purger, left };
}

const survivors = [
  `${liveId}-p0-e1-s1-c0`,
  `${liveId}-p1-e1-s1-c0`,
  "1-cccccccccccc-p0-e1-s1-c0",
  "1-cccccccccccc-p1-e1-s1-c0",
  `checkpoints/${liveId}/0/h1/5-1-1`,
  `checkpoints/${liveId}/1/h1/5-1-1`,
  "checkpoints/1-cccccccccccc/0/h1/5-1-1",
  "checkpoints/1-cccccccccccc/1/h1/5-1-1",
].sort();

describe("the purger", () => {
  test("deletes every chunk and blob of the dead incarnation on every sled, and nothing else", async () => {
    const { store, sleds, purger, left } = await harness();
    await purger.purge();
    for (const sled of sleds.values()) expect(left(sled)).toEqual(survivors);
    // Objects were found: the record stays until a pass finds none.
    expect(store.value(keys.purge(dead.volumeId))).toEqual(dead);
    await purger.purge();
    expect(store.value(keys.purge(dead.volumeId))).toBeUndefined();
  });

  test("a sled that was down is purged when it returns, and only then is the record forgotten", async () => {
    const { store, sleds, purger, left } = await harness();
    sleds.get("sled-2")!.alive = false;
    await purger.purge();
    await purger.purge();
    await purger.purge();
    expect(left(sleds.get("sled-1")!)).toEqual(survivors);
    expect(store.value(keys.purge(dead.volumeId))).toEqual(dead);
    sleds.get("sled-2")!.alive = true;
    await purger.purge();
    expect(left(sleds.get("sled-2")!)).toEqual(survivors);
    await purger.purge();
    expect(store.value(keys.purge(dead.volumeId))).toBeUndefined();
  });

  test("a follower purges nothing", async () => {
    const { sleds, store, left } = await harness();
    const purger = new Purger({
      service: { bus: { request: () => Promise.reject(new Error("sent")) } } as never,
      catalogue: new Catalogue(store),
      heartbeats: { list: () => [], listening: () => false },
      tenures: { held: () => undefined, current: () => undefined },
    });
    await purger.purge();
    expect(left(sleds.get("sled-1")!)).toHaveLength(12);
  });
});
