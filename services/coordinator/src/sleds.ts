// Sled membership for re-replication: which sleds are out of service. A pure state
// machine with the time as an argument (the leader's monotonic clock, `nowMs`) and the
// wall-clock time only for what is recorded and shown (`wallMs`); the shell
// (sled-records.ts) feeds it heartbeats, ticks it, and persists what changes.
//
// A sled silent for `sledOutAfterMs` is declared out: its copies count as lost, and
// primaries make new ones elsewhere (head nodes learn the out set from the answer to
// their reports). A sled heard again is in again: its copies are extra until the
// coordinator's sweep frees them. This is slower than heartbeat death on purpose: a sled
// restart (seconds) must not trigger a copy of everything it holds.
//
// A sled heard from another data directory than its record names (a disk replaced, a
// directory wiped: heartbeats carry the directory's id) holds none of the copies the
// head nodes' tables list there, however briefly it was away. It stays in service
// (placement may use it, and the head nodes restore the lost copies on it), but its
// record is marked `refillingSince`: status calls it unverified and the volumes with
// copies there degraded, and the head nodes are asked to audit it now rather than at
// their daily scrub, until the shell sees every primary say it has (`verified`). It is
// not taken out of service: a sled out until its copies were whole elsewhere deadlocked
// where no other sled could take them (two sleds, two copies), since the head nodes'
// audit restores them on that very sled.
//
// A sled that never comes back (retired, or replaced under another id: pods with
// generated names make a new id each time) is forgotten: its record deleted from the
// book and the catalogue, so that it leaves the out set every report answer carries and
// status. The decision is sled-forgetting.ts's (out for `sledForgetAfterMs`, no longer
// a member, named by no recorded checkpoint); the book only says since when each sled
// has been out (`outSince`) and drops one that is still out (`forget`). A forgotten
// sled heard again is a sled first heard: in, with nothing listed on it.
//
// Failure model: records are persisted by the leader (catalogue `sled.<id>`), so a new
// leader knows sleds that died before its tenure. It cannot know how long such a sled
// has really been silent (another coordinator's clock measured that), so a loaded
// record counts its silence from the tenure's start: a sled out stays out until it is
// heard after that start, and a sled in is declared out only after sledOutAfterMs more
// of silence. A heartbeat heard before the tenure began counts for nothing either way.

export interface SledRecord {
  id: string;
  /** Wall-clock times, for operators: first heard, last heard (as last persisted). */
  firstSeenMs: number;
  lastSeenMs: number;
  state: "in" | "out";
  /** Wall-clock time of the last change of state (or of the first sighting). */
  since: number;
  /** The id of the data directory it was last heard from (absent: never said). */
  disk?: string;
  /**
   * Wall-clock time it was first heard from the data directory `disk` after another
   * one: the copies listed there are not verified until every primary has audited it.
   */
  refillingSince?: number;
}

interface Tracked {
  record: SledRecord;
  /** Leader's monotonic time of the last heartbeat counted (or the tenure's start). */
  heardAtMs: number;
  /** Leader's monotonic time the sled was (or, loaded, was taken to be) declared out. */
  outAtMs: number;
  /** Whether the record changed since it was last persisted. */
  dirty: boolean;
}

export class SledBook {
  private readonly sleds = new Map<string, Tracked>();

  /**
   * `records`: what the catalogue holds, loaded by a new leader at `tenureStartMs`
   * (monotonic): their silence counts from then.
   */
  constructor(
    private readonly sledOutAfterMs: number,
    private readonly tenureStartMs: number,
    records: readonly SledRecord[] = [],
  ) {
    if (!(sledOutAfterMs > 0)) throw new Error(`sledOutAfterMs must be positive`);
    for (const record of records) {
      this.sleds.set(record.id, {
        record: { ...record },
        heardAtMs: tenureStartMs,
        outAtMs: tenureStartMs,
        dirty: false,
      });
    }
  }

  /**
   * A heartbeat from `id`, received at `atMs` (monotonic), from data directory `disk`
   * (absent: a sled that predates disk ids). Returns whether its state changed: in
   * service again, first heard, or heard from another directory (`refillingSince`).
   */
  heard(id: string, atMs: number, wallMs: number, disk?: string): boolean {
    if (atMs <= this.tenureStartMs) return false;
    const tracked = this.sleds.get(id);
    if (tracked === undefined) {
      this.sleds.set(id, {
        record: {
          id,
          firstSeenMs: wallMs,
          lastSeenMs: wallMs,
          state: "in",
          since: wallMs,
          ...(disk === undefined ? {} : { disk }),
        },
        heardAtMs: atMs,
        outAtMs: 0,
        dirty: true,
      });
      return true;
    }
    if (atMs <= tracked.heardAtMs) return false;
    tracked.heardAtMs = atMs;
    tracked.record.lastSeenMs = wallMs;
    let changed = false;
    if (disk !== undefined && tracked.record.disk !== disk) {
      // A record from before disk ids learns its disk: nothing to compare with. Any
      // other change is a new directory: every copy listed there may be gone, in or out.
      if (tracked.record.disk !== undefined) {
        tracked.record.refillingSince = wallMs;
        changed = true;
      }
      tracked.record.disk = disk;
      tracked.dirty = true;
    }
    if (tracked.record.state === "out" && atMs > tracked.outAtMs) {
      tracked.record.state = "in";
      tracked.record.since = wallMs;
      tracked.dirty = true;
      return true;
    }
    return changed;
  }

  /** Sleds heard on a new data directory and not yet verified, with that directory's id. */
  refilling(): { sled: string; disk: string; sinceMs: number }[] {
    const refilling: { sled: string; disk: string; sinceMs: number }[] = [];
    for (const { record } of this.sleds.values()) {
      if (record.refillingSince === undefined || record.disk === undefined) continue;
      refilling.push({ sled: record.id, disk: record.disk, sinceMs: record.refillingSince });
    }
    return refilling.sort((a, b) => a.sled.localeCompare(b.sled));
  }

  /**
   * Every primary has audited sled `id` on data directory `disk`: its copies are what
   * the tables say again. Returns whether that ended its refilling (false if it is on
   * yet another directory since, or was not refilling).
   */
  verified(id: string, disk: string): boolean {
    const tracked = this.sleds.get(id);
    if (tracked?.record.refillingSince === undefined || tracked.record.disk !== disk) return false;
    delete tracked.record.refillingSince;
    tracked.dirty = true;
    return true;
  }

  /** Declares out every sled in service silent for sledOutAfterMs; returns their ids. */
  tick(nowMs: number, wallMs: number): string[] {
    const declared: string[] = [];
    for (const tracked of this.sleds.values()) {
      if (tracked.record.state !== "in") continue;
      if (nowMs - tracked.heardAtMs < this.sledOutAfterMs) continue;
      tracked.record.state = "out";
      tracked.record.since = wallMs;
      tracked.outAtMs = nowMs;
      tracked.dirty = true;
      declared.push(tracked.record.id);
    }
    return declared;
  }

  /** Ids of the sleds out of service, sorted. */
  out(): string[] {
    return [...this.sleds.values()]
      .filter((tracked) => tracked.record.state === "out")
      .map((tracked) => tracked.record.id)
      .sort();
  }

  /**
   * The sleds out of service, sorted, each with the leader's monotonic time it was (or,
   * loaded, was taken to be) declared out.
   */
  outSince(): { id: string; outAtMs: number }[] {
    return [...this.sleds.values()]
      .filter((tracked) => tracked.record.state === "out")
      .map((tracked) => ({ id: tracked.record.id, outAtMs: tracked.outAtMs }))
      .sort((a, b) => a.id.localeCompare(b.id));
  }

  /**
   * Forgets sled `id` (its record is deleted from the catalogue): only while it is out
   * and its record persisted as out. Returns whether it did; a sled heard since (in
   * again) or with a change not yet persisted stays.
   */
  forget(id: string): boolean {
    const tracked = this.sleds.get(id);
    if (tracked === undefined || tracked.record.state !== "out" || tracked.dirty) return false;
    this.sleds.delete(id);
    return true;
  }

  /** Every sled record, sorted by id, with how long ago (monotonic) each was last heard. */
  list(nowMs: number): (SledRecord & { silentMs: number })[] {
    return [...this.sleds.values()]
      .map((tracked) => ({
        ...tracked.record,
        silentMs: Math.max(0, Math.round(nowMs - tracked.heardAtMs)),
      }))
      .sort((a, b) => a.id.localeCompare(b.id));
  }

  /**
   * Records to persist: those whose state changed (or that are new) since the last call.
   * The caller marks them dirty again (`unpersisted`) if the write fails.
   */
  takeChanged(): SledRecord[] {
    const changed: SledRecord[] = [];
    for (const tracked of this.sleds.values()) {
      if (!tracked.dirty) continue;
      tracked.dirty = false;
      changed.push({ ...tracked.record });
    }
    return changed;
  }

  /** A record whose write failed: persisted again on the next call to takeChanged. */
  unpersisted(id: string): void {
    const tracked = this.sleds.get(id);
    if (tracked !== undefined) tracked.dirty = true;
  }
}
