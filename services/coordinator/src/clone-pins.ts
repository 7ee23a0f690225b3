// Clone pins: how a clone and a delete of its parent snapshot or parent volume meet on
// one record by compare-and-set, so that no order of two leaders' steps lists a clone
// whose parent is gone, whoever leads (catalogue.ts, "Clone pins", has the records).
//
// A leader serializes its own creates, clones and deletes, but one that stalls past its
// lease (a GC pause, SIGSTOP, a paused VM) resumes with what it checked before the stall
// while another leader has acted since; a leadership check before writing does not help
// (the stall can come right after it). So each check is made on the record that the
// compare-and-set depending on it writes.
//
// The steps. A clone K of snapshot S of volume P, as volume C (volumes.ts `clone`):
//   k1 writes C's record marked creating, by `create` (so C's key is at revision rc);
//   k2 pins S: reads S; refuses if it is gone, marked deleting or another snapshot;
//      adds the pin {C, its id, rc}; compare-and-set on the revision read (a conflict
//      reads again);
//   k3 pins P likewise: refuses unless P is the snapshot's incarnation;
//   k4 writes C's partition records;
//   k5 lists C: compare-and-set of C's record on rc, removing the creating mark.
// A snapshot delete D of S (snapshots.ts `delete`): d1 reads S; d2 refuses if a listed
// volume names S (clones older than pins) or a live pin is on it; d3 marks S deleting,
// compare-and-set on the revision d1 read: the delete's point of no return. A volume
// delete V of P (volumes.ts `delete`): v1 reads P; v2 refuses likewise; v3 records the
// purge (which touches nothing while P is live); v4 deletes P's record, compare-and-set
// on the revision v1 read. Only once v4 applied are P's chunks purged.
//
// When a pin is live (`pinStateOf`). A pin names rc, the revision of C's creating
// record; only k5, a compare-and-set on rc, ever lists C. So once C's key is past rc
// and does not hold C's id (a delete marker: the creating record removed, or C deleted
// after it was listed; or another incarnation's record), C is not listed and never will
// be: the pin is gone. A read of C's key at rc or before (a replica behind the write)
// says nothing, and counts as live. A key that holds no message at all, as the
// stream's leader reads it (`Catalogue.volumeEntry`: a read that finds it empty is
// asked again there), is gone too: the pin proves rc was written, and the only thing
// that removes a key's last message is the leader's cleanup of old delete markers
// (delete-markers.ts), which removes a marker with the messages below it, so C's key
// went past rc to a delete, and a compare-and-set on rc fails on an empty key as on a
// marker. (Read as "creating" instead, a deleted clone whose marker had been cleaned
// up, an hour after its delete, held its parent snapshot and volume for ever.) A pin
// whose create is past its grace (`volumeCreatingGraceMs`) may be undone: its creating
// record is removed by compare-and-set on rc, after which k5 can never apply
// (`livePins`).
//
// Why D and K never both succeed (S marked while C is listed). k2 and d3 are
// compare-and-sets on S, so one applies first.
//   - d3 first: every read of S in k2 from then on finds it marked (or removed, or
//     another snapshot's record), and k2 refuses; a k2 compare-and-set on a revision read
//     before d3 fails, and reads again. K never reaches k5.
//   - k2 first: d3 applies only on the revision it read, so d1 read S after k2, and saw
//     K's pin (pins leave a record only when found gone). d2 then finds C listed or
//     creating (refused), or the pin gone: C never listed, ever — or the pin past its
//     grace, C's creating record removed on rc first, so k5 fails.
//   - d1 before k2 and d3 after it: d3's revision is old, and it fails; the delete
//     answers Unavailable, and a retry is the case above.
// The same holds for V and K on P's record, with k3 and v4 in place of k2 and d3: v4
// deletes P's record only at the revision v1 read, so a pin written after v1 fails it,
// and a pin written before it is judged in v2. A purge record written in v3 by a delete
// that then fails is forgotten (volumes.ts), and the purger never touches an
// incarnation that is live. So neither P nor S goes while a clone may be listed on it.
// Pins are written after k1 on purpose: a pin always names a creating record that was
// written, so "past rc and not C" is proof, never a guess.
//
// Failure model: a leader that dies between k1 and k5 leaves a creating record (no
// volume: readers skip it) and maybe pins, which hold S and P (deletes answer
// Unavailable) until the grace, when the next delete or create of the name removes
// the creating record and the pins count as gone. A clone's delete removes its pins
// from both parents once C's record is deleted (`unpinDeleted`, each a compare-and-set,
// and only pins then judged gone); a leader that dies first, or a removal that keeps
// conflicting, leaves them, gone, until a later pin of the record drops them. Reads are
// taken as they come: a stale one only makes a pin look live.

import { BallastError, ErrorCode } from "@ballast/protocol";
import {
  type Catalogue,
  type ClonePin,
  idOfVolume,
  isCreating,
  isDeleting,
  type VolumeParentRecord,
  type VolumeRecord,
} from "./catalogue.ts";
import { clonePinsMax, volumeCreatingGraceMs } from "./constants.ts";

/** How many times a pin is tried on a record that keeps moving under it. */
const pinAttemptsMax = 5;

/** What a pin says of its clone, from the last entry of the clone's key. */
export type PinState =
  /** The clone is listed: its parent stays. */
  | "listed"
  /** The clone may still be listed (its create runs, or a read lags): its parent stays. */
  | "creating"
  /** The clone is not listed and never will be: the pin holds nothing. */
  | "gone";

/**
 * A pin's state from the clone key's last entry (undefined: the key holds no message,
 * as the stream's leader reads it). See the module header: only an entry past the pin's
 * revision, or none at all, is evidence.
 */
export function pinStateOf(
  pin: ClonePin,
  entry: { revision: number; value?: VolumeRecord } | undefined,
): PinState {
  // No message at all: removed with its delete marker, after rc (module header).
  if (entry === undefined) return "gone";
  if (entry.revision <= pin.revision) return "creating";
  if (entry.value === undefined || idOfVolume(entry.value) !== pin.volumeId) return "gone";
  return isCreating(entry.value) ? "creating" : "listed";
}

/** Whether a pin's create is past its grace, and may be undone. */
export function pinExpired(pin: ClonePin, nowMs: number): boolean {
  return nowMs - pin.sinceMs > volumeCreatingGraceMs;
}

/**
 * The pins among `pins` that still hold their parent (listed or creating clones), with
 * their states. A creating clone past its grace is undone first: its creating record
 * removed by compare-and-set on the pin's revision, after which it never lists.
 */
export async function livePins(
  catalogue: Pick<Catalogue, "volumeEntry" | "abandonCreate">,
  pins: readonly ClonePin[],
  nowMs: number,
): Promise<{ pin: ClonePin; state: "listed" | "creating" }[]> {
  const live: { pin: ClonePin; state: "listed" | "creating" }[] = [];
  for (const pin of pins) {
    let state = pinStateOf(pin, await catalogue.volumeEntry(pin.volume));
    if (state === "creating" && pinExpired(pin, nowMs)) {
      state = (await catalogue.abandonCreate(pin.volume, pin.revision))
        ? "gone"
        : pinStateOf(pin, await catalogue.volumeEntry(pin.volume));
    }
    if (state !== "gone") live.push({ pin, state });
  }
  return live;
}

/**
 * Refuses a delete of `what` while a live pin holds it: InvalidArgument naming the listed
 * clones (as for clones found by their records), Unavailable while clones are only
 * being created (the delete may go once they fail, or their grace runs out).
 */
export function refuseWhilePinned(
  what: string,
  live: readonly { pin: ClonePin; state: "listed" | "creating" }[],
): void {
  const listed = live.filter((entry) => entry.state === "listed").map((entry) => entry.pin.volume);
  if (listed.length > 0) {
    throw new BallastError(
      ErrorCode.InvalidArgument,
      `${what} has clones: ${[...new Set(listed)].sort().join(", ")}; delete them first`,
      { details: { clones: [...new Set(listed)].sort() } },
    );
  }
  const creating = live.map((entry) => entry.pin.volume);
  if (creating.length > 0) {
    throw new BallastError(
      ErrorCode.Unavailable,
      `${what} is being cloned as ${[...new Set(creating)].sort().join(", ")}; retry once the clone is listed (then delete it first) or has failed (within ${volumeCreatingGraceMs} ms if its leader died)`,
      { details: { creating: [...new Set(creating)].sort() } },
    );
  }
}

/**
 * Steps k2 and k3 of a clone (module header): pins the parent snapshot's record, then
 * the parent volume's, each by compare-and-set on the revision whose state it checked.
 * Throws NotFound if the snapshot is gone or being deleted, or the volume gone or
 * another incarnation; Unavailable if a record kept moving; InvalidArgument past
 * `clonePinsMax` live pins. Pins found gone are dropped as the new one is added.
 */
export async function pinParents(
  catalogue: Pick<
    Catalogue,
    | "volume"
    | "snapshotIncludingDeleting"
    | "pinSnapshot"
    | "pinVolume"
    | "volumeEntry"
    | "abandonCreate"
  >,
  parent: VolumeParentRecord,
  creating: { value: VolumeRecord; revision: number },
): Promise<void> {
  const pin: ClonePin = {
    volume: creating.value.name,
    volumeId: idOfVolume(creating.value),
    revision: creating.revision,
    snapshotId: parent.snapshotId,
    sinceMs: Date.now(),
  };
  const gone = () =>
    new BallastError(
      ErrorCode.NotFound,
      `volume ${parent.volume} has no snapshot named ${parent.snapshot} (deleted while it was being cloned)`,
      { details: { volume: parent.volume, name: parent.snapshot } },
    );
  await pinOnce(`snapshot ${parent.snapshot} of ${parent.volume}`, async () => {
    const read = await catalogue.snapshotIncludingDeleting(parent.volume, parent.snapshot);
    if (
      read === undefined ||
      isCreating(read.value) ||
      isDeleting(read.value) ||
      read.value.id !== parent.snapshotId
    ) {
      throw gone();
    }
    const kept = await keptWith(catalogue, read.value.clonePins, pin);
    return (await catalogue.pinSnapshot(read, kept)) !== undefined;
  });
  await pinOnce(`volume ${parent.volume}`, async () => {
    const read = await catalogue.volume(parent.volume);
    if (read === undefined || idOfVolume(read.value) !== parent.volumeId) throw gone();
    const kept = await keptWith(catalogue, read.value.clonePins, pin);
    return (await catalogue.pinVolume(read, kept)) !== undefined;
  });
}

/**
 * After clone `clone` was deleted: removes its pins from its parent snapshot's record and
 * its parent volume's, each by compare-and-set on the revision read, and only pins judged
 * gone by a read of the clone's key made after that record's. Best effort: whether both
 * records are free of them. A pin left behind is gone all the same (module header).
 */
export async function unpinDeleted(
  catalogue: Pick<
    Catalogue,
    "volume" | "snapshotIncludingDeleting" | "pinSnapshot" | "pinVolume" | "volumeEntry"
  >,
  clone: { name: string; volumeId: string; parent: VolumeParentRecord },
): Promise<boolean> {
  const { parent } = clone;
  const unpinned = async (pins: readonly ClonePin[] | undefined) => {
    const own = (pins ?? []).filter(
      (pin) => pin.volume === clone.name && pin.volumeId === clone.volumeId,
    );
    if (own.length === 0) return undefined;
    const entry = await catalogue.volumeEntry(clone.name);
    const gone = own.filter((pin) => pinStateOf(pin, entry) === "gone");
    if (gone.length === 0) return undefined;
    return (pins ?? []).filter((pin) => !gone.includes(pin));
  };
  const snapshotFree = await retried(async () => {
    const read = await catalogue.snapshotIncludingDeleting(parent.volume, parent.snapshot);
    // One being deleted goes with its pins; a write would only move it under the delete.
    if (read === undefined || read.value.id !== parent.snapshotId || isDeleting(read.value)) {
      return true;
    }
    const kept = await unpinned(read.value.clonePins);
    return kept === undefined || (await catalogue.pinSnapshot(read, kept)) !== undefined;
  });
  const volumeFree = await retried(async () => {
    const read = await catalogue.volume(parent.volume);
    if (read === undefined || idOfVolume(read.value) !== parent.volumeId) return true;
    const kept = await unpinned(read.value.clonePins);
    return kept === undefined || (await catalogue.pinVolume(read, kept)) !== undefined;
  });
  return snapshotFree && volumeFree;
}

/** Tries `attempt` (false: the record moved) up to `pinAttemptsMax` times: whether it did. */
async function retried(attempt: () => Promise<boolean>): Promise<boolean> {
  for (let count = 0; count < pinAttemptsMax; count++) if (await attempt()) return true;
  return false;
}

/** Tries `attempt` (false: the record moved) until it pins, or gives up Unavailable. */
async function pinOnce(what: string, attempt: () => Promise<boolean>): Promise<void> {
  for (let count = 0; count < pinAttemptsMax; count++) if (await attempt()) return;
  throw new BallastError(
    ErrorCode.Unavailable,
    `cannot clone: ${what}'s record kept changing while the clone was pinned on it; retry`,
  );
}

/** A record's live pins with `pin` added; refuses past `clonePinsMax`. */
async function keptWith(
  catalogue: Pick<Catalogue, "volumeEntry" | "abandonCreate">,
  pins: readonly ClonePin[] | undefined,
  pin: ClonePin,
): Promise<ClonePin[]> {
  // Only the gone ones are dropped, and none is undone here: a clone is no reason to
  // cut short another clone's create.
  const kept: ClonePin[] = [];
  for (const existing of pins ?? []) {
    if (pinStateOf(existing, await catalogue.volumeEntry(existing.volume)) !== "gone") {
      kept.push(existing);
    }
  }
  if (kept.length >= clonePinsMax) {
    throw new BallastError(
      ErrorCode.InvalidArgument,
      `cannot clone: ${pin.volume}'s parent already has ${kept.length} clones, the most it may have`,
    );
  }
  return [...kept, pin];
}
