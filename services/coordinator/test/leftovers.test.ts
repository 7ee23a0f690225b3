import { checkpointBlobPrefixOf, hashedChunkIdPrefixOf } from "@ballast/protocol";
import { describe, expect, test } from "vitest";
// The head node's own naming, so that these tests break if the two ever drift apart.
import { sledChunkIdOf } from "../../headnode/src/replica/replica.ts";
import {
  isLeftoverBlob,
  isLeftoverChunk,
  knownIncarnationsOf,
  LeftoverSightings,
  type LeftoverTarget,
  type ListedWindow,
  leftoversIn,
} from "../src/leftovers.ts";

const liveId = "2-bbbbbbbbbbbb";
const goneId = "1-aaaaaaaaaaaa";
/** Ids so long that the readable chunk id is over the limit and the head node hashes it. */
const liveLongId = `3-${"b".repeat(60)}`;
const goneLongId = `4-${"a".repeat(60)}`;
const known = knownIncarnationsOf([liveId, liveLongId, "legacy"]);

const chunkIdOf = (volumeId: string) =>
  sledChunkIdOf({ volume: "vol", volumeId, partition: 3, session: 7 }, 4, 9);

describe("which objects are leftovers of an incarnation the catalogue does not name", () => {
  test("a chunk of an incarnation no record names is a leftover, in either id form", () => {
    expect(isLeftoverChunk(chunkIdOf(goneId), known)).toBe(true);
    const hashed = chunkIdOf(goneLongId);
    expect(hashed.startsWith(hashedChunkIdPrefixOf(goneLongId))).toBe(true);
    expect(isLeftoverChunk(hashed, known)).toBe(true);
  });

  test("a chunk of a named incarnation is kept, in either id form, legacy ids included", () => {
    expect(isLeftoverChunk(chunkIdOf(liveId), known)).toBe(false);
    expect(chunkIdOf(liveLongId).startsWith(hashedChunkIdPrefixOf(liveLongId))).toBe(true);
    expect(isLeftoverChunk(chunkIdOf(liveLongId), known)).toBe(false);
    expect(isLeftoverChunk(chunkIdOf("legacy"), known)).toBe(false);
  });

  test("chunks that are not a head node's are never leftovers (the chaos filler, a tool's)", () => {
    expect(isLeftoverChunk("chaos-filler-0", known)).toBe(false);
    expect(isLeftoverChunk("chaos-filler-2047", known)).toBe(false);
    expect(isLeftoverChunk("scratch", known)).toBe(false);
    expect(isLeftoverChunk(`${goneId}-p3-e4-s7`, known)).toBe(false);
  });

  test("a prefix that a named incarnation hashes to is kept, whatever it would read as", () => {
    // A readable id whose prefix is the hash of a live id: ambiguity keeps it.
    const collision = `${hashedChunkIdPrefixOf(liveId)}-p1-e1-s1-c1`;
    expect(isLeftoverChunk(collision, known)).toBe(false);
  });

  test("a checkpoint blob of an incarnation no record names is a leftover; other keys never", () => {
    expect(isLeftoverBlob(`${checkpointBlobPrefixOf(goneId, 0)}head-1/5-1-1`, known)).toBe(true);
    expect(isLeftoverBlob(`${checkpointBlobPrefixOf(liveId, 0)}head-1/5-1-1`, known)).toBe(false);
    expect(isLeftoverBlob(`${checkpointBlobPrefixOf(goneId)}odd`, known)).toBe(false);
    expect(isLeftoverBlob("backups/1-aaaaaaaaaaaa/0/head-1/5", known)).toBe(false);
  });

  test("a listing's leftovers carry what their delete needs", () => {
    const chunkId = chunkIdOf(goneId);
    const window = (kind: "chunk" | "blob"): ListedWindow => ({
      sled: "sled-1",
      kind,
      after: undefined,
      through: undefined,
    });
    const found = leftoversIn(
      [
        {
          sled: "sled-1",
          chunks: {
            entries: [
              { chunkId, owner: { volume: "vol", partition: 3 }, bytes: 4096 },
              { chunkId: chunkIdOf(liveId), owner: { volume: "vol", partition: 3 }, bytes: 1 },
            ],
            window: window("chunk"),
          },
          blobs: {
            entries: [{ key: `checkpoints/${goneId}/3/head-1/5-1-1`, bytes: 10 }],
            window: window("blob"),
          },
        },
      ],
      known,
    );
    expect(found).toEqual([
      {
        kind: "chunk",
        sled: "sled-1",
        chunkId,
        owner: { volume: "vol", partition: 3 },
        bytes: 4096,
      },
      { kind: "blob", sled: "sled-1", key: `checkpoints/${goneId}/3/head-1/5-1-1`, bytes: 10 },
    ]);
  });
});

describe("the confirmation of leftovers", () => {
  const chunk = (sled: string, chunkId: string): LeftoverTarget => ({
    kind: "chunk",
    sled,
    chunkId,
    owner: { volume: "vol", partition: 0 },
    bytes: 1,
  });
  const whole = (sled: string): ListedWindow => ({
    sled,
    kind: "chunk",
    after: undefined,
    through: undefined,
  });

  test("a leftover is due only once found again a grace after it was first found", () => {
    const sightings = new LeftoverSightings(1000, 100);
    const a = chunk("sled-1", "a");
    expect(sightings.confirm([whole("sled-1")], [a], 0)).toEqual([]);
    expect(sightings.confirm([whole("sled-1")], [a], 999)).toEqual([]);
    expect(sightings.confirm([whole("sled-1")], [a], 1000)).toEqual([a]);
  });

  test("a listing that covers it and no longer finds it a leftover starts it over", () => {
    const sightings = new LeftoverSightings(1000, 100);
    const a = chunk("sled-1", "a");
    sightings.confirm([whole("sled-1")], [a], 0);
    sightings.confirm([whole("sled-1")], [], 500); // named after all, or gone
    expect(sightings.confirm([whole("sled-1")], [a], 1500)).toEqual([]);
    expect(sightings.confirm([whole("sled-1")], [a], 2500)).toEqual([a]);
  });

  test("a sighting no window covers is kept: another sled's, another part of the ids", () => {
    const sightings = new LeftoverSightings(1000, 100);
    const a = chunk("sled-1", "a");
    const m = chunk("sled-1", "m");
    sightings.confirm([whole("sled-1")], [a, m], 0);
    // Windows after "f", then another sled's: neither covers "a".
    const tail: ListedWindow = { sled: "sled-1", kind: "chunk", after: "f", through: undefined };
    sightings.confirm([tail, whole("sled-2")], [], 500);
    expect(sightings.waiting).toBe(1);
    // A blob window of the same sled does not cover a chunk either.
    sightings.confirm([{ ...whole("sled-1"), kind: "blob" }], [], 600);
    expect(sightings.confirm([whole("sled-1")], [a, m], 1000)).toEqual([a]);
  });

  test("a bounded window covers what it listed, through its last id", () => {
    const sightings = new LeftoverSightings(1000, 100);
    const b = chunk("sled-1", "b");
    const c = chunk("sled-1", "c");
    sightings.confirm([whole("sled-1")], [b, c], 0);
    const upToB: ListedWindow = { sled: "sled-1", kind: "chunk", after: undefined, through: "b" };
    sightings.confirm([upToB], [], 100);
    expect(sightings.waiting).toBe(1); // "c" lies past the window
    expect(sightings.confirm([whole("sled-1")], [b, c], 1000)).toEqual([c]);
  });

  test("at most sightingsMax leftovers wait; the rest are counted on a later pass", () => {
    const sightings = new LeftoverSightings(1000, 2);
    const all = ["a", "b", "c"].map((id) => chunk("sled-1", id));
    sightings.confirm([whole("sled-1")], all, 0);
    expect(sightings.waiting).toBe(2);
    expect(sightings.confirm([whole("sled-1")], all, 1000)).toEqual(all.slice(0, 2));
  });
});
