// Which replica directories of deleted incarnations a head node removes on its own.
// Pure: what is on disk, what is hosted and the coordinator's answer come in as
// arguments; the shell (headnode.ts, `checkLeftovers`) lists `partitions/`, asks with
// `headnode.leftovers.v1` and removes.
//
// Why: a deleted incarnation's directories (`partitions/<volumeId>/<partition>`:
// journal, local checkpoint) go on `headnode.drop.v1`, which the coordinator owes a
// node only while the incarnation's purge record lasts (a day at most). A node away
// longer (down, cut off) kept them for good: it never reopens them, so it never
// reports them, and no configure names them again.
//
// Model and safety: a directory is asked about only when it has the shape of an id the
// coordinator issues (`isIssuedVolumeId`: a static assignment's id is the volume's name,
// which no record names by design) and no hosted replica belongs to it; it is removed
// only when the leading coordinator answered that no record names it, which, as the
// directory was listed before the question was sent, means it was deleted for good
// (coordinator incarnations.ts). Ids are never reused, so a configure of it that comes
// later is stale, and the shell remembers it as dropped to refuse one. A replica of it
// hosted by the time the answer comes is kept (it is dropped as any deleted one is).
// Every doubt keeps the directory: no coordinator, no leader, an older coordinator
// that refuses the question, an id it did not ask about in the answer.

import { isIssuedVolumeId } from "@ballast/protocol";

/**
 * The directories under `partitions/` worth asking about: ids of the issued shape that
 * no hosted replica belongs to. Sorted, each once.
 */
export function leftoverCandidatesOf(
  onDisk: Iterable<string>,
  hostedVolumeIds: ReadonlySet<string>,
): string[] {
  const candidates = new Set<string>();
  for (const name of onDisk) {
    if (isIssuedVolumeId(name) && !hostedVolumeIds.has(name)) candidates.add(name);
  }
  return [...candidates].sort();
}

/** `ids` in requests of at most `perRequestMax` each. */
export function requestsOf(ids: readonly string[], perRequestMax: number): string[][] {
  if (!Number.isSafeInteger(perRequestMax) || perRequestMax < 1) {
    throw new Error(`perRequestMax must be a positive integer, got ${perRequestMax}`);
  }
  const requests: string[][] = [];
  for (let start = 0; start < ids.length; start += perRequestMax) {
    requests.push(ids.slice(start, start + perRequestMax));
  }
  return requests;
}

/**
 * Of the ids the coordinator says are gone, those to remove now: asked in this request
 * (an answer naming another id is ignored), of the issued shape, and not hosted now.
 */
export function removableOf(
  asked: readonly string[],
  gone: readonly string[],
  hostedVolumeIds: ReadonlySet<string>,
): string[] {
  const askedIds = new Set(asked);
  const removable = new Set<string>();
  for (const volumeId of gone) {
    if (!askedIds.has(volumeId) || !isIssuedVolumeId(volumeId)) continue;
    if (hostedVolumeIds.has(volumeId)) continue;
    removable.add(volumeId);
  }
  return [...removable];
}
