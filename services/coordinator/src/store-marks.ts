// Which control store the sleds' data was made under: the guard that keeps a lost or
// replaced control store from reading as "every volume was deleted".
//
// Why: the leftover sweep (leftover-sweeper.ts) deletes sled objects, and the answer to
// `headnode.leftovers.v1` (leftover-directories.ts) has head nodes remove replica
// directories, of every incarnation the catalogue does not name. Both are sound only
// when the catalogue is the one those objects and directories were made under. A
// control store that starts empty while the services' data directories are intact (the
// JetStream directory lost, wiped or pointed elsewhere; a new nats-server) names
// nothing, so every volume's data read as a leftover: on a cold start with the store
// lost, each head node removed its journals (acknowledged writes not yet on the sleds)
// within seconds of asking, and two leftover passes later every chunk and checkpoint
// blob on every sled went, while status showed a healthy cluster with no volumes.
//
// Model: the control store has an identity, `storeId` (random, in the record `store`,
// created with the store's first coordinator and never rewritten). The leader leaves a
// mark on every live sled, a small blob keyed `control-store/<storeId>`, and reads the
// marks each sled holds. A sled holding the mark of another store served a cluster whose
// catalogue this one is not: the store was lost or replaced since. Then nothing is
// deleted for being absent from the catalogue, anywhere, and the leader says so as an
// error (log, node info, `cluster.status.v1`) until an operator decides: restore the
// store, or, to start afresh on purpose, delete the old marks (`sled.blob.delete.v1`).
// Absence-based deletion also waits until every live sled has been read this way, so
// the first answers after a cold start cannot come before the marks are known.
//
// Limits: a store restored from an older copy keeps its id and is not caught (the
// volumes created after the copy still read as leftovers); a sled whose mark could not
// be written (full) holds none, and is no witness for the next loss. Other blob
// listings are not affected: every other reader lists under `checkpoints/`.

import { randomBytes } from "node:crypto";
import { BallastError, crc32c, ErrorCode, limits, subjects } from "@ballast/protocol";
import { RepeatLog, type Service } from "@ballast/runtime";
import { storeMarkRequestDeadlineMs } from "./constants.ts";
import type { Heartbeats } from "./heartbeats.ts";
import type { Tenures } from "./tenure.ts";

/** Every store mark's key begins with this. */
export const storeMarkPrefix = "control-store/";

/** The mark of store `storeId` on a sled. */
export function storeMarkKeyOf(storeId: string): string {
  return `${storeMarkPrefix}${storeId}`;
}

/** A new store's identity: 128 random bits, hex. */
export function newStoreId(): string {
  return randomBytes(16).toString("hex");
}

/** Of the mark keys a sled holds, the stores other than `storeId`. */
export function foreignStoresOf(markKeys: readonly string[], storeId: string): string[] {
  return markKeys
    .filter((key) => key.startsWith(storeMarkPrefix) && key !== storeMarkKeyOf(storeId))
    .map((key) => key.slice(storeMarkPrefix.length))
    .sort();
}

/** What one sled's marks said, for the sled process that was read. */
export interface SledMarks {
  /** The sled process read (`pid` and start), so that a restarted sled is read again. */
  process: string;
  foreign: string[];
}

/**
 * Why absence-based deletion must not run now, or undefined when it may: it may only
 * once every live sled's marks were read, and while no sled read holds another store's.
 */
export function refusalOf(
  storeId: string,
  liveSleds: readonly { id: string; process: string }[],
  read: ReadonlyMap<string, SledMarks>,
  behind: readonly string[] = [],
): string | undefined {
  if (behind.length > 0) {
    return `the control store is older than the data: replicas hold ${behind.join(", ")} in later epochs than its records (restored from an older copy?); nothing is deleted for being absent from this catalogue. Restore the newer control store`;
  }
  const foreign = [...read].filter(([, marks]) => marks.foreign.length > 0);
  if (foreign.length > 0) {
    const held = foreign.map(([sled, marks]) => `${sled} (${marks.foreign.join(", ")})`);
    return `the control store (${storeId}) is not the one the sleds' data was made under: ${held.join("; ")} hold the mark of another store, so it was lost or replaced since; nothing is deleted for being absent from this catalogue. Restore the control store (the NATS JetStream directory) from which it came, or, to start afresh on purpose, delete those marks (blobs ${storeMarkPrefix}<store id>) from the sleds`;
  }
  if (liveSleds.length === 0) return "no sled is live: the control store's marks are not known yet";
  const unread = liveSleds.filter((sled) => read.get(sled.id)?.process !== sled.process);
  if (unread.length > 0) {
    return `the control store's marks on ${unread.map((sled) => sled.id).join(", ")} are not read yet`;
  }
  return undefined;
}

export interface StoreMarksOptions {
  service: Pick<Service, "bus" | "logger">;
  heartbeats: Pick<Heartbeats, "list">;
  tenures: Pick<Tenures, "current">;
  storeId: string;
  /** A monotonic clock (ms), for how often a lasting failure is logged again. */
  clock?: () => number;
  /** How often a sled that cannot be read is logged again (constants.logRepeatIntervalMs). */
  logRepeatIntervalMs?: number;
}

/** The shell: reads and leaves the marks on live sleds, for the leader. */
export class StoreMarks {
  private readonly read = new Map<string, SledMarks>();
  private running = false;
  /**
   * Live sleds whose marks could not be read: tried again every storeMarkCheckMs, so
   * said when it begins, then once per logRepeatIntervalMs (keys: sled ids).
   */
  private readonly unreadable: RepeatLog;
  private readonly clock: () => number;

  constructor(private readonly options: StoreMarksOptions) {
    this.unreadable = new RepeatLog(options.logRepeatIntervalMs);
    this.clock = options.clock ?? (() => performance.now());
  }

  get storeId(): string {
    return this.options.storeId;
  }

  private liveSleds(): { id: string; process: string }[] {
    return this.options.heartbeats
      .list()
      .filter((member) => member.kind === "sled" && member.alive)
      .map((member) => ({ id: member.id, process: `${member.pid}@${member.startedAtMs}` }));
  }

  /** See `refusalOf`. */
  refusal(): string | undefined {
    return refusalOf(this.options.storeId, this.liveSleds(), this.read, this.behind());
  }

  /** Partitions a replica holds in a later epoch than the leader's record (tenure.ts). */
  behind(): string[] {
    const tenure = this.options.tenures.current();
    if (tenure === undefined) return [];
    return [...tenure.behind.keys()]
      .map((key) => {
        const record = tenure.records.get(key)?.value;
        return record === undefined ? key : `${record.volume}/${record.partition}`;
      })
      .sort();
  }

  /** Sleds holding another store's mark, by sled: for status. */
  foreign(): { sled: string; stores: string[] }[] {
    return [...this.read]
      .filter(([, marks]) => marks.foreign.length > 0)
      .map(([sled, marks]) => ({ sled, stores: marks.foreign }));
  }

  /** What `cluster.status.v1` shows of the store. */
  statusOf(): {
    storeId: string;
    foreignMarks: { sled: string; stores: string[] }[];
    behind: string[];
    refused?: string;
  } {
    const refused = this.refusal();
    return {
      storeId: this.options.storeId,
      foreignMarks: this.foreign(),
      behind: this.behind().slice(0, limits.statusEntriesMax),
      ...(refused === undefined ? {} : { refused: refused.slice(0, limits.textLengthMax) }),
    };
  }

  /** Reads (and leaves ours on) every live sled not read since it started. While leading. */
  async check(): Promise<void> {
    if (this.running || this.options.tenures.current() === undefined) return;
    this.running = true;
    try {
      const unread = this.liveSleds().filter(
        (sled) => this.read.get(sled.id)?.process !== sled.process,
      );
      // A sled no longer tried (gone, or read): what was said of it is not repeated.
      const tried = new Set(unread.map((sled) => sled.id));
      this.unreadable.forget((sled) => !tried.has(sled));
      await Promise.all(unread.map((sled) => this.checkSled(sled.id, sled.process)));
    } finally {
      this.running = false;
    }
  }

  private async checkSled(sled: string, process: string): Promise<void> {
    const { service, storeId } = this.options;
    const subject = subjects.node.build("sled", sled);
    const deadline = { deadlineMs: storeMarkRequestDeadlineMs };
    let keys: string[];
    try {
      const listed = await service.bus.request(
        subject,
        { type: "sled.blob.list.v1", prefix: storeMarkPrefix },
        deadline,
      );
      keys = listed.blobs.map((blob) => blob.key);
    } catch (error) {
      const due = this.unreadable.due(sled, this.clock());
      if (due !== undefined) {
        service.logger.warn(
          {
            sled,
            error: (error as Error).message,
            ...(due.first ? {} : { repeatsSuppressed: due.suppressed }),
          },
          "could not read the control store's marks on a sled; nothing is deleted for being absent from the catalogue until it is read",
        );
      }
      return;
    }
    const failed = this.unreadable.end(sled);
    if (failed !== undefined) {
      service.logger.info(
        { sled, repeatsSuppressed: failed.suppressed },
        "read the control store's marks on a sled that could not be read before",
      );
    }
    const foreign = foreignStoresOf(keys, storeId);
    const before = this.read.get(sled);
    this.read.set(sled, { process, foreign });
    if (foreign.length > 0) {
      if (before?.foreign.join() !== foreign.join()) {
        service.logger.error({ sled, storeId, foreign }, this.refusal());
      }
    } else if (before !== undefined && before.foreign.length > 0) {
      service.logger.info({ sled }, "the sled holds no other control store's mark any more");
    }
    if (keys.includes(storeMarkKeyOf(storeId))) return;
    try {
      await putBlob(service.bus, subject, storeMarkKeyOf(storeId), deadline.deadlineMs);
    } catch (error) {
      if (error instanceof BallastError && error.code === ErrorCode.AlreadyExists) return;
      // Best effort: the mark only makes this sled a witness for a later loss.
      service.logger.warn(
        { sled, error: (error as Error).message },
        "could not leave the control store's mark on a sled",
      );
    }
  }
}

async function putBlob(
  bus: Pick<Service["bus"], "request">,
  subject: string,
  key: string,
  deadlineMs: number,
): Promise<void> {
  const data = new TextEncoder().encode(key);
  const begun = await bus.request(
    subject,
    { type: "sled.blob.begin.v1", key, bytes: data.byteLength, checksum: crc32c(data) },
    { deadlineMs },
  );
  await bus.request(
    subject,
    { type: "sled.blob.part.v1", uploadId: begun.uploadId, offset: 0, data },
    { deadlineMs },
  );
  await bus.request(
    subject,
    { type: "sled.blob.commit.v1", uploadId: begun.uploadId },
    { deadlineMs },
  );
}
