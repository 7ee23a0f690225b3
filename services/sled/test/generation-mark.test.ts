// The sled's generation high-water mark on real files: a generation handed out before a
// restart is never handed out again, even when the object that used it is gone from the
// slots (a write that did not survive, or a delete) while its extent header is still on
// disk; the mark costs one write per batch of generations; a missing or damaged mark
// makes generations jump far past the largest found; a mark that cannot be written
// fails the write, not the sled; once made, the file is overwritten in place (one copy of
// two), so a raise needs no new file and a torn copy leaves the other.

import { mkdir, open, readdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import {
  blockBytes,
  deviceFileName,
  generationJumpWithoutMark,
  generationMarkFileName,
} from "../src/constants.ts";
import { decodeExtentHeader } from "../src/format.ts";
import {
  decodeGenerationMark,
  encodeGenerationMark,
  fileGenerationMark,
  type GenerationMarkStore,
} from "../src/generation-mark.ts";
import type { Location } from "../src/store.ts";
import { codeOf, openStoreOnFiles, patterned, temporaryDirectory } from "./support.ts";

const owner = { volume: "vol", partition: 0 };

let directory: Awaited<ReturnType<typeof temporaryDirectory>>;
beforeEach(async () => {
  directory = await temporaryDirectory();
});
afterEach(async () => {
  await directory.remove();
});

/** The generation in the extent header a write's location points at, read from the file. */
async function generationAt(location: Location): Promise<number> {
  const file = await open(join(directory.path, deviceFileName(location.device)), "r");
  try {
    const bytes = Buffer.alloc(blockBytes);
    await file.read(bytes, 0, blockBytes, location.offset);
    const decoding = decodeExtentHeader(bytes);
    if (!decoding.ok) throw new Error(decoding.detail);
    return decoding.header.generation;
  } finally {
    await file.close();
  }
}

/** A mark in the data directory's file that counts its writes. */
function countedFileMark(): GenerationMarkStore & { writes: number[] } {
  const file = fileGenerationMark(directory.path);
  const writes: number[] = [];
  return {
    writes,
    read: () => file.read(),
    write: async (mark) => {
      await file.write(mark);
      writes.push(mark);
    },
  };
}

describe("the generation high-water mark", () => {
  test("a generation used before a restart is not used again, though its slot is gone", async () => {
    const options = { dataDir: directory.path, generationMark: fileGenerationMark(directory.path) };
    const first = await openStoreOnFiles(options);
    const kept = await first.store.writeChunk(owner, "kept", patterned(8192, 1));
    const lost = await first.store.writeChunk(owner, "lost", patterned(8192, 2));
    const lostGeneration = await generationAt(lost.location);
    expect(lostGeneration).toBeGreaterThan(await generationAt(kept.location));
    // Its slot goes (as a write whose slot never became durable); its header stays.
    await first.store.deleteChunk(owner, "lost");
    await first.store.close();

    const second = await openStoreOnFiles(options);
    const next = await second.store.writeChunk(owner, "next", patterned(8192, 3));
    expect(await generationAt(next.location)).toBeGreaterThan(lostGeneration);
    await second.store.close();
  });

  test("the mark is written once per batch of generations, ahead of their use", async () => {
    const mark = countedFileMark();
    const { store } = await openStoreOnFiles({
      dataDir: directory.path,
      generationMark: mark,
      generationMarkBatch: 4,
    });
    // Raised at open: nothing found, no mark yet, so far past zero.
    expect(mark.writes).toEqual([1 + generationJumpWithoutMark + 4]);
    const generations: number[] = [];
    // Writers past the batch's end wait for a raise before they take a generation.
    const written = await Promise.all(
      Array.from({ length: 6 }, (_, index) =>
        store.writeChunk(owner, `c${index}`, patterned(4096, index)),
      ),
    );
    for (const { location } of written) generations.push(await generationAt(location));
    expect(mark.writes).toHaveLength(2);
    expect(new Set(generations).size).toBe(6);
    for (const generation of generations) expect(generation).toBeLessThan(mark.writes.at(-1)!);
    await store.close();
  });

  test("a missing or damaged mark makes generations jump far past the largest found", async () => {
    const plain = await openStoreOnFiles({ dataDir: directory.path });
    const old = await plain.store.writeChunk(owner, "old", patterned(4096, 1));
    await plain.store.close();
    const largest = await generationAt(old.location);
    // A sled older than the mark: none in the directory.
    const upgraded = await openStoreOnFiles({
      dataDir: directory.path,
      generationMark: fileGenerationMark(directory.path),
    });
    const after = await upgraded.store.writeChunk(owner, "after", patterned(4096, 2));
    expect(await generationAt(after.location)).toBe(largest + 1 + generationJumpWithoutMark);
    await upgraded.store.close();
    // A damaged mark file reads as none.
    const damaged = encodeGenerationMark(5);
    damaged[0]! ^= 0xff;
    await writeFile(join(directory.path, generationMarkFileName), damaged);
    expect(decodeGenerationMark(damaged)).toEqual({ missing: "the mark file fails its CRC32C" });
    const reopened = await openStoreOnFiles({
      dataDir: directory.path,
      generationMark: fileGenerationMark(directory.path),
    });
    const again = await reopened.store.writeChunk(owner, "again", patterned(4096, 3));
    expect(await generationAt(again.location)).toBeGreaterThan(
      (await generationAt(after.location)) + generationJumpWithoutMark,
    );
    await reopened.store.close();
  });

  test("a mark that cannot be written fails the write Unavailable and keeps its space", async () => {
    let failing = true;
    const file = fileGenerationMark(directory.path);
    const mark: GenerationMarkStore = {
      read: () => file.read(),
      write: async (value) => {
        if (failing) throw new Error("EIO");
        await file.write(value);
      },
    };
    const { store } = await openStoreOnFiles({ dataDir: directory.path, generationMark: mark });
    const usedBefore = store.stat().usedBytes;
    expect(await codeOf(() => store.writeChunk(owner, "c0", patterned(4096, 1)))).toBe(
      "Unavailable",
    );
    expect(store.stat().usedBytes).toBe(usedBefore);
    failing = false;
    const written = await store.writeChunk(owner, "c0", patterned(4096, 1));
    expect(written.created).toBe(true);
    await store.close();
  });

  test("after the file is made, raises overwrite it in place: same file, no temporary", async () => {
    const mark = fileGenerationMark(directory.path);
    const path = join(directory.path, generationMarkFileName);
    await mark.write(10);
    const made = await stat(path);
    for (const value of [20, 30, 40]) {
      await mark.write(value);
      expect(await mark.read()).toEqual({ mark: value });
    }
    expect((await stat(path)).ino).toBe(made.ino);
    expect(await readdir(directory.path)).toEqual([generationMarkFileName]);
  });

  test("a raise needs no new file: it succeeds where no temporary file can be made", async () => {
    const mark = countedFileMark();
    const { store } = await openStoreOnFiles({
      dataDir: directory.path,
      generationMark: mark,
      generationMarkBatch: 2,
    });
    // A directory where the temporary file would go: creating one fails, as it does on a
    // full file system (a stand-in; the host's real disk is never filled by a test).
    await mkdir(join(directory.path, `${generationMarkFileName}.tmp`));
    for (let index = 0; index < 5; index++) {
      await store.writeChunk(owner, `c${index}`, patterned(4096, index));
    }
    expect(mark.writes.length).toBeGreaterThanOrEqual(3);
    expect(await mark.read()).toEqual({ mark: mark.writes.at(-1) });
    await store.close();
  });

  test("a torn copy leaves the other: a read takes the higher valid one, a raise the torn", async () => {
    const mark = fileGenerationMark(directory.path);
    const path = join(directory.path, generationMarkFileName);
    await mark.write(10);
    await mark.write(20);
    const bytes = await readFile(path);
    // Tear whichever copy holds 20 (the other holds 10).
    const copyA = decodeGenerationMark(bytes.subarray(0, 12));
    const copyOf20 = "mark" in copyA && copyA.mark === 20 ? 0 : 4096;
    bytes[copyOf20 + 2]! ^= 0xff;
    await writeFile(path, bytes);
    expect(await mark.read()).toEqual({ mark: 10 });
    await mark.write(30);
    expect(await mark.read()).toEqual({ mark: 30 });
    const after = await readFile(path);
    expect(decodeGenerationMark(after.subarray(copyOf20, copyOf20 + 12))).toEqual({ mark: 30 });
    expect(decodeGenerationMark(after.subarray(4096 - copyOf20, 4096 - copyOf20 + 12))).toEqual({
      mark: 10,
    });
    // Both copies torn: no mark.
    after[2]! ^= 0xff;
    after[4096 + 2]! ^= 0xff;
    await writeFile(path, after);
    expect(await mark.read()).toMatchObject({ missing: expect.stringMatching(/neither copy/) });
  });

  test("a mark file of the first layout is read, and made two-copy at the first raise", async () => {
    const path = join(directory.path, generationMarkFileName);
    await writeFile(path, encodeGenerationMark(7));
    const mark = fileGenerationMark(directory.path);
    expect(await mark.read()).toEqual({ mark: 7 });
    await mark.write(8);
    expect((await stat(path)).size).toBe(8192);
    expect(await mark.read()).toEqual({ mark: 8 });
  });
});
