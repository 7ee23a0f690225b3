// The shell around sleds.ts: on the leader, feeds the sled book the heartbeats that
// membership heard, declares silent sleds out, logs each change and persists it in the
// catalogue (`sled.<id>`). The report answer (reports.ts) hands the out set to head
// nodes, and status (status.ts) shows every sled record.
//
// A sled heard back on another data directory is refilling (sleds.ts): the report
// answer names it with its new directory's id (`toAudit`), each primary's head node
// audits it and then lists that id in its entry (`auditedDisks`), and once every
// listed partition's primary has (`unauditedOf`) the sled is verified and the mark is
// dropped. A partition whose primary has not reported it (dead, failed, a head node
// that predates audits) keeps the sled unverified: status says so rather than call its
// copies whole.
//
// A sled out for `sledForgetAfterMs` that membership no longer lists and that no
// recorded checkpoint names is forgotten (sled-forgetting.ts decides, from what the
// orphan sweep reads: `referencesSeen`): its record is deleted from the catalogue, by
// compare-and-set on a revision that holds it out, then from the book, and it leaves
// the out set of report answers and status. The delete is made on the next tick, with
// the book's other writes, and only while the sled is still out with its record
// persisted; a sled heard in the meantime is in again and written as such.
//
// Each tenure starts a book of its own from the catalogue's records, loaded once the
// tenure has fenced the catalogue; their silence counts from that load (at or after the
// tenure's start: a sled is declared out later, never earlier). Until the book is
// loaded the out set is unknown, and report answers say nothing of it (head nodes keep
// the set they last heard). After a pause of this process (Heartbeats.listening) no
// sled is declared out until membership has listened afresh.
//
// Failure model: a record that fails to persist is written again on the next tick; a
// leader that dies first leaves the record as it was, and the next leader counts that
// sled's silence from its own start (sleds.ts). A forget whose delete fails is tried
// again on the next tick; one cut off by the tenure's end leaves the record, which the
// next leader loads out and forgets in its turn.

import type { Logger } from "@ballast/runtime";
import { type Catalogue, idOfVolume } from "./catalogue.ts";
import { now } from "./clock.ts";
import { sledForgetAfterMsDefault } from "./constants.ts";
import { type PartitionRecord, volumeIdOf } from "./decisions.ts";
import type { Heartbeats } from "./heartbeats.ts";
import { type ReferenceCensus, SledForgetting } from "./sled-forgetting.ts";
import { SledBook, type SledRecord } from "./sleds.ts";
import type { Tenure, Tenures } from "./tenure.ts";

export interface SledRecordsOptions {
  logger: Logger;
  catalogue: Pick<Catalogue, "sledRecords" | "putSledRecord" | "forgetSledRecord">;
  heartbeats: Pick<Heartbeats, "list" | "listening">;
  tenures: Tenures;
  sledOutAfterMs: number;
  /** How long a sled is out before it may be forgotten (constants.sledForgetAfterMsDefault). */
  sledForgetAfterMs?: number;
}

/** A tenure's book, its forgetting decision, and the sleds decided forgotten, to delete. */
interface Held {
  tenure: Tenure;
  book: SledBook;
  forgetting: SledForgetting;
  forget: Set<string>;
}

export class SledRecords {
  private book: Held | undefined;
  private loading: Tenure | undefined;
  private persisting = false;

  constructor(private readonly options: SledRecordsOptions) {}

  /** Sleds out of service, or undefined while this leader's book is not yet loaded. */
  out(tenure: Tenure): string[] | undefined {
    return this.book?.tenure === tenure ? this.book.book.out() : undefined;
  }

  /**
   * Sleds on a new data directory not yet verified, with its id, for head nodes to
   * audit; undefined while this leader's book is not yet loaded.
   */
  toAudit(tenure: Tenure): { sled: string; disk: string }[] | undefined {
    if (this.book?.tenure !== tenure) return undefined;
    return this.book.book.refilling().map(({ sled, disk }) => ({ sled, disk }));
  }

  /**
   * Every sled record, for status, a refilling one with what is left to audit; undefined
   * while not leading or not yet loaded.
   */
  list(): (SledRecord & { silentMs: number; refilling?: Refilling })[] | undefined {
    const tenure = this.options.tenures.current();
    if (tenure === undefined || this.book?.tenure !== tenure) return undefined;
    this.update(this.book.book);
    const refilling = new Map(
      this.book.book.refilling().map(({ sled, disk, sinceMs }) => {
        const unaudited = unauditedOf(tenure, disk);
        return [
          sled,
          {
            sinceMs,
            partitions: unaudited.length,
            volumes: [...new Set(unaudited.map((record) => record.volume))].sort(),
          },
        ];
      }),
    );
    return this.book.book.list(now()).map((record) => {
      const { refillingSince: _, ...shown } = record;
      const entry = refilling.get(record.id);
      return entry === undefined ? shown : { ...shown, refilling: entry };
    });
  }

  /** The periodic tick (every coordinator runs it; only a leader's does anything). */
  async tick(): Promise<void> {
    const tenure = this.options.tenures.current();
    if (tenure === undefined || !tenure.ready) {
      if (tenure === undefined) this.book = undefined;
      return;
    }
    if (this.book?.tenure !== tenure) {
      await this.load(tenure);
      return;
    }
    this.update(this.book.book);
    await this.persist(this.book);
  }

  /**
   * What an orphan sweep pass read of the recorded checkpoints (undefined: not all of
   * it): the out sleds it lets go are deleted on the next tick. Only this tenure's book
   * takes it; candidates are the out sleds membership no longer lists.
   */
  referencesSeen(tenure: Tenure, census: ReferenceCensus | undefined): void {
    const held = this.book;
    if (held?.tenure !== tenure || this.options.tenures.current() !== tenure) return;
    const members = new Set(
      this.options.heartbeats
        .list()
        .filter((member) => member.kind === "sled")
        .map((member) => member.id),
    );
    const candidates = held.book.outSince().filter((sled) => !members.has(sled.id));
    for (const id of held.forgetting.pass(census, candidates)) held.forget.add(id);
  }

  private async load(tenure: Tenure): Promise<void> {
    if (this.loading === tenure) return;
    this.loading = tenure;
    try {
      // A sled record that does not decode is left out (reported): that sled is counted
      // from its heartbeats as one first heard now, and its record written afresh.
      const records = await this.options.catalogue.sledRecords("skip");
      if (this.options.tenures.current() !== tenure) return;
      this.book = {
        tenure,
        book: new SledBook(this.options.sledOutAfterMs, now(), records),
        forgetting: new SledForgetting(this.options.sledForgetAfterMs ?? sledForgetAfterMsDefault),
        forget: new Set(),
      };
      this.options.logger.info(
        { sleds: records.length, out: this.book.book.out() },
        "loaded the sled records",
      );
    } catch (error) {
      this.options.logger.warn(
        { error: (error as Error).message },
        "could not load the sled records; will try again",
      );
    } finally {
      this.loading = undefined;
    }
  }

  /** Counts the heartbeats heard, then declares the silent out. */
  private update(book: SledBook): void {
    const nowMs = now();
    const wallMs = Date.now();
    for (const member of this.options.heartbeats.list()) {
      if (member.kind !== "sled") continue;
      const heardWallMs = Math.round(wallMs - Math.max(0, nowMs - member.lastHeartbeatAtMs));
      const before = book.refilling().find((entry) => entry.sled === member.id)?.disk;
      if (book.heard(member.id, member.lastHeartbeatAtMs, heardWallMs, member.disk)) {
        const refilling = book.refilling().find((entry) => entry.sled === member.id);
        if (refilling !== undefined && refilling.disk !== before) {
          this.options.logger.warn(
            { sled: member.id, disk: refilling.disk },
            "sled back on another data directory: the copies listed there may be gone; it stays in service, unverified until every primary has audited it",
          );
        } else {
          this.options.logger.info({ sled: member.id }, "sled in service");
        }
      }
    }
    const tenure = this.book?.book === book ? this.book.tenure : undefined;
    if (tenure?.ready === true) {
      for (const { sled, disk } of book.refilling()) {
        if (unauditedOf(tenure, disk).length > 0 || !book.verified(sled, disk)) continue;
        this.options.logger.info(
          { sled, disk },
          "every primary has audited the sled back on another data directory: its copies are verified",
        );
      }
    }
    if (this.options.heartbeats.listening(nowMs)) return;
    for (const id of book.tick(nowMs, wallMs)) {
      this.options.logger.warn(
        { sled: id, sledOutAfterMs: this.options.sledOutAfterMs },
        `sled declared out: silent for ${this.options.sledOutAfterMs} ms; its copies are made again elsewhere`,
      );
    }
  }

  private async persist(held: Held): Promise<void> {
    if (this.persisting) return;
    this.persisting = true;
    const { book } = held;
    try {
      for (const record of book.takeChanged()) {
        try {
          await this.options.catalogue.putSledRecord(record);
        } catch (error) {
          book.unpersisted(record.id);
          this.options.logger.warn(
            { sled: record.id, error: (error as Error).message },
            "could not persist a sled record; will try again",
          );
        }
      }
      await this.forget(held);
    } finally {
      this.persisting = false;
    }
  }

  /**
   * Deletes the records of the sleds decided forgotten, each only while it is out with
   * its record persisted (sleds.ts `forget`), and only where the catalogue holds it out.
   */
  private async forget(held: Held): Promise<void> {
    const { catalogue, logger, tenures } = this.options;
    for (const id of [...held.forget]) {
      if (tenures.current() !== held.tenure) return;
      const sled = held.book.list(now()).find((record) => record.id === id);
      if (sled?.state !== "out") {
        held.forget.delete(id);
        continue;
      }
      let deleted: boolean;
      try {
        deleted = await catalogue.forgetSledRecord(id);
      } catch (error) {
        logger.warn(
          { sled: id, error: (error as Error).message },
          "could not delete the record of a sled to forget; will try again",
        );
        continue;
      }
      held.forget.delete(id);
      if (!deleted || !held.book.forget(id)) continue;
      logger.info(
        {
          sled: id,
          outSinceMs: sled.since,
          sledForgetAfterMs: this.options.sledForgetAfterMs ?? sledForgetAfterMsDefault,
        },
        "forgot a sled out for good: no recorded checkpoint names it; heard again, it is a new, empty sled",
      );
    }
  }
}

/** What is left of a refilling sled's verification (status). */
export interface Refilling {
  /** Wall-clock time its new data directory was first heard. */
  sinceMs: number;
  /** Partitions whose primary has not said it audited it. */
  partitions: number;
  /** Their volumes, sorted. */
  volumes: string[];
}

/**
 * The partition records of listed volumes whose primary has not said (in the last
 * entry it reported, `auditedDisks`) that it audited the sled on data directory `disk`.
 * The disk id is new with the directory, so an entry that names it was built after the
 * head node heard it was to audit: no report age is needed. A partition with no entry
 * from its primary (dead, failed to open, a new leader still hearing the nodes) is
 * unaudited: nothing says its copies there are back. Partitions of no listed volume (a
 * create under way, a delete that died halfway) hold nothing to count.
 */
export function unauditedOf(
  tenure: Pick<Tenure, "records" | "volumes" | "leases">,
  disk: string,
): PartitionRecord[] {
  const unaudited: PartitionRecord[] = [];
  for (const { value: record } of tenure.records.values()) {
    const volume = tenure.volumes.get(record.volume);
    if (volume === undefined || idOfVolume(volume) !== volumeIdOf(record)) continue;
    const report = tenure.leases.lastReportOf(record);
    if (report?.auditedDisks?.includes(disk) === true) continue;
    unaudited.push(record);
  }
  return unaudited;
}
