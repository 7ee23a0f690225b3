// A control record: the data of a `control` note, which changes the partition's set of
// trees rather than its bytes. It goes through the op stream like a write, so every
// replica applies it at the same op and has the same trees afterwards.
//
// - `snapshot.take` freezes a copy of the current extent tree under a snapshot id (a
//   copy of metadata only: the frozen tree refers to the same journal notes and chunks).
// - `snapshot.drop` removes a frozen tree; the chunks only it referred to are then
//   unreferenced and go through the ordinary drop path of flush records.
// - `snapshot.rollback` replaces the current tree with a copy of a frozen one (the
//   snapshot stays); the chunks only the replaced tree referred to become unreferenced
//   and are dropped the same way. Applying it twice with no write between leaves the
//   same tree; a replica that has no such snapshot (dropped by an earlier note: a
//   delete that raced the rollback, or in a re-applied tail) changes nothing, and the
//   primary answers the rollback NotFound, never as done (metadata.ts `apply`).
//
// Applying either is idempotent: a take of an id the metadata already has, or a drop of
// one it lacks, changes nothing. A replica rebuilt from a checkpoint re-applies notes the
// checkpoint already reflects, and a coordinator retries a take after a failover: a
// second take must not refreeze the tree at a later op. Ids are never reused (the
// coordinator draws them), so "already there" always means "this same snapshot".

import { Packr, Unpackr } from "msgpackr";
import { z } from "zod";

/** A snapshot id as replicas know it: the coordinator's, a name-like token. */
export const snapshotIdLengthMax = 64;
export const SnapshotId = z
  .string()
  .min(1)
  .max(snapshotIdLengthMax)
  .regex(/^[a-z0-9][a-z0-9-]*$/);

export const ControlRecord = z.discriminatedUnion("kind", [
  z.object({ kind: z.literal("snapshot.take"), id: SnapshotId }),
  z.object({ kind: z.literal("snapshot.drop"), id: SnapshotId }),
  z.object({ kind: z.literal("snapshot.rollback"), id: SnapshotId }),
]);
export type ControlRecord = z.infer<typeof ControlRecord>;

const packr = new Packr({ useRecords: false, moreTypes: false });
const unpackr = new Unpackr({ useRecords: false, moreTypes: false, mapsAsObjects: true });

export function encodeControlRecord(record: ControlRecord): Uint8Array {
  return packr.pack(record);
}

/** Decodes a committed control record; a bad one is a bug on the primary, not bad input. */
export function decodeControlRecord(data: Uint8Array): ControlRecord {
  return ControlRecord.parse(unpackr.unpack(data as Buffer));
}
