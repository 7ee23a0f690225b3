// Fetching the checkpoint a replacement replica is rebuilt from: the first copy on sleds
// that is whole (the blob's CRC32C, checked by the sleds port) and sound (the snapshot's
// own checksums, and the op its pointer names) wins. The head node and the failover
// simulator both fetch through this, with the real sleds or the fakes.

import { BallastError, ErrorCode } from "@ballast/protocol";
import type { RunnerLog } from "./effect-runner.ts";
import type { SledsPort } from "./ports.ts";
import type { CheckpointPointer } from "./replica/effects.ts";
import { PartitionMetadata } from "./replica/metadata.ts";

export async function fetchCheckpoint(
  sleds: SledsPort,
  pointer: CheckpointPointer,
  log: RunnerLog,
): Promise<{
  bytes: Uint8Array;
  restored: Awaited<ReturnType<typeof PartitionMetadata.restore>>;
  sled: string;
}> {
  const problems: string[] = [];
  // Whether a sled did not answer (a cut, a sled down): then the blob may be sound.
  let unanswered = false;
  for (const sled of pointer.sleds) {
    try {
      const { data } = await sleds.getBlob(pointer.blobKey, pointer.bytes, [sled]);
      const restored = await PartitionMetadata.restore(data);
      if (restored.opNum !== pointer.opNum)
        throw new Error(`holds op ${restored.opNum}, not ${pointer.opNum}`);
      return { bytes: data, restored, sled };
    } catch (error) {
      log.warn(
        { sled, blob: pointer.blobKey, error: (error as Error).message },
        "checkpoint copy unusable; trying another",
      );
      problems.push(`${sled}: ${(error as Error).message}`);
      if (
        error instanceof BallastError &&
        (error.code === ErrorCode.Timeout || error.code === ErrorCode.Unavailable)
      )
        unanswered = true;
    }
  }
  // Every sled answered, and no copy was whole and sound (missing, damaged, another op):
  // named in the answer's details (`checkpoint-unusable`), so that the coordinator sends
  // the next learner another checkpoint where there is one (decisions.ts
  // `learnerCheckpoint`). Not when a sled did not answer: this node may be the one cut
  // from the sleds, and the blob sound for others.
  throw new BallastError(
    ErrorCode.Unavailable,
    `no usable copy of checkpoint ${pointer.blobKey}: ${problems.join("; ")}`,
    unanswered ? {} : { details: { refusal: "checkpoint-unusable", blobKey: pointer.blobKey } },
  );
}
