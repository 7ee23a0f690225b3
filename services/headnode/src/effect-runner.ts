// Carries out a replica core's effects through its ports (ports.ts) and reports each
// completion back to the core, in the order replica/effects.ts lays down. The head node
// (partition-host.ts), the simulators and the scenario tests all run this one runner,
// with real adapters or with the seeded fakes, so that what the simulators check is what
// the head node does.
//
// It holds no state of the protocol: which checkpoint step comes next, what is released,
// which blob to delete, are the core's decisions. It only knows the sleds of the current
// configuration and whether its life has ended.
//
// Failure model: a journal append or truncate that fails cannot keep the promises the
// core already made, so it is fatal to the replica (the shell latches it failed: it
// acknowledges nothing more and stops serving the partition; other replicas of the
// node go on); a failed release only
// leaves notes on disk. A failed chunk write or checkpoint step is reported to the core,
// which retries later (a chunk write that failed because the sleds are full says so:
// the core then answers writes NoSpace rather than let them wait). Once closed (a crash, a shutdown, a dropped replica), completions
// are ignored: the core of that life is gone.
//
// Order (issue 14, QD1 latency). Effects run in the order the core gave them, except
// when the shell asks to defer the journal (`deferJournal`: the head node passes
// queueMicrotask): then the journal effects of a drain are handed over later, in their
// order, after every other effect of the drain. The bus writes a message to its socket
// in a microtask queued when the message is sent, so the notes of a write leave for
// the secondaries before the journal encodes them (25-40 µs a 4 KiB write here), and
// the secondary, whose journal write and acknowledgement are the longer path, starts
// that much earlier. effects.ts allows it: sends may overtake journal writes, and
// journal effects still run one after another in the order given. The simulators pass
// no hook: their fakes act in ticks, not microtasks, and draw their random delays in
// call order, so their schedules stay those of their seeds.

import { type BallastError, ErrorCode } from "@ballast/protocol";
import { RepeatLog } from "@ballast/runtime";
import type { ReplicaPorts } from "./ports.ts";
import type { Effect, Reply, RequestId } from "./replica/effects.ts";
import type { Replica } from "./replica/replica.ts";

/** The few log calls the runner makes (pino's logger fits; fakes pass a silent one). */
export interface RunnerLog {
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
  error(fields: object, message: string): void;
}

export const silentLog: RunnerLog = { info() {}, warn() {}, error() {} };

export interface RunnerHooks {
  /** Answers a client request (once). */
  reply(requestId: RequestId, reply: Reply): void;
  replyError(requestId: RequestId, error: BallastError): void;
  /** The journal failed: nothing the core acknowledges can be trusted any more. */
  fatal(what: string, error: Error): void;
  /**
   * A completion reaches the core: an input like any other. `report` carries it to the
   * core and carries out what that produced; the head node's shell calls it through its
   * gate (which catches up the core's held ticks and makes it due at the next node
   * tick) and, should it throw, fails that one replica. Without the hook it runs as it is.
   */
  completion?(report: () => void): void;
  /**
   * Hands the journal effects of a drain over later, after its other effects (see the
   * module header); without it every effect runs at once, in order.
   */
  deferJournal?(run: () => void): void;
  log?: RunnerLog;
  /** How often a failure that lasts is logged again (constants.logRepeatIntervalMs). */
  logRepeatIntervalMs?: number;
}

type JournalEffect = Extract<
  Effect,
  { type: "journal.append" | "journal.truncate" | "journal.release" }
>;

function isJournalEffect(effect: Effect): effect is JournalEffect {
  return (
    effect.type === "journal.append" ||
    effect.type === "journal.truncate" ||
    effect.type === "journal.release"
  );
}

export class EffectRunner {
  readonly core: Replica;
  /** The sleds chunks and checkpoint blobs go to (the current configuration's). */
  sleds: readonly string[] = [];
  private closedFlag = false;
  /** Journal effects drained and not yet handed to the journal, in order. */
  private readonly journalBacklog: JournalEffect[] = [];
  private journalScheduled = false;
  private readonly ports: ReplicaPorts;
  private readonly hooks: RunnerHooks;
  private readonly log: RunnerLog;
  /**
   * Failures the core retries on its own pace while their cause lasts (a chunk write to
   * full or dead sleds is retried every flushRetryTicks, half a second): each kind is
   * logged when it begins, then once per logRepeatIntervalMs with the count left out,
   * and once when it succeeds again. Keys: the effect's type.
   */
  private readonly repeats: RepeatLog;

  constructor(core: Replica, ports: ReplicaPorts, hooks: RunnerHooks) {
    this.core = core;
    this.ports = ports;
    this.hooks = hooks;
    this.log = hooks.log ?? silentLog;
    this.repeats = new RepeatLog(hooks.logRepeatIntervalMs);
  }

  /** A failure of kind `key` again: logged if it begins or its reminder is due. */
  private warnRepeated(key: string, fields: object, message: string): void {
    const due = this.repeats.due(key, this.ports.clock.nowMs());
    if (due === undefined) return;
    this.log.warn(due.first ? fields : { ...fields, repeatsSuppressed: due.suppressed }, message);
  }

  /** Kind `key` succeeded: its end is said once if it was failing. */
  private endRepeated(key: string, message: string): void {
    const ended = this.repeats.end(key);
    if (ended !== undefined) this.log.info({ repeatsSuppressed: ended.suppressed }, message);
  }

  /** Ends this life: later completions are ignored. */
  close(): void {
    this.closedFlag = true;
  }

  /** Carries out every effect the core has produced. */
  run(): void {
    if (this.closedFlag) return;
    const defer = this.hooks.deferJournal;
    if (defer === undefined) {
      for (const effect of this.core.drainEffects()) this.execute(effect);
      return;
    }
    for (const effect of this.core.drainEffects()) {
      if (isJournalEffect(effect)) this.journalBacklog.push(effect);
      else this.execute(effect);
    }
    if (this.journalBacklog.length === 0 || this.journalScheduled) return;
    this.journalScheduled = true;
    defer(this.runJournal);
  }

  /**
   * Hands the backlog to the journal, in order. Also once closed: every effect drained
   * is carried out, as before a close; only completions are ignored.
   */
  private readonly runJournal = (): void => {
    this.journalScheduled = false;
    while (this.journalBacklog.length > 0) this.execute(this.journalBacklog.shift()!);
  };

  /** Reports to the core if this life goes on, then carries out what that produced. */
  private report(action: () => void): void {
    if (this.closedFlag) return;
    const report = () => {
      action();
      this.run();
    };
    if (this.hooks.completion === undefined) report();
    else this.hooks.completion(report);
  }

  private execute(effect: Effect): void {
    const { journal, checkpoints, sleds, transport } = this.ports;
    switch (effect.type) {
      case "journal.append": {
        const last = effect.notes[effect.notes.length - 1];
        if (last === undefined) return;
        journal.append(effect.notes, (outcome) => {
          if (!outcome.ok) return this.fatalUnlessClosed("journal append failed", outcome.error);
          this.report(() => this.core.onJournalDurable(last.opNum, effect.generation));
        });
        return;
      }
      case "journal.truncate":
        journal.truncateAfter(effect.afterOpNum, (outcome) => {
          if (!outcome.ok) return this.fatalUnlessClosed("journal truncate failed", outcome.error);
          this.report(() => this.core.onJournalProgress());
        });
        return;
      case "journal.release":
        journal.releaseThrough(effect.throughOpNum, (outcome) => {
          if (!outcome.ok) {
            this.log.error({ error: String(outcome.error) }, "journal release failed");
            return;
          }
          this.report(() => this.core.onJournalProgress());
        });
        return;
      case "send":
        transport.send(effect.to, effect.message);
        return;
      case "reply":
        this.hooks.reply(effect.requestId, effect.reply);
        return;
      case "reply.error":
        this.hooks.replyError(effect.requestId, effect.error);
        return;
      case "chunk.write":
        sleds.writeChunk(effect, this.sleds, (outcome) => {
          if (outcome.ok) {
            this.endRepeated("chunk.write", "chunk writes to sleds succeed again");
            this.report(() => this.core.onChunkWritten(effect.chunkNumber, outcome.value));
            return;
          }
          this.warnRepeated(
            "chunk.write",
            { chunk: effect.sledChunkId, error: String(outcome.error) },
            "chunk write failed; will retry",
          );
          const noSpace = (outcome.error as { code?: unknown }).code === ErrorCode.NoSpace;
          this.report(() =>
            this.core.onChunkFailed(effect.chunkNumber, noSpace ? "no-space" : undefined),
          );
        });
        return;
      case "chunk.read":
        sleds.readWholeChunk(effect, (outcome) => {
          if (outcome.ok) {
            this.endRepeated("chunk.read", "chunks to compact are read again");
            this.report(() => this.core.onChunkRead(effect.chunkNumber, outcome.value));
            return;
          }
          this.warnRepeated(
            "chunk.read",
            { chunk: effect.sledChunkId, error: String(outcome.error) },
            "could not read a chunk to compact; will pick again later",
          );
          this.report(() => this.core.onChunkReadFailed(effect.chunkNumber));
        });
        return;
      case "checkpoint.write":
        checkpoints.write(effect.snapshot, (outcome) => {
          if (outcome.ok) {
            this.report(() => this.core.onCheckpointDurable(effect.opNum));
            return;
          }
          this.log.error({ error: String(outcome.error) }, "checkpoint write failed");
          this.report(() => this.core.onCheckpointFailed(effect.opNum));
        });
        return;
      case "checkpoint.refused":
        this.log.error(
          {
            opNum: effect.opNum,
            part: effect.error.part,
            bytes: effect.error.bytes,
            bytesMax: effect.error.bytesMax,
            error: effect.error.message,
          },
          "checkpoint refused: too large to store or read back; the journal is not released, and writes are refused NoSpace once it is half full",
        );
        return;
      case "checkpoint.store":
        this.storeCheckpoint(effect);
        return;
      case "checkpoint.record":
        transport.recordCheckpoint(effect.pointer, (outcome) => {
          if (outcome.ok) {
            this.log.info(
              { opNum: effect.opNum, key: effect.pointer.blobKey, sleds: effect.pointer.sleds },
              "checkpoint stored on sleds and recorded",
            );
            this.report(() => this.core.onCheckpointRecorded(effect.opNum, outcome.value.replaced));
            return;
          }
          this.log.warn(
            { opNum: effect.opNum, error: outcome.error.message },
            "could not record a checkpoint; will with the next",
          );
          this.report(() => this.core.onCheckpointFailed(effect.opNum));
        });
        return;
      case "blob.delete":
        sleds.deleteBlob(effect.blobKey, effect.sleds, (outcome) => {
          if (!outcome.ok)
            this.log.warn(
              { blob: effect.blobKey, error: String(outcome.error) },
              "could not delete a replaced checkpoint; it stays on its sleds",
            );
        });
        return;
      default: {
        const unreachable: never = effect;
        throw new Error(`unknown effect ${JSON.stringify(unreachable)}`);
      }
    }
  }

  private storeCheckpoint(effect: Extract<Effect, { type: "checkpoint.store" }>): void {
    const { opNum, blobKey, snapshot } = effect;
    if (this.sleds.length === 0) {
      // Nowhere to store it (a static assignment without sleds): nothing is released.
      queueMicrotask(() => this.report(() => this.core.onCheckpointFailed(opNum)));
      return;
    }
    this.ports.sleds.putBlob(blobKey, snapshot, this.sleds, opNum, (outcome) => {
      if (!outcome.ok) {
        this.warnRepeated(
          "checkpoint.store",
          { opNum, error: outcome.error.message },
          "could not store a checkpoint on sleds; will with the next",
        );
        this.report(() => this.core.onCheckpointFailed(opNum));
        return;
      }
      if (this.closedFlag) {
        // Closed meanwhile (maybe dropped with its volume): a pointer recorded now could
        // outlive the incarnation it belongs to.
        this.ports.sleds.deleteBlob(blobKey, outcome.value, () => {});
        return;
      }
      this.endRepeated("checkpoint.store", "checkpoints are stored on sleds again");
      this.report(() =>
        this.core.onCheckpointStored(opNum, {
          opNum,
          blobKey,
          sleds: outcome.value,
          bytes: snapshot.byteLength,
          createdAtMs: this.ports.clock.wallMs(),
        }),
      );
    });
  }

  private fatalUnlessClosed(what: string, error: Error): void {
    if (!this.closedFlag) this.hooks.fatal(what, error);
  }
}
