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
