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
// A store restored from an older copy keeps its id, so its mark alone does not catch it:
// the volumes created after the copy would read as leftovers, and the snapshots taken
// after it as creates given up (the orphan sweep drops a snapshot id no record names,
// and with it a clone's base). So the catalogue also has a sequence (record `sequence`),
// raised by one before each volume create (and clone) and each snapshot create,
// and the leader leaves it on every live sled as a blob `catalogue-sequence/<storeId>/
// <sequence>` before the create writes any record, so before any head node is
// configured or any object of the volume exists; the create fails if no live sled took
// it. A sled whose marks witness a sequence above the catalogue's proves the catalogue
// older than the data: nothing is deleted for being absent, as above. The catalogue's
// sequence is read after the sleds' marks, and a create raises it before writing its
// mark, so on a store that was not restored no sled read ever witnesses more than the
// catalogue holds. While the catalogue is behind a witness, creates are refused too:
// otherwise creates on the old copy would raise its sequence back to the witness and
// lift the refusal over the lost volumes.
//
// Numbers alone are not enough: if every sled that holds the higher sequence is down
// when the old copy comes back, creates on the copy raise its sequence past that witness
// before one of them returns. So each raise has a random nonce, kept in the record's
// history (the latest `catalogueSequenceHistoryMax`) and in the mark's key
// (`<sequence>-<nonce>`): a sled whose witness is a sequence the catalogue's history holds
// with another nonce was marked in another history, and refuses as one ahead does. And a
// sled read with a lower witness than the catalogue's (down or full at the creates
// since) is given the catalogue's latest mark then, so it witnesses those creates too.
//
// Limits: a sled whose mark could not be written (full) holds none until it is read
// again with room. The old copy's creates are caught only while the returning sled's
// sequence is within the history kept (more creates on the copy than that before any
// such sled returns, and the lost volumes read as leftovers again). Marks written before
// nonces existed are compared by number only. A store replaced under a running leader
// is seen at its next check (`storeMarkCheckMs`). Other blob listings are not affected:
// every other reader lists under `checkpoints/`.

import { randomBytes } from "node:crypto";
import { BallastError, crc32c, ErrorCode, limits, subjects } from "@ballast/protocol";
import { RepeatLog, type Service } from "@ballast/runtime";
import type { Catalogue } from "./catalogue.ts";
import { storeMarkRequestDeadlineMs } from "./constants.ts";
import type { Heartbeats } from "./heartbeats.ts";
import type { Tenures } from "./tenure.ts";

/** Every store mark's key begins with this. */
export const storeMarkPrefix = "control-store/";

/** The mark of store `storeId` on a sled. */
export function storeMarkKeyOf(storeId: string): string {
  return `${storeMarkPrefix}${storeId}`;
}

/** Every catalogue-sequence mark of store `storeId` begins with this. */
export function sequenceMarkPrefixOf(storeId: string): string {
  return `catalogue-sequence/${storeId}/`;
}

/** Digits of a sequence in its mark's key: every safe integer fits, so keys sort. */
const sequenceDigits = 16;

/**
 * The mark witnessing catalogue sequence `sequence` of store `storeId` on a sled, with
 * the nonce of the raise that made it (marks left before nonces existed have none).
 */
export function sequenceMarkKeyOf(storeId: string, sequence: number, nonce?: string): string {
  const digits = sequence.toString().padStart(sequenceDigits, "0");
  return `${sequenceMarkPrefixOf(storeId)}${digits}${nonce === undefined ? "" : `-${nonce}`}`;
}

/** What a sled witnesses: the highest sequence of its marks, and that raise's nonce. */
export interface Witness {
  sequence: number;
  nonce?: string;
}

/** The highest sequence of store `storeId` the mark keys witness: 0 if none. */
export function witnessOf(markKeys: readonly string[], storeId: string): Witness {
  const prefix = sequenceMarkPrefixOf(storeId);
  let highest: Witness = { sequence: 0 };
  for (const key of markKeys) {
    if (!key.startsWith(prefix)) continue;
    const parsed = /^([0-9]{1,16})(?:-([0-9a-f]{16}))?$/.exec(key.slice(prefix.length));
    if (parsed === null) continue;
    const sequence = Number(parsed[1]);
    if (!Number.isSafeInteger(sequence)) continue;
    if (sequence > highest.sequence || (sequence === highest.sequence && parsed[2] !== undefined)) {
      highest = parsed[2] === undefined ? { sequence } : { sequence, nonce: parsed[2] };
    }
  }
  return highest;
}

/** The highest sequence of store `storeId` the mark keys witness: 0 if none. */
export function witnessedSequenceOf(markKeys: readonly string[], storeId: string): number {
  return witnessOf(markKeys, storeId).sequence;
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
  sequence: SequenceView = { catalogue: 0, witnessed: new Map() },
): string | undefined {
  const mismatch = mismatchOf(storeId, read, behind, sequence);
  if (mismatch !== undefined) return mismatch;
  if (liveSleds.length === 0) return "no sled is live: the control store's marks are not known yet";
  const unread = liveSleds.filter((sled) => read.get(sled.id)?.process !== sled.process);
  if (unread.length > 0) {
    return `the control store's marks on ${unread.map((sled) => sled.id).join(", ")} are not read yet`;
  }
  if (sequence.catalogue === undefined) return "the catalogue's sequence is not read yet";
  return undefined;
}

/**
 * Why what has been read proves this catalogue not the data's (a partition behind,
 * another store's mark, a later witness), or undefined: unlike `refusalOf`, marks not
 * read yet are no proof. For deleters whose every deletion also needs the catalogue to
 * name the object's state (the orphan sweep): an empty or foreign catalogue names no
 * volume to them, so only a catalogue proven older need stop them.
 */
export function mismatchOf(
  storeId: string,
  read: ReadonlyMap<string, SledMarks>,
  behind: readonly string[],
  sequence: SequenceView,
): string | undefined {
  if (behind.length > 0) {
    return `the control store is older than the data: replicas hold ${behind.join(", ")} in later epochs than its records (restored from an older copy?); nothing is deleted for being absent from this catalogue. Restore the newer control store`;
  }
  const foreign = [...read].filter(([, marks]) => marks.foreign.length > 0);
  if (foreign.length > 0) {
    const held = foreign.map(([sled, marks]) => `${sled} (${marks.foreign.join(", ")})`);
    return `the control store (${storeId}) is not the one the sleds' data was made under: ${held.join("; ")} hold the mark of another store, so it was lost or replaced since; nothing is deleted for being absent from this catalogue. Restore the control store (the NATS JetStream directory) from which it came, or, to start afresh on purpose, delete those marks (blobs ${storeMarkPrefix}<store id>) from the sleds`;
  }
  const ahead = sledsAheadOf(sequence);
  if (ahead.length > 0) {
    return `the control store is older than the data: ${ahead.map(([sled, witnessed]) => `${sled} witnessed catalogue sequence ${witnessed}`).join(", ")}, this catalogue is at ${sequence.catalogue ?? 0} (restored from an older copy?), so volumes and snapshots created since are missing from it; nothing is deleted for being absent from this catalogue, and nothing is created. Restore the newer control store, or, to go on without those volumes and snapshots on purpose, delete the blobs ${sequenceMarkPrefixOf(storeId)}* from the sleds`;
  }
  const diverged = sledsDivergedOf(sequence);
  if (diverged.length > 0) {
    return `the control store is not the history the data was made in: ${diverged.map(([sled, witnessed]) => `${sled} witnessed catalogue sequence ${witnessed} raised by another create than this catalogue's ${witnessed}`).join(", ")} (restored from an older copy, and creates made on it since?), so volumes and snapshots created in the other history are missing from it; nothing is deleted for being absent from this catalogue, and nothing is created. Restore the newer control store, or, to go on without them on purpose, delete the blobs ${sequenceMarkPrefixOf(storeId)}* from the sleds`;
  }
  return undefined;
}

/**
 * The catalogue's sequence (undefined until read, after the sleds' marks) and the
 * highest each sled witnessed, by sled.
 */
export interface SequenceView {
  catalogue: number | undefined;
  witnessed: ReadonlyMap<string, number>;
  /** The nonce of each sled's witness, by sled, where its mark carries one. */
  nonces?: ReadonlyMap<string, string>;
  /** The catalogue's latest raises: sequence → nonce. */
  history?: ReadonlyMap<number, string>;
}

/**
 * Sleds whose witness the catalogue's own history made otherwise: a sequence it holds,
 * raised with another nonce. The old copy of a store, restored while every sled that
 * witnessed its later creates was down, and then raised past them by creates of its
 * own, is caught so when one of those sleds is read (within the history kept).
 */
export function sledsDivergedOf(sequence: SequenceView): [string, number][] {
  const { catalogue, nonces, history } = sequence;
  if (catalogue === undefined || nonces === undefined || history === undefined) return [];
  return [...sequence.witnessed]
    .filter(([sled, witnessed]) => {
      const nonce = nonces.get(sled);
      const ours = history.get(witnessed);
      return witnessed <= catalogue && nonce !== undefined && ours !== undefined && ours !== nonce;
    })
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/** Sleds witnessing a higher sequence than the catalogue's, with theirs, by sled. */
export function sledsAheadOf(sequence: SequenceView): [string, number][] {
  if (sequence.catalogue === undefined) return [];
  const catalogue = sequence.catalogue;
  return [...sequence.witnessed]
    .filter(([, witnessed]) => witnessed > catalogue)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/** The highest sequence any sled read witnessed: 0 if none. */
export function highestWitnessOf(witnessed: ReadonlyMap<string, number>): number {
  return Math.max(0, ...witnessed.values());
}

export interface StoreMarksOptions {
  service: Pick<Service, "bus" | "logger">;
  heartbeats: Pick<Heartbeats, "list">;
  tenures: Pick<Tenures, "current">;
  catalogue: Pick<Catalogue, "sequenceHistory" | "nextSequence">;
  storeId: string;
  /** A monotonic clock (ms), for how often a lasting failure is logged again. */
  clock?: () => number;
  /** How often a sled that cannot be read is logged again (constants.logRepeatIntervalMs). */
  logRepeatIntervalMs?: number;
}

/** The shell: reads and leaves the marks on live sleds, for the leader. */
export class StoreMarks {
  private readonly read = new Map<string, SledMarks>();
  /** The highest catalogue sequence each sled witnessed, read or written, by sled. */
  private readonly witnessed = new Map<string, number>();
  /** The nonce of each sled's witness, where its mark carries one. */
  private readonly nonces = new Map<string, string>();
  /** The catalogue's sequence as last read (after the marks) or raised here. */
  private sequence: number | undefined;
  /** The catalogue's latest raises as last read or made here: sequence → nonce. */
  private history = new Map<number, string>();
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

  private sequenceView(): SequenceView {
    return {
      catalogue: this.sequence,
      witnessed: this.witnessed,
      nonces: this.nonces,
      history: this.history,
    };
  }

  /** See `mismatchOf`. */
  mismatch(): string | undefined {
    return mismatchOf(this.options.storeId, this.read, this.behind(), this.sequenceView());
  }

  /** See `refusalOf`. */
  refusal(): string | undefined {
    return refusalOf(
      this.options.storeId,
      this.liveSleds(),
      this.read,
      this.behind(),
      this.sequenceView(),
    );
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
    sequence?: { catalogue: number; witnessed: number };
    refused?: string;
  } {
    const refused = this.refusal();
    return {
      storeId: this.options.storeId,
      foreignMarks: this.foreign(),
      behind: this.behind().slice(0, limits.statusEntriesMax),
      ...(this.sequence === undefined
        ? {}
        : {
            sequence: { catalogue: this.sequence, witnessed: highestWitnessOf(this.witnessed) },
          }),
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
      // What the marks showed before this check: only a change is logged as an error.
      const before = this.sequenceMismatches();
      const read = await Promise.all(
        unread.map(async (sled) => ((await this.checkSled(sled.id, sled.process)) ? sled.id : "")),
      );
      // After the marks: a create raises the sequence before it leaves its mark, so on a
      // store that was not restored, no mark read above is ahead of what this reads.
      try {
        const history = await this.options.catalogue.sequenceHistory();
        this.sequence = history.sequence;
        this.history = new Map(history.recent);
      } catch (error) {
        this.options.service.logger.warn(
          { error: (error as Error).message },
          "could not read the catalogue's sequence",
        );
        return;
      }
      const after = this.sequenceMismatches();
      if (after.length > 0 && after.join() !== before.join()) {
        this.options.service.logger.error(
          { storeId: this.options.storeId, sequence: this.sequence, sleds: after },
          this.refusal(),
        );
      }
      await Promise.all(read.filter((sled) => sled !== "").map((sled) => this.bringUp(sled)));
    } finally {
      this.running = false;
    }
  }

  /** Sleds ahead of the catalogue or diverged from its history, as `sled:sequence`. */
  private sequenceMismatches(): string[] {
    const view = this.sequenceView();
    return [...sledsAheadOf(view), ...sledsDivergedOf(view)].map(([sled, at]) => `${sled}:${at}`);
  }

  /**
   * Leaves the catalogue's latest sequence on a sled just read whose witness is lower (it
   * was down or full at the creates since): from then on it is a witness of them too, so
   * a store restored from an older copy while the sleds that took those creates are down
   * is still caught by this one. Not while the catalogue is shown older or diverged, and
   * only a sequence whose nonce this leader knows. Best effort.
   */
  private async bringUp(sled: string): Promise<void> {
    const { service, storeId } = this.options;
    const sequence = this.sequence;
    if (sequence === undefined || sequence <= (this.witnessed.get(sled) ?? 0)) return;
    const nonce = this.history.get(sequence);
    if (nonce === undefined || this.mismatch() !== undefined) return;
    const subject = subjects.node.build("sled", sled);
    try {
      await putBlob(
        service.bus,
        subject,
        sequenceMarkKeyOf(storeId, sequence, nonce),
        storeMarkRequestDeadlineMs,
      );
    } catch (error) {
      if (!(error instanceof BallastError && error.code === ErrorCode.AlreadyExists)) {
        service.logger.warn(
          { sled, sequence, error: (error as Error).message },
          "could not leave the catalogue's sequence on a sled that missed creates",
        );
        return;
      }
    }
    this.witness(sled, { sequence, nonce });
    await this.forgetOlderSequences(subject, sequence);
  }

  /** Reads one sled's marks (and leaves ours); whether they were read. */
  private async checkSled(sled: string, process: string): Promise<boolean> {
    const { service, storeId } = this.options;
    const subject = subjects.node.build("sled", sled);
    const deadline = { deadlineMs: storeMarkRequestDeadlineMs };
    let keys: string[];
    try {
      const [listed, sequences] = await Promise.all([
        service.bus.request(
          subject,
          { type: "sled.blob.list.v1", prefix: storeMarkPrefix },
          deadline,
        ),
        service.bus.request(
          subject,
          { type: "sled.blob.list.v1", prefix: sequenceMarkPrefixOf(storeId) },
          deadline,
        ),
      ]);
      keys = listed.blobs.map((blob) => blob.key);
      this.witness(
        sled,
        witnessOf(
          sequences.blobs.map((blob) => blob.key),
          storeId,
        ),
      );
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
      return false;
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
    if (keys.includes(storeMarkKeyOf(storeId))) return true;
    try {
      await putBlob(service.bus, subject, storeMarkKeyOf(storeId), deadline.deadlineMs);
    } catch (error) {
      if (error instanceof BallastError && error.code === ErrorCode.AlreadyExists) return true;
      // Best effort: the mark only makes this sled a witness for a later loss.
      service.logger.warn(
        { sled, error: (error as Error).message },
        "could not leave the control store's mark on a sled",
      );
    }
    return true;
  }

  private witness(sled: string, witness: Witness): void {
    const known = this.witnessed.get(sled) ?? 0;
    if (witness.sequence < known) return;
    if (witness.sequence > known) {
      this.witnessed.set(sled, witness.sequence);
      this.nonces.delete(sled);
    }
    if (witness.nonce !== undefined) this.nonces.set(sled, witness.nonce);
  }

  /**
   * Before a volume create (or a snapshot create) writes any record: raises the
   * catalogue's sequence and leaves it on every live sled (see the header). Refuses while
   * a sled witnessed a higher sequence than the catalogue holds, and when no live sled
   * took the mark. `what` names the create in errors and logs ("volume v", "snapshot s
   * of v").
   */
  async witnessCreate(what: string): Promise<void> {
    const { service, catalogue, storeId } = this.options;
    const sleds = this.liveSleds().map((sled) => sled.id);
    // The live sleds' witnesses first, then the catalogue's sequence: a create made before
    // the marks check has read a sled must not raise an old copy's sequence to its witness.
    await Promise.all(sleds.map((sled) => this.readWitness(sled)));
    const highest = highestWitnessOf(this.witnessed);
    const { sequence, nonce } = await catalogue.nextSequence((current) => {
      const view = { ...this.sequenceView(), catalogue: current.sequence };
      view.history = new Map(current.recent);
      if (highest <= current.sequence && sledsDivergedOf(view).length === 0) return undefined;
      this.sequence = current.sequence;
      this.history = new Map(current.recent);
      return new BallastError(
        ErrorCode.Unavailable,
        `cannot create ${what}: ${this.refusal() ?? `the sleds witnessed catalogue sequence ${highest}, this catalogue is at ${current.sequence}`}`,
      );
    });
    if (this.sequence === undefined || sequence > this.sequence) this.sequence = sequence;
    this.history.set(sequence, nonce);
    if (sleds.length === 0) {
      // Nothing on a sled can be deleted for being absent before a sled returns; the
      // witness is missing for this create (store-marks.ts, "Limits").
      service.logger.warn({ create: what, sequence }, "no live sled to witness a create");
      return;
    }
    const key = sequenceMarkKeyOf(storeId, sequence, nonce);
    const taken = await Promise.all(
      sleds.map(async (sled) => {
        const subject = subjects.node.build("sled", sled);
        try {
          await putBlob(service.bus, subject, key, storeMarkRequestDeadlineMs);
        } catch (error) {
          if (!(error instanceof BallastError && error.code === ErrorCode.AlreadyExists)) {
            service.logger.warn(
              { sled, create: what, sequence, error: (error as Error).message },
              "could not leave the catalogue's sequence on a sled",
            );
            return false;
          }
        }
        this.witness(sled, { sequence, nonce });
        await this.forgetOlderSequences(subject, sequence);
        return true;
      }),
    );
    if (!taken.includes(true)) {
      throw new BallastError(
        ErrorCode.Unavailable,
        `cannot create ${what}: no live sled (${sleds.join(", ")}) took the catalogue's sequence, which keeps it from reading as deleted should the control store be restored from an older copy; retry`,
      );
    }
  }

  /** Reads the sequence `sled` witnesses (a failure is logged: the sled is then no witness). */
  private async readWitness(sled: string): Promise<void> {
    const { service, storeId } = this.options;
    try {
      const listed = await service.bus.request(
        subjects.node.build("sled", sled),
        { type: "sled.blob.list.v1", prefix: sequenceMarkPrefixOf(storeId) },
        { deadlineMs: storeMarkRequestDeadlineMs },
      );
      this.witness(
        sled,
        witnessOf(
          listed.blobs.map((blob) => blob.key),
          storeId,
        ),
      );
    } catch (error) {
      service.logger.warn(
        { sled, error: (error as Error).message },
        "could not read the catalogue's sequence a sled witnessed",
      );
    }
  }

  /** Removes a sled's marks of lower sequences than `sequence` (best effort: they only pile up). */
  private async forgetOlderSequences(subject: string, sequence: number): Promise<void> {
    const { service, storeId } = this.options;
    const deadline = { deadlineMs: storeMarkRequestDeadlineMs };
    try {
      const listed = await service.bus.request(
        subject,
        { type: "sled.blob.list.v1", prefix: sequenceMarkPrefixOf(storeId) },
        deadline,
      );
      for (const blob of listed.blobs) {
        if (witnessedSequenceOf([blob.key], storeId) >= sequence) continue;
        await service.bus.request(
          subject,
          { type: "sled.blob.delete.v1", key: blob.key },
          deadline,
        );
      }
    } catch (error) {
      service.logger.debug(
        { subject, error: (error as Error).message },
        "could not remove older catalogue-sequence marks",
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
