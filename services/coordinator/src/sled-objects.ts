// Deleting one object on a sled: the purger's and the two sweeps' one way to, so
// that all send the same requests with the owner the sled checks a chunk against; and
// the two sweeps' one way to delete what a pass found, counted and summed up alike.

import { BallastError, ErrorCode, subjects } from "@ballast/protocol";
import type { Bus } from "@ballast/runtime";
import { sweepRequestDeadlineMs } from "./constants.ts";
import type { DeleteSummary } from "./delete-summary.ts";
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

/** What a sweep has freed so far, for its status. */
export interface FreedCounts {
  objectsFreed: number;
  bytesFreed: number;
}

/**
 * Deletes one object a sweep pass found (the orphan sweep's and the leftover sweep's):
 * once freed, it is counted in `freed` and named in the pass's `summary`; one already
 * gone (NotFound) is neither; any other answer is said in the summary's line of failed
 * deletes, and the next pass finds the object again.
 */
export async function deleteForPass(
  bus: Pick<Bus, "request">,
  target: SledObject & { sled: string; bytes: number },
  summary: DeleteSummary,
  freed: FreedCounts,
): Promise<void> {
  const object = {
    sled: target.sled,
    kind: target.kind,
    object: target.kind === "chunk" ? target.chunkId : target.key,
    bytes: target.bytes,
  };
  try {
    await deleteSledObject(bus, target.sled, target, sweepRequestDeadlineMs);
  } catch (error) {
    if (error instanceof BallastError && error.code === ErrorCode.NotFound) return;
    summary.failedOn(object, (error as Error).message);
    return;
  }
  freed.objectsFreed++;
  freed.bytesFreed += target.bytes;
  summary.deleted(object);
}
