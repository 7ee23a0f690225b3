// Change detection for the leader's catalogue re-read (issue 14: an idle cost flat in
// the number of partitions). The leader decides from its own copy of the catalogue and
// re-reads the whole of it as a safety net (reconciler.ts); a re-read costs one KV get
// per partition record. A watch on the volume and partition keys counts every change
// (the leader's own writes included), and the re-read is skipped while the count has
// not moved since the last one began: an idle catalogue is not read again but every
// catalogueRereadMsMax.
//
// Failure model: a watch that ends or fails (NATS reconnecting, the stream moved) is
// started again after watchRetryMs; meanwhile `version()` is undefined and the re-read
// runs on its usual interval. A watch counts one change when it starts, since changes
// before it went unseen: the first re-read after it is never skipped.

import { type Logger, RepeatLog } from "@ballast/runtime";
import { pointerCountsNamesMax, watchRetryMs } from "./constants.ts";

/** The KV watch the detector needs (JetStream KV's `watch`, updates only). */
export type Watch = (options: {
  key: string;
  include: "updates";
  headers_only: boolean;
}) => Promise<AsyncIterable<unknown> & { stop(): void }>;

/** The keys whose changes a re-read would pick up. */
const watchedKeys = ["volume.>", "partition.>"] as const;

/**
 * What the watches log with. While NATS or the stream is away a watch fails again every
 * watchRetryMs: its failure is said when it begins, then once per logRepeatIntervalMs
 * with the count left out (RepeatLog), and its return once (with `info`, when given).
 */
export type WatchLog = Pick<Logger, "warn"> & { info?: Logger["info"] };

export class CatalogueChanges {
  private count = 0;
  private readonly live = new Set<string>();
  private readonly watches = new Set<{ stop(): void }>();
  private closed = false;
  private readonly repeats: RepeatLog;

  constructor(
    private readonly watch: Watch,
    private readonly logger: WatchLog,
    private readonly retryMs = watchRetryMs,
    private readonly clock: () => number = () => performance.now(),
    logRepeatIntervalMs?: number,
  ) {
    this.repeats = new RepeatLog(logRepeatIntervalMs);
  }

  start(): void {
    for (const key of watchedKeys) void this.follow(key);
  }

  /**
   * A number that moves on every change to a volume or partition record; undefined
   * while some key is not watched (then every re-read must run).
   */
  version(): number | undefined {
    return this.live.size === watchedKeys.length ? this.count : undefined;
  }

  close(): void {
    this.closed = true;
    for (const watch of this.watches) watch.stop();
  }

  private async follow(key: string): Promise<void> {
    while (!this.closed) {
      try {
        const changes = await this.watch({ key, include: "updates", headers_only: true });
        this.watches.add(changes);
        if (this.closed) changes.stop();
        const failed = this.repeats.end(key);
        if (failed !== undefined) {
          this.logger.info?.(
            { key, repeatsSuppressed: failed.suppressed },
            "catalogue watch is back; an idle catalogue is no longer re-read every interval",
          );
        }
        this.count++;
        this.live.add(key);
        try {
          for await (const _ of changes) this.count++;
        } finally {
          this.live.delete(key);
          this.watches.delete(changes);
        }
      } catch (error) {
        const due = this.repeats.due(key, this.clock());
        if (due !== undefined) {
          this.logger.warn(
            {
              key,
              error: (error as Error).message,
              ...(due.first ? {} : { repeatsSuppressed: due.suppressed }),
            },
            "catalogue watch failed; re-reading the catalogue on every interval meanwhile",
          );
        }
      }
      if (!this.closed) await new Promise((resolve) => setTimeout(resolve, this.retryMs));
    }
  }
}

// Change detection for the orphan sweep's checkpoint pointers (sweeper.ts). A pointer
// is what keeps a checkpoint blob, so a pass must see every pointer recorded before it
// began: a count that merely has not moved yet (a watch running late) is no proof. So
// the sweep writes a mark (`pointerMarkKey`, in the same watched key space) and waits
// until this watch delivers it: a watch delivers in the store's order, so every pointer
// change before the mark has been counted by then. A volume whose count has not moved
// between two marks holds the pointers a read after the first returned.
//
// Failure model: a watch that ends or fails is started again after watchRetryMs, with
// a new generation (counts of different generations are never compared); a mark not
// delivered within the deadline, or no watch, makes the sweep read every pointer.
//
// Bounded by the live volumes: the counts are kept by volume name, and a name's count
// would otherwise stay for the watch's whole life after its volume is deleted (a name
// created and deleted every minute: half a million entries a year, each copied by every
// `sync`). So the sweep, at the end of every complete pass, keeps only the names that
// pass found live (`retain`), the very names whose pointers it keeps for the next pass.
// A count forgotten that way restarts from nothing if the name returns, and could then
// come back to a value the sweep once saw (the sweep compares counts for equality); that
// is harmless because the sweep forgets its own read of the name in the same step, and
// counts are compared only between two consecutive complete passes, between which no
// `retain` runs.
//
// Only a coordinator whose sweep completes passes retains, yet every coordinator watches
// (a standby too, so that it has counts should it come to lead): a standby, or a leader
// whose passes never complete, counted every name ever given a pointer for as long as its
// watch lasted, some 125 bytes each (a name created and deleted every minute: 60 MiB a
// year on each standby). So past `pointerCountsNamesMax` names the counts start again
// from nothing as a new generation: a read the sweep holds is then of an older one and is
// read afresh, which costs one pass what it would cost without the watch. Dropping only
// some names' counts would not do: the sweep might still hold their reads.

/** The key the sweep writes to learn how far the pointer watch has delivered. */
export const pointerMarkKey = "checkpoint._mark";

/** Pointer changes by volume as of a delivered mark (`PointerChanges.sync`). */
export interface PointerVersions {
  generation: number;
  /** Changes to the volume's pointers counted by this generation's watch. */
  counts: ReadonlyMap<string, number>;
}

/** The KV watch the pointer detector needs: keys and revisions of changes. */
export type KeyWatch = (options: {
  key: string;
  include: "updates";
  headers_only: boolean;
}) => Promise<AsyncIterable<{ key: string; revision: number }> & { stop(): void }>;

/** The writes the mark needs (the control store's). */
export interface MarkStore {
  get(key: string): Promise<{ revision: number } | null>;
  create(key: string, value: Uint8Array): Promise<number>;
  update(key: string, value: Uint8Array, revision: number): Promise<number>;
}

export class PointerChanges {
  private counts = new Map<string, number>();
  private generation = 0;
  private live = false;
  private delivered = Number.NEGATIVE_INFINITY;
  private waiters: {
    revision: number;
    resolve: (versions: PointerVersions | undefined) => void;
  }[] = [];
  private watching: { stop(): void } | undefined;
  private closed = false;

  private readonly repeats: RepeatLog;

  constructor(
    private readonly watch: KeyWatch,
    private readonly store: MarkStore,
    private readonly logger: WatchLog,
    private readonly retryMs = watchRetryMs,
    private readonly clock: () => number = () => performance.now(),
    logRepeatIntervalMs?: number,
    private readonly namesMax = pointerCountsNamesMax,
  ) {
    this.repeats = new RepeatLog(logRepeatIntervalMs);
  }

  start(): void {
    void this.follow();
  }

  close(): void {
    this.closed = true;
    this.live = false;
    this.watching?.stop();
    this.settleWaiters();
  }

  /**
   * Writes a mark and waits (at most `deadlineMs`) until the watch delivers it; the
   * counts then hold every pointer change the store took before the mark. Undefined
   * when not watching, or when the mark was not delivered in time.
   */
  async sync(deadlineMs: number): Promise<PointerVersions | undefined> {
    if (!this.live) return undefined;
    const generation = this.generation;
    const revision = await this.mark();
    if (!this.live || generation !== this.generation) return undefined;
    if (this.delivered >= revision) return this.versions();
    let timer: NodeJS.Timeout | undefined;
    const versions = await new Promise<PointerVersions | undefined>((resolve) => {
      const waiter = { revision, resolve };
      this.waiters.push(waiter);
      // Past the deadline the waiter goes too: kept until its mark arrived, a watch that
      // stays open but delivers nothing more kept one for every sweep pass it lasted.
      timer = setTimeout(() => {
        this.waiters = this.waiters.filter((one) => one !== waiter);
        resolve(undefined);
      }, deadlineMs);
    }).finally(() => clearTimeout(timer));
    return versions?.generation === generation ? versions : undefined;
  }

  /**
   * Forgets the counts of every volume name not in `names` (the sweep's live volumes,
   * after a complete pass: see "Bounded by the live volumes" above).
   */
  retain(names: Iterable<string>): void {
    const kept = new Set(names);
    for (const volume of this.counts.keys()) if (!kept.has(volume)) this.counts.delete(volume);
  }

  /** Syncs waiting for their marks to be delivered. */
  get waiting(): number {
    return this.waiters.length;
  }

  /** One change to `volume`'s pointers; past `namesMax` names, a new generation (header). */
  private count(volume: string): void {
    const known = this.counts.get(volume);
    if (known === undefined && this.counts.size >= this.namesMax) {
      this.generation++;
      this.counts = new Map();
    }
    this.counts.set(volume, (known ?? 0) + 1);
  }

  private versions(): PointerVersions {
    return { generation: this.generation, counts: new Map(this.counts) };
  }

  private async mark(): Promise<number> {
    const value = new TextEncoder().encode(JSON.stringify({ atMs: Date.now() }));
    for (let attempt = 0; ; attempt++) {
      const current = await this.store.get(pointerMarkKey);
      try {
        return current === null
          ? await this.store.create(pointerMarkKey, value)
          : await this.store.update(pointerMarkKey, value, current.revision);
      } catch (error) {
        // Another leader's mark landed in between: read it again (a few times at most).
        if (attempt >= 2) throw error;
      }
    }
  }

  /**
   * Resolves every waiter whose mark has been delivered with the counts as of now; when
   * the watch has ended, every waiter with none (its mark may never come).
   */
  private settleWaiters(): void {
    const waiting = this.waiters;
    this.waiters = [];
    for (const waiter of waiting) {
      if (!this.live) waiter.resolve(undefined);
      else if (waiter.revision > this.delivered) this.waiters.push(waiter);
      else waiter.resolve(this.versions());
    }
  }

  private async follow(): Promise<void> {
    while (!this.closed) {
      try {
        const changes = await this.watch({
          key: "checkpoint.>",
          include: "updates",
          headers_only: true,
        });
        this.watching = changes;
        if (this.closed) changes.stop();
        const failed = this.repeats.end("checkpoint.>");
        if (failed !== undefined) {
          this.logger.info?.(
            { key: "checkpoint.>", repeatsSuppressed: failed.suppressed },
            "checkpoint pointer watch is back",
          );
        }
        this.generation++;
        this.counts = new Map();
        this.delivered = Number.NEGATIVE_INFINITY;
        this.live = true;
        try {
          for await (const change of changes) {
            if (change.key === pointerMarkKey) {
              this.delivered = Math.max(this.delivered, change.revision);
              this.settleWaiters();
              continue;
            }
            const volume = change.key.split(".")[1];
            if (volume !== undefined) this.count(volume);
          }
        } finally {
          this.live = false;
          this.watching = undefined;
          // Waiters of this generation get no counts: they read every pointer.
          this.settleWaiters();
        }
      } catch (error) {
        const due = this.repeats.due("checkpoint.>", this.clock());
        if (due !== undefined) {
          this.logger.warn(
            {
              key: "checkpoint.>",
              error: (error as Error).message,
              ...(due.first ? {} : { repeatsSuppressed: due.suppressed }),
            },
            "checkpoint pointer watch failed; the sweep reads every pointer meanwhile",
          );
        }
      }
      if (!this.closed) await new Promise((resolve) => setTimeout(resolve, this.retryMs));
    }
  }
}
