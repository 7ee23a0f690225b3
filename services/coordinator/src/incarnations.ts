// Which volume incarnations the catalogue names, and which of some ids asked about are
// gone. Pure: the records come in as arguments. Two parts decide with it: the leftover
// sweep (leftovers.ts: sled objects of incarnations no record names) and the answer to
// a head node's `headnode.leftovers.v1` (leftover-directories.ts: replica directories
// of such incarnations on its disk).
//
// The rule (leftovers.ts, "Model", has the whole argument): an incarnation that may
// still be used is named by a volume record (or is the parent a clone reads through),
// by a partition record (written before any head node is configured with it, so before
// any file or object of it exists, and left by a create or delete that died halfway),
// or by a purge record (until the purger forgets it). Ids are never reused. So an id
// that some file or object was made under before the records were read, and that no
// record names, was deleted for good.

import { isIssuedVolumeId } from "@ballast/protocol";
import { idOfVolume, type VolumeRecord } from "./catalogue.ts";
import { type PartitionRecord, volumeIdOf } from "./decisions.ts";
import type { PurgeRecord } from "./purge.ts";

/** What names incarnations: the catalogue's volume, partition and purge records. */
export interface NamingRecords {
  volumes: readonly VolumeRecord[];
  partitions: readonly PartitionRecord[];
  purges: readonly Pick<PurgeRecord, "volumeId">[];
}

/** Every incarnation id the records name. */
export function namedIncarnationsOf(records: NamingRecords): Set<string> {
  const named = new Set<string>();
  for (const volume of records.volumes) {
    named.add(idOfVolume(volume));
    if (volume.parent !== undefined) named.add(volume.parent.volumeId);
  }
  for (const partition of records.partitions) named.add(volumeIdOf(partition));
  for (const purge of records.purges) named.add(purge.volumeId);
  return named;
}

/**
 * Of the ids asked, those `named` leaves out and that have the shape the coordinator
 * issues (`isIssuedVolumeId`): a static assignment's id (the volume's name) has no
 * record by design, so its absence says nothing. Each at most once, in the order asked.
 */
export function goneIncarnationsOf(asked: Iterable<string>, named: ReadonlySet<string>): string[] {
  const gone = new Set<string>();
  for (const volumeId of asked) {
    if (isIssuedVolumeId(volumeId) && !named.has(volumeId)) gone.add(volumeId);
  }
  return [...gone];
}
