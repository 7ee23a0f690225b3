// Clones as the catalogue sees them: layering, as Ceph RBD and qcow2 backing files do.
//
// A clone is a volume of its own (its own incarnation, partitions, replicas, chunks)
// whose record names its parent `{volume, volumeId, snapshot, snapshotId, overlap}`. It
// starts empty; a read of a byte the clone has never mapped (no write, trim or
// write-zeroes ever covered it) below `overlap` returns the parent snapshot's byte, and
// zeros past it (the client library merges the two; see packages/client volume.ts). The
// snapshot is immutable, so what a clone reads from it never changes, and the clone
// shares no chunk with its parent: the parent's compaction, re-replication, sweep and
// delete never touch anything the clone owns, and deleting the clone frees only its own.
//
// What that needs of the catalogue, decided here as pure functions over records:
// - the parent snapshot (and so its volume) stays while a clone names it: deleting
//   either is refused, naming the clones;
// - `overlap` starts at the snapshot's size and only ever goes down: a shrink lowers it
//   to the new size (the tail it cut was trimmed, but a byte past the new end must not
//   fall through again after a grow either), and a grow leaves it.
//
// Failure model: the clone's record is written by the same create as any volume's, so a
// leader that dies mid-clone leaves what a dying create leaves. The refusals here read
// the volume records, which finds clones made before pins; what keeps a clone from
// appearing between a delete's check and its write, even when a leader stalls past its
// lease and resumes beside the next one, is the clone's pins on its parents' records
// (clone-pins.ts).

import { BallastError, ErrorCode } from "@ballast/protocol";
import type { VolumeParentRecord, VolumeRecord } from "./catalogue.ts";

/** How many parents deep a clone of a clone may be: each level is one more read on a miss. */
export const cloneDepthMax = 8;

/** The volumes cloned from `parentId`'s snapshot `snapshotId` (any snapshot when absent), by name. */
export function clonesOf(
  volumes: readonly VolumeRecord[],
  parentId: string,
  snapshotId?: string,
): string[] {
  return volumes
    .filter(
      (volume) =>
        volume.parent !== undefined &&
        volume.parent.volumeId === parentId &&
        (snapshotId === undefined || volume.parent.snapshotId === snapshotId),
    )
    .map((volume) => volume.name)
    .sort();
}

/** Refuses deleting snapshot `snapshot` of `volume` while `clones` name it. */
export function refuseSnapshotDelete(volume: string, snapshot: string, clones: string[]): void {
  if (clones.length === 0) return;
  throw new BallastError(
    ErrorCode.InvalidArgument,
    `snapshot ${snapshot} of ${volume} has clones: ${clones.join(", ")}; delete them first`,
    { details: { volume, snapshot, clones } },
  );
}

/** Refuses deleting volume `volume` while clones of any of its snapshots exist. */
export function refuseVolumeDelete(volume: string, clones: string[]): void {
  if (clones.length === 0) return;
  throw new BallastError(
    ErrorCode.InvalidArgument,
    `volume ${volume} has clones of its snapshots: ${clones.join(", ")}; delete them first`,
    { details: { volume, clones } },
  );
}

/** The parent a clone keeps after a resize to `sizeBytes`: shrinking lowers the overlap. */
export function parentAfterResize(
  parent: VolumeParentRecord | undefined,
  sizeBytes: number,
): VolumeParentRecord | undefined {
  if (parent === undefined || sizeBytes >= parent.overlap) return parent;
  return { ...parent, overlap: sizeBytes };
}

/**
 * The size of a snapshot: recorded since clones; older records cover their partitions,
 * and never more than the volume now holds.
 */
export function snapshotSizeOf(
  snapshot: { sizeBytes?: number; partitions: readonly unknown[] },
  volume: Pick<VolumeRecord, "sizeBytes" | "partitionBytes">,
): number {
  if (snapshot.sizeBytes !== undefined) return snapshot.sizeBytes;
  return Math.min(volume.sizeBytes, snapshot.partitions.length * volume.partitionBytes);
}

/** How many parents `volume` has above it (0 for a volume that is no clone). */
export function depthOf(volume: VolumeRecord, byName: ReadonlyMap<string, VolumeRecord>): number {
  let depth = 0;
  let at: VolumeRecord | undefined = volume;
  while (at?.parent !== undefined && depth <= cloneDepthMax) {
    depth += 1;
    at = byName.get(at.parent.volume);
  }
  return depth;
}
