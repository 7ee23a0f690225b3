// Support for looking at what a sled holds: its whole chunk listing
// (`sled.chunk.list.v1`), page by page.

import { type ResultOf, subjects } from "@ballast/protocol";
import type { Bus } from "@ballast/runtime";

export type SledChunk = ResultOf<"sled.chunk.list.v1">["chunks"][number];

/** Every chunk a sled holds (of `volume` only, when given), in id order. */
export async function listSledChunks(bus: Bus, sled: string, volume?: string) {
  const chunks: SledChunk[] = [];
  let startAfter: string | undefined;
  for (;;) {
    const page = await bus.request(subjects.node.build("sled", sled), {
      type: "sled.chunk.list.v1",
      ...(volume === undefined ? {} : { volume }),
      ...(startAfter === undefined ? {} : { startAfter }),
    });
    chunks.push(...page.chunks);
    if (!page.truncated || page.chunks.length === 0) return chunks;
    startAfter = page.chunks[page.chunks.length - 1]!.chunkId;
  }
}

/** Every blob key a sled holds under `prefix`, in key order, page by page. */
export async function listSledBlobs(bus: Bus, sled: string, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  let startAfter: string | undefined;
  for (;;) {
    const page = await bus.request(subjects.node.build("sled", sled), {
      type: "sled.blob.list.v1",
      prefix,
      ...(startAfter === undefined ? {} : { startAfter }),
    });
    keys.push(...page.blobs.map((blob) => blob.key));
    if (!page.truncated || page.blobs.length === 0) return keys;
    startAfter = keys[keys.length - 1];
  }
}

/**
 * Incarnation `volumeId`'s chunks and checkpoint blobs on every sled of `sleds`, each as
 * "sled object", sorted: what a test compares before and after something that must
 * delete none of them.
 */
export async function sledObjectsOf(
  bus: Bus,
  sleds: readonly string[],
  volumeId: string,
): Promise<string[]> {
  const held: string[] = [];
  for (const sled of sleds) {
    for (const chunk of await listSledChunks(bus, sled)) {
      if (chunk.chunkId.startsWith(volumeId)) held.push(`${sled} ${chunk.chunkId}`);
    }
    for (const key of await listSledBlobs(bus, sled, `checkpoints/${volumeId}/`)) {
      held.push(`${sled} ${key}`);
    }
  }
  return held.sort();
}
