// Removing old delete markers from the control bucket. A JetStream KV delete writes a
// marker (a message with `KV-Operation: DEL`) that stays as the key's last message for
// good: nats-server 2.9 has no marker TTL and the bucket keeps 8 messages per key, not
// an age. Volume, partition, checkpoint, snapshot and purge keys are deleted all the
// time, and every listing (kv-keys.ts: the purger's `purge.>` every 2 s, the
// reconciler's `partition.>`, the sweep's) is delivered one message per key ever
// written, markers included; a volume created and deleted every minute leaves millions
// of markers in a year.
//
// Model: the leader, every `deleteMarkerCleanupIntervalMs`, lists the last message of
// every key of the bucket (the listing of kv-keys.ts, keeping where each deleted key's
// marker is stored and when) and, for each marker older than `deleteMarkerAgeMs`,
// purges the key's messages up to and including that marker (a stream purge filtered
// to the key's subject, `seq` one past the marker). A write that lands after the
// listing is above that sequence and stays: a key created again meanwhile is never
// touched, nor a newer marker. Two cleaners (an ex-leader still running one) purge the
// same messages, and the second finds nothing. The KV's own `purgeDeletes` is not
// used: it reads the bucket's whole history through a consumer that stays on the
// server (kv-keys.ts), and purges a key with `keep: 0`, which would remove a value
// written between its read and its purge.
//
// Why removing an old marker breaks nothing that reads a deleted key's revision:
// - `get` of a deleted key returns its marker or, once removed, nothing; every reader
//   (catalogue.ts `read`, leadership.ts, `putSledRecord`) takes both as "absent".
// - `update` and `delete` with a revision name a value's revision, read earlier; after
//   a delete the key's last sequence is the marker's, and after the marker's removal it
//   is none, so either way they are refused as before.
// - `create` over a deleted key (create-if-absent: nextIncarnation, createVolume,
//   recordCheckpoint, recordPurge, recordSnapshot, the sweep's mark) is the one write
//   that names a marker's revision: nats.js's create is refused by the marker, reads it,
//   and writes again expecting its revision. A removal between that read and that write
//   has it refused with the key free; `createOverRemovedMarker` (the control store's
//   create) then tries once more, expecting nothing. A marker is removed only once, and
//   a new one is removed only `deleteMarkerAgeMs` later, so once more is enough.
// - A clone pin (clone-pins.ts) names the revision of its clone's creating record, and
//   takes the clone's key past that revision without the clone for proof that the clone
//   is gone: a key with no message at all is such proof too (the pin proves the record
//   was written; only this cleanup empties a key, and only below a marker), once the
//   stream's leader confirms it holds none. Markers of pinned names need not be kept.
// - Listings read each key's last message; a deleted key is left out whether its last
//   message is a marker or it has none (a marker removed during a listing is not read,
//   and the key is not listed either way).
// - The catalogue and pointer watches (catalogue-changes.ts) deliver only what is
//   written after they start, and deliver it within milliseconds; a purge is no message
//   and delivers nothing. Only a watch that fell `deleteMarkerAgeMs` behind could lose a
//   change to a removal, and the catalogue watch's re-read runs every
//   `catalogueRereadMsMax` regardless, while a pointer watch that missed a delete only
//   keeps a pointer's blob a pass longer.
// The age is the coordinator's wall clock less the server's store time, so a clock
// difference between the two shifts it: an hour leaves room for any sane difference.
//
// Failure model: a listing or a purge that fails ends the run (logged); the markers
// left are removed by the next run. Runs only while this coordinator leads a ready
// tenure, one at a time.

import type { Logger } from "@ballast/runtime";
import type { Bucket, KV } from "@nats-io/kv";
import { type ControlStore, isConflict } from "./catalogue.ts";
import { now } from "./clock.ts";
import {
  deleteMarkerAgeMs,
  deleteMarkerCleanupIntervalMs,
  deleteMarkersRemovedPerRunMax,
} from "./constants.ts";
import { type DeleteMarker, listDeleteMarkers } from "./kv-keys.ts";
import type { Tenures } from "./tenure.ts";

/** Whether a cleanup is due: none run yet by this coordinator, or the interval passed. */
export function deleteMarkerCleanupDue(
  lastRunAtMs: number | undefined,
  nowMs: number,
  intervalMs: number,
): boolean {
  return lastRunAtMs === undefined || nowMs - lastRunAtMs >= intervalMs;
}

/** The markers at least `ageMs` old at `nowMs` (wall clock), oldest first, at most `max`. */
export function markersToRemove(
  markers: readonly DeleteMarker[],
  nowMs: number,
  ageMs: number,
  max: number,
): DeleteMarker[] {
  return markers
    .filter((marker) => nowMs - marker.timestampMs >= ageMs)
    .sort((a, b) => a.sequence - b.sequence)
    .slice(0, max);
}

/**
 * Removes the delete markers of `bucket` older than `ageMs`, each with the key's older
 * messages and never anything written after it. Returns how many markers went.
 */
export async function removeDeleteMarkers(
  bucket: Bucket,
  ageMs: number,
  logger: Pick<Logger, "warn">,
  nowMs = Date.now(),
): Promise<number> {
  const markers = await listDeleteMarkers(bucket, ">", logger);
  const chosen = markersToRemove(markers, nowMs, ageMs, deleteMarkersRemovedPerRunMax);
  for (const marker of chosen) {
    await bucket.jsm.streams.purge(bucket.stream, {
      filter: bucket.fullKeyName(bucket.encodeKey(marker.key)),
      // Up to but not including this sequence: the marker and what came before it.
      seq: marker.sequence + 1,
    });
  }
  return chosen.length;
}

/**
 * The control store's create: the KV's, tried once more when it was refused although
 * the key holds no value (its marker removed between the KV's read and its write).
 */
export async function createOverRemovedMarker(
  kv: Pick<KV, "create" | "get">,
  key: string,
  value: Uint8Array,
): Promise<number> {
  try {
    return await kv.create(key, value);
  } catch (error) {
    if (!isConflict(error)) throw error;
    const current = await kv.get(key);
    if (current !== null && current.operation === "PUT") throw error;
    return kv.create(key, value);
  }
}

export interface DeleteMarkerCleanupOptions {
  store: Pick<ControlStore, "removeDeleteMarkers">;
  tenures: Pick<Tenures, "current">;
  logger: Pick<Logger, "info" | "warn">;
  intervalMs?: number;
  ageMs?: number;
}

/** Runs the cleanup on the leader, every interval (see the module header). */
export class DeleteMarkerCleanup {
  private lastRunAtMs: number | undefined;
  private running = false;

  constructor(private readonly options: DeleteMarkerCleanupOptions) {}

  /** A run, if this coordinator leads a ready tenure and one is due. Called often. */
  async cleanIfDue(): Promise<void> {
    const { store, tenures, logger } = this.options;
    if (store.removeDeleteMarkers === undefined || this.running) return;
    if (tenures.current()?.ready !== true) return;
    const intervalMs = this.options.intervalMs ?? deleteMarkerCleanupIntervalMs;
    if (!deleteMarkerCleanupDue(this.lastRunAtMs, now(), intervalMs)) return;
    this.lastRunAtMs = now();
    this.running = true;
    const ageMs = this.options.ageMs ?? deleteMarkerAgeMs;
    try {
      const removed = await store.removeDeleteMarkers(ageMs);
      if (removed > 0) logger.info({ removed, ageMs }, "removed old delete markers");
    } catch (error) {
      logger.warn(
        { error: (error as Error).message },
        "could not remove old delete markers; the next run tries again",
      );
    } finally {
      this.running = false;
    }
  }
}
