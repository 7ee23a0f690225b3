// The sled's generation high-water mark on real files: a generation handed out before a
// restart is never handed out again, even when the object that used it is gone from the
// slots (a write that did not survive, or a delete) while its extent header is still on
// disk; the mark costs one write per batch of generations; a missing or damaged mark
// makes generations jump far past the largest found; a mark that cannot be written
// fails the write, not the sled.

import { open, writeFile } from "node:fs/promises";
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
});
