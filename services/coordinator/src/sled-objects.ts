// Deleting one object on a sled: the purger's and the two sweeps' one way to, so
// that all send the same requests with the owner the sled checks a chunk against.

import { subjects } from "@ballast/protocol";
import type { Bus } from "@ballast/runtime";
import type { ChunkEntry } from "./purge.ts";

/** One sled object to delete: a chunk (with the owner the sled checks) or a blob. */
export type SledObject =
  | { kind: "chunk"; chunkId: string; owner: ChunkEntry["owner"] }
  | { kind: "blob"; key: string };

/**
 * Deletes one object on `sled`.
 * Throws what the sled answers, NotFound included: the callers differ on it.
 */
export async function deleteSledObject(
  bus: Pick<Bus, "request">,
  sled: string,
  target: SledObject,
  deadlineMs: number,
): Promise<void> {
  const subject = subjects.node.build("sled", sled);
  const options = { deadlineMs };
  switch (target.kind) {
    case "chunk":
      await bus.request(
        subject,
        { type: "sled.chunk.delete.v1", owner: target.owner, chunkId: target.chunkId },
        options,
      );
      return;
    case "blob":
      await bus.request(subject, { type: "sled.blob.delete.v1", key: target.key }, options);
      return;
    default: {
      const unreachable: never = target;
      throw new Error(`no delete for ${JSON.stringify(unreachable)}`);
    }
  }
}
