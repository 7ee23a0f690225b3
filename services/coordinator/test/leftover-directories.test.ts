// Which incarnations the leader tells a head node are gone (headnode.leftovers.v1): the
// pure rule (incarnations.ts), then the shell (leftover-directories.ts) on the real
// catalogue over an in-memory KV store, with a fake tenure.

import { BallastError, ErrorCode } from "@ballast/protocol";
import { describe, expect, test } from "vitest";
import { Catalogue, keys, type VolumeRecord } from "../src/catalogue.ts";
import { goneIncarnationsOf, namedIncarnationsOf } from "../src/incarnations.ts";
import { LeftoverDirectories } from "../src/leftover-directories.ts";
import { newTenure, type Tenure } from "../src/tenure.ts";
import { FakeStore, partitionFixture } from "./fake-store.ts";

const liveId = "3-bbbbbbbbbbbb";
/** Deleted, and its purge record forgotten: nothing in the catalogue names it. */
const goneId = "1-aaaaaaaaaaaa";
const otherGoneId = "2-eeeeeeeeeeee";
/** Deleted, its purge record still there: the purger still owes its drops. */
const purgingId = "2-cccccccccccc";
/** Being created: its partition records are written, its volume record not listed yet. */
const creatingId = "1-dddddddddddd";
/** A clone's parent: named by the clone's record. */
const parentId = "4-ffffffffffff";
/** A static assignment's id: the volume's name, which no record names. */
const staticId = "vol-a";

function volume(name: string, id: string, fields: Partial<VolumeRecord> = {}): VolumeRecord {
  return { name, id, sizeBytes: 1, replicaCount: 2, partitionBytes: 1, createdAtMs: 1, ...fields };
}

describe("which incarnations are gone", () => {
  const named = namedIncarnationsOf({
    volumes: [
      volume("v", liveId),
      volume("c", "5-111111111111", {
        parent: { volume: "p", volumeId: parentId, snapshot: "s", snapshotId: "s1", overlap: 1 },
      }),
    ],
    partitions: [
      { volume: "w", volumeId: creatingId, partition: 0 } as never,
      // Written before incarnations: its id is its name.
      { volume: "old", partition: 0 } as never,
    ],
    purges: [{ volumeId: purgingId }],
  });

  test("every record names its incarnation: volumes, clones' parents, partitions, purges", () => {
    expect([...named].sort()).toEqual(
      [liveId, "5-111111111111", parentId, creatingId, "old", purgingId].sort(),
    );
  });

  test("an asked id is gone only if no record names it and it has the issued shape", () => {
    expect(
      goneIncarnationsOf(
        [liveId, goneId, purgingId, creatingId, parentId, staticId, "old", otherGoneId, goneId],
        named,
      ),
    ).toEqual([goneId, otherGoneId]);
  });

  test("nothing asked, nothing gone", () => {
    expect(goneIncarnationsOf([], new Set())).toEqual([]);
  });
});

function harness() {
  const store = new FakeStore();
  store.put(keys.volume("v"), volume("v", liveId));
  store.put(
    keys.partition("v", 0),
    partitionFixture({ volume: "v", volumeId: liveId, partition: 0 }),
  );
  store.put(keys.purge(purgingId), { volume: "x", volumeId: purgingId, deletedAtMs: 1 });
  store.put(
    keys.partition("w", 0),
    partitionFixture({ volume: "w", volumeId: creatingId, partition: 0 }),
  );
  const catalogue = new Catalogue(store);
  let reads = 0;
  const counted: Pick<Catalogue, "volumes" | "allPartitions" | "purges"> = {
    volumes: () => {
      reads++;
      return catalogue.volumes();
    },
    allPartitions: () => catalogue.allPartitions(),
    purges: () => catalogue.purges(),
  };
  const tenure: Tenure = newTenure({ term: 1, tenure: 1 } as never, 0);
  tenure.ready = true;
  let current: Tenure | undefined = tenure;
  const logged: unknown[] = [];
  const marks = { refusal: (): string | undefined => undefined };
  const directories = new LeftoverDirectories({
    service: { logger: { info: (fields: unknown) => logged.push(fields) } as never },
    catalogue: counted,
    tenures: { current: () => current },
    marks,
  });
  const ask = (volumeIds: string[]) =>
    directories.onAsk(tenure, { type: "headnode.leftovers.v1", node: "head-1", volumeIds });
  return {
    tenure,
    ask,
    logged,
    marks,
    reads: () => reads,
    depose: () => {
      current = undefined;
    },
  };
}

async function codeOf(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise;
    return undefined;
  } catch (error) {
    expect(error).toBeInstanceOf(BallastError);
    return (error as BallastError).code;
  }
}

describe("the leader's answer", () => {
  test("names the asked ids no record names, and no other", async () => {
    const { ask, logged } = harness();
    const answer = await ask([liveId, goneId, purgingId, creatingId, staticId]);
    expect(answer).toEqual({ gone: [goneId] });
    expect(logged).toHaveLength(1);
  });

  test("ids its own copy of the catalogue names are answered without a read", async () => {
    const { tenure, ask, reads } = harness();
    tenure.volumes.set("v", volume("v", liveId));
    expect(await ask([liveId, staticId])).toEqual({ gone: [] });
    expect(reads()).toBe(0);
    // An id the copy does not name is read for, and the read names it: kept.
    expect(await ask([creatingId])).toEqual({ gone: [] });
    expect(reads()).toBe(1);
  });

  test("a control store the sleds' marks refuse answers Unavailable with the reason, never gone", async () => {
    const { ask, marks, tenure } = harness();
    marks.refusal = () => "sled-1 holds the mark of another store";
    const error = await ask([goneId]).catch((caught: BallastError) => caught);
    expect(error).toBeInstanceOf(BallastError);
    expect((error as BallastError).code).toBe(ErrorCode.Unavailable);
    expect((error as BallastError).message).toContain("sled-1 holds the mark of another store");
    // Ids the copy names are still answered: nothing is gone.
    tenure.volumes.set("v", volume("v", liveId));
    expect(await ask([liveId])).toEqual({ gone: [] });
  });

  test("a tenure not yet fenced answers Unavailable", async () => {
    const { tenure, ask } = harness();
    tenure.ready = false;
    expect(await codeOf(ask([goneId]))).toBe(ErrorCode.Unavailable);
  });

  test("a tenure that ended during the read answers Unavailable, not gone", async () => {
    const { ask, depose } = harness();
    const answer = ask([goneId]);
    depose();
    expect(await codeOf(answer)).toBe(ErrorCode.Unavailable);
  });
});
