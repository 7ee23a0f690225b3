// An open Ballast volume as a block device. Each operation is checked (validation.ts),
// cut at partition boundaries and at the wire's per-request byte limit (layout.ts), and
// handed to the volume's scheduler as entries (scheduler.ts), which batches, sends and
// retries them. A read of several pieces allocates the caller's buffer up front and each
// entry's reply is copied into its part of it, so pieces can complete in any order and
// still reassemble in offset order; a read of one piece (most are) gets its bytes copied
// into a buffer shared by its batch (wire.ts) and answers a view of its part.
//
// An operation settles only when every one of its entries has settled — even when one
// failed early — so that a caller who reacts to the failure (say, by writing the range
// again) cannot be overtaken by a late piece of the failed operation. It rejects with
// the first failure in offset order.
//
// Flushing: `flush` is the durability barrier a block device owes its user, and needs no
// request: a mutation settles successfully only once its partition's primary has
// acknowledged it, which the primary does once every replica holds it in its journal
// on disk. So `flush` only waits for the mutations issued before it (on any caller of
// this Volume, which is why the NBD gateway shares one Volume per export) to settle.
// `flushToSleds` is the explicit, slower request to move data from the journals to
// sled chunks, for a caller that wants exactly that.
//
// Resizing: the size is the newest description's, not the one the volume was opened
// with. An operation that reaches past the known end first describes the volume again
// (`refreshSize`), so I/O past the old end works after a grow without reopening; past
// the newest end it is refused with OutOfRange. A shrink is learned at the next
// description (that refresh, a failover, or `refreshSize`; a shrink gives the partitions
// it cuts a new epoch, so the next request to one of them re-describes), and before it
// the partitions' primaries refuse I/O past the new end themselves (OutOfRange, with
// `pastVolumeEnd` in its details), whatever size this Volume still believes.
//
// Clones: a volume whose description names a parent snapshot reads through it. Each
// read asks its partitions for the ranges they never mapped, and fills those below the
// overlap from the parent snapshot (layering.ts), itself a read-only Volume (a clone of
// a clone reads through its own parent the same way). Writes, trims and write-zeroes go
// to the clone alone.
//
// Closing: `close()` refuses new operations at once (VolumeClosedError) and resolves once
// every operation already issued has settled; those keep retrying as usual meanwhile.
//
// A write's `data` is sent as views, not copies: the caller must not change it until
// the write settles (a retry re-sends the same views).

import { BallastError, ErrorCode } from "@ballast/protocol";
import { createEntry, type Entry, type RequestKind } from "./batch.ts";
import type { BlockDevice, OperationOptions } from "./block-device.ts";
import { VolumeClosedError } from "./errors.ts";
import { AttemptSequencer } from "./fence.ts";
import { fallThroughRanges } from "./layering.ts";
import { type Piece, splitRange } from "./layout.ts";
import type { ClientOptions } from "./options.ts";
import { RequestScheduler } from "./scheduler.ts";
import { checkRange, checkWriteData, describeOperation, isValidRange } from "./validation.ts";
import type { VolumeStateCache } from "./volume-state.ts";
import type { RequestBus } from "./wire.ts";

/** A volume opened by BallastClient.openVolume. */
export class Volume implements BlockDevice {
  readonly name: string;
  private readonly state: VolumeStateCache;
  private readonly scheduler: RequestScheduler;
  private readonly clock: ClientOptions["clock"];
  private readonly requestDataBytesMax: number;
  private operationsPending = 0;
  /** Writes, trims and write-zeroes issued and not yet settled, for `flush` to wait on. */
  private readonly mutationsInflight = new Set<Promise<void>>();
  private closed = false;
  private readonly idleWaiters: (() => void)[] = [];

  /** The snapshot id this volume reads (read-only), or undefined for the volume itself. */
  readonly snapshot: string | undefined;

  /** A clone's parent snapshot, read where the clone never mapped a byte. */
  private readonly parent: Volume | undefined;
  /** False once a reopened Volume took the parent over (it closes it then). */
  private ownsParent = true;
  /** A snapshot of a clone: the clone's overlap when it was taken. */
  private readonly snapshotOverlap: number | undefined;
  /** Numbers mutation attempts: the client's, shared by every Volume it opens (fence.ts). */
  private readonly sequencer: AttemptSequencer;

  /**
   * Use BallastClient.openVolume or openSnapshot; this constructor is the client's. With
   * `snapshot` (its id and name), every read is of that snapshot and every mutation is
   * refused; the device is then named `VOLUME@NAME`, as its NBD export is. `parent`:
   * a clone's parent snapshot, opened read-only (the Volume closes it when closed).
   * `sequencer`: the client's (a Volume of its own draws a session of its own).
   */
  constructor(
    bus: RequestBus,
    state: VolumeStateCache,
    options: Readonly<ClientOptions>,
    snapshot?: { id: string; name: string; overlap?: number },
    parent?: Volume,
    sequencer: AttemptSequencer = new AttemptSequencer(),
  ) {
    this.parent = parent;
    this.sequencer = sequencer;
    this.snapshotOverlap = snapshot?.overlap;
    this.name = snapshot === undefined ? state.name : `${state.name}@${snapshot.name}`;
    this.state = state;
    this.snapshot = snapshot?.id;
    this.scheduler = new RequestScheduler(bus, state, options, sequencer, snapshot?.id);
    this.clock = options.clock;
    this.requestDataBytesMax = options.requestDataBytesMax;
  }

  /** The volume's size, as its newest description says (a resize changes it). */
  get sizeBytes(): number {
    return this.state.current.state.sizeBytes;
  }

  /**
   * Describes the volume again, so that `sizeBytes` is the coordinator's size as of the
   * call (a resize that answered before the call is seen); rejects as a describe does
   * (NotFound once the volume was deleted). A describe already in flight is waited for
   * and followed by another, not joined: it may have read the size before the resize.
   */
  async refreshSize(): Promise<void> {
    await this.state.refreshAsOfNow();
  }

  /** A snapshot is read-only. */
  get readOnly(): boolean {
    return this.snapshot !== undefined;
  }

  /** The volume's incarnation, when its description names one. */
  get id(): string | undefined {
    return this.state.current.state.id;
  }

  /** The same volume description, read as snapshot `snapshot` (the client's). */
  reopenAsSnapshot(
    bus: RequestBus,
    options: Readonly<ClientOptions>,
    snapshot: { id: string; name: string; overlap?: number },
  ): Volume {
    this.ownsParent = false;
    return new Volume(bus, this.state, options, snapshot, this.parent, this.sequencer);
  }

  /** The parent snapshot a clone reads through, as its newest description names it. */
  get parentSnapshot(): { volume: string; snapshot: string; overlap: number } | undefined {
    const parent = this.state.current.state.parent;
    if (parent === undefined) return undefined;
    return { volume: parent.volume, snapshot: parent.snapshot, overlap: parent.overlap };
  }

  /** The number of partitions the volume is cut into. */
  get partitionCount(): number {
    return this.state.current.state.partitions.length;
  }

  /**
   * True once the volume was found deleted (its operations fail with NotFound): a name
   * re-created since is another volume, which `openVolume` opens anew.
   */
  get isDeleted(): boolean {
    return this.state.gone;
  }

  /** True once `close()` was called. */
  get isClosed(): boolean {
    return this.closed;
  }

  async read(offset: number, length: number, options?: OperationOptions): Promise<Uint8Array> {
    if (this.reachesPastEnd(offset, length)) await this.learnSize();
    this.begin("read", { offset, length });
    try {
      const single = this.parent === undefined ? this.singlePiece(offset, length) : undefined;
      if (single !== undefined) return await this.readPiece(single, options?.signal);
      const bytes = new Uint8Array(length);
      await this.readInto(offset, bytes, options?.signal);
      return bytes;
    } finally {
      this.end();
    }
  }

  /**
   * The one piece a read of `length` bytes at `offset` is, when it is one (most reads:
   * inside one partition and one request's data); undefined otherwise.
   */
  private singlePiece(offset: number, length: number): Piece | undefined {
    if (length === 0) return undefined;
    const pieces = splitRange(
      this.state.current.state.partitions,
      offset,
      length,
      this.requestDataBytesMax,
    );
    return pieces.length === 1 ? pieces[0] : undefined;
  }

  /**
   * Reads one piece with no buffer made for it up front: the read answers a view of
   * its part of the reply, when a link decoder filled the reply's buffer for it alone,
   * or else of a copy shared by the reads of its batch (wire.ts).
   */
  private async readPiece(piece: Piece, signal: AbortSignal | undefined): Promise<Uint8Array> {
    const { entry, settled } = createEntry({
      kind: "read",
      offset: piece.offset,
      length: piece.length,
      issuedAtMs: this.clock.nowMs(),
      signal,
    });
    this.scheduler.submit(piece.index, entry);
    await settled;
    const received = entry.received;
    if (received === undefined || received.byteLength !== piece.length) {
      throw new Error(
        `a read of ${piece.length} bytes at offset ${piece.offset} settled without its bytes`,
      );
    }
    return received;
  }

  /**
   * Reads `bytes.byteLength` bytes at `offset` into `bytes`; for a clone, the ranges its
   * partitions never mapped are then read from the parent snapshot, below the overlap.
   */
  private async readInto(offset: number, bytes: Uint8Array, signal?: AbortSignal): Promise<void> {
    const length = bytes.byteLength;
    const parent = this.parent;
    if (parent === undefined) {
      await this.perform(
        "read",
        offset,
        length,
        this.requestDataBytesMax,
        bytes,
        undefined,
        signal,
      );
      return;
    }
    const entries: Entry[] = [];
    await this.perform("read", offset, length, this.requestDataBytesMax, bytes, entries, signal);
    const overlap = this.snapshotOverlap ?? this.state.current.state.parent?.overlap ?? 0;
    const ranges = fallThroughRanges(
      entries.flatMap((entry) => entry.unmapped ?? []),
      overlap,
    );
    await Promise.all(
      ranges.map((range) =>
        parent.readForClone(
          range.offset,
          bytes.subarray(range.offset - offset, range.offset - offset + range.length),
        ),
      ),
    );
  }

  /**
   * A read on behalf of a clone of this snapshot: the range is below the clone's overlap,
   * which the snapshot's partitions cover, so it is not checked against the volume's
   * current size (a parent shrunk since still has the snapshot's partitions).
   */
  private async readForClone(offset: number, bytes: Uint8Array): Promise<void> {
    this.begin("read", undefined, undefined, false, { offset, length: bytes.byteLength });
    try {
      await this.readInto(offset, bytes);
    } finally {
      this.end();
    }
  }

  async write(offset: number, data: Uint8Array, options?: OperationOptions): Promise<void> {
    const length = data instanceof Uint8Array ? data.byteLength : 0;
    if (this.reachesPastEnd(offset, length)) await this.learnSize();
    this.begin("write", { offset, length }, { data }, true);
    try {
      await this.mutation(
        this.perform(
          "write",
          offset,
          length,
          this.requestDataBytesMax,
          data,
          undefined,
          options?.signal,
        ),
      );
    } finally {
      this.end();
    }
  }

  async trim(offset: number, length: number, options?: OperationOptions): Promise<void> {
    if (this.reachesPastEnd(offset, length)) await this.learnSize();
    this.begin("trim", { offset, length }, undefined, true);
    try {
      // Ranges carry no data, so only partition boundaries cut them.
      await this.mutation(
        this.perform("trim", offset, length, length, undefined, undefined, options?.signal),
      );
    } finally {
      this.end();
    }
  }

  async writeZeroes(offset: number, length: number, options?: OperationOptions): Promise<void> {
    if (this.reachesPastEnd(offset, length)) await this.learnSize();
    this.begin("write zeroes over", { offset, length }, undefined, true);
    try {
      await this.mutation(
        this.perform("write-zeroes", offset, length, length, undefined, undefined, options?.signal),
      );
    } finally {
      this.end();
    }
  }

  /**
   * The durability barrier: resolves once every write, trim and write-zeroes issued on
   * this volume before the call has settled, and sends nothing. A mutation that
   * succeeded was acknowledged by its partition's primary only once every replica held
   * it durably in its journal, so there is nothing further to wait for; a mutation that
   * failed told its own caller so, and does not fail the flush.
   *
   * Only what was issued before is waited for: a flush never waits behind operations
   * issued after it, so a steady stream of writes cannot starve it.
   */
  async flush(): Promise<void> {
    this.begin("flush");
    try {
      await Promise.allSettled([...this.mutationsInflight]);
    } finally {
      this.end();
    }
  }

  /**
   * Asks the primary of each partition with mutations settled since its last such
   * request to flush them to sleds (volume.flush.v1), and resolves once every one has
   * answered. Slower than `flush` and not needed for durability; it fails when the
   * head nodes cannot flush (fewer live sleds than a chunk needs copies). What exactly
   * an answer promises is the head node's contract for volume.flush.v1.
   */
  async flushToSleds(): Promise<void> {
    this.begin("flush to sleds");
    try {
      const issuedAtMs = this.clock.nowMs();
      await settleAll(
        this.scheduler.partitionsToFlush().map((index) => {
          const { entry, settled } = createEntry({
            kind: "flush",
            offset: 0,
            length: 0,
            issuedAtMs,
          });
          this.scheduler.submit(index, entry);
          return settled;
        }),
      );
    } finally {
      this.end();
    }
  }

  /** Refuses new operations and resolves once every operation issued before has settled. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.operationsPending > 0) {
      await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    }
    if (this.parent !== undefined && this.ownsParent) await this.parent.close();
  }

  /**
   * Describes the volume again before an operation that reaches past the known end (the
   * volume may have grown); `begin` then checks the range against the newest size. A
   * describe that fails leaves the size as it was, and the range is refused as usual.
   * Operations inside the known end never wait for this: they are submitted in the
   * caller's turn, which is what lets the scheduler batch them.
   */
  private async learnSize(): Promise<void> {
    await this.refreshSize().catch(() => undefined);
  }

  /** True for a well-formed range past the known end of an open volume. */
  private reachesPastEnd(offset: number, length: number): boolean {
    return (
      !this.closed &&
      Number.isSafeInteger(offset) &&
      Number.isSafeInteger(length) &&
      offset + length > this.sizeBytes
    );
  }

  /**
   * Checks the operation (closed volume first, then the write's data, then the range)
   * and counts it as pending; throws if it must not start. `kind` names the operation in
   * errors, with the range `named` (the checked range by default); the text is made only
   * for an error, as every NBD request passes here.
   */
  private begin(
    kind: string,
    range?: { offset: number; length: number },
    write?: { data: unknown },
    mutates = false,
    named: { offset: number; length: number } | undefined = range,
  ): void {
    if (this.closed) throw new VolumeClosedError(this.name, operationText(kind, named));
    if (mutates && this.snapshot !== undefined) {
      throw new BallastError(
        ErrorCode.InvalidArgument,
        `cannot ${operationText(kind, named)}: ${this.name} is open as snapshot ${this.snapshot}, which is read-only`,
        { details: { volume: this.name, snapshot: this.snapshot } },
      );
    }
    if (range !== undefined) {
      if (write !== undefined) checkWriteData(this, range.offset, write.data);
      if (!isValidRange(this, range.offset, range.length)) {
        checkRange(this, operationText(kind, named), range.offset, range.length);
      }
    }
    this.operationsPending += 1;
  }

  private end(): void {
    this.operationsPending -= 1;
    if (this.operationsPending === 0) {
      for (const resolve of this.idleWaiters.splice(0)) resolve();
    }
  }

  /** Counts `settled` in flight until it settles, for `flush`; returns it. */
  private mutation(settled: Promise<void>): Promise<void> {
    this.mutationsInflight.add(settled);
    // Inline, not a named const: tsx keeps function names at run time (a defineProperty
    // per closure made), and this runs for every write.
    settled.then(
      () => this.mutationsInflight.delete(settled),
      () => this.mutationsInflight.delete(settled),
    );
    return settled;
  }

  /** Cuts the range into entries, submits them, and waits for every one to settle. */
  private perform(
    kind: RequestKind,
    offset: number,
    length: number,
    pieceBytesMax: number,
    buffer?: Uint8Array,
    collect?: Entry[],
    signal?: AbortSignal,
  ): Promise<void> {
    const issuedAtMs = this.clock.nowMs();
    const pieces: Piece[] = splitRange(
      this.state.current.state.partitions,
      offset,
      length,
      pieceBytesMax,
    );
    // Most operations are one piece (one partition, one request's data): its promise is
    // what settleAll would make of it, without the wait for a list of one.
    if (pieces.length === 1) {
      return this.submitPiece(kind, offset, pieces[0]!, issuedAtMs, buffer, collect, signal);
    }
    return settleAll(
      pieces.map((piece) =>
        this.submitPiece(kind, offset, piece, issuedAtMs, buffer, collect, signal),
      ),
    );
  }

  /** Queues the entry of one piece of an operation that starts at `offset`. */
  private submitPiece(
    kind: RequestKind,
    offset: number,
    piece: Piece,
    issuedAtMs: number,
    buffer: Uint8Array | undefined,
    collect: Entry[] | undefined,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const start = piece.offset - offset;
    const { entry, settled } = createEntry({
      kind,
      offset: piece.offset,
      length: piece.length,
      issuedAtMs,
      buffer: buffer?.subarray(start, start + piece.length),
      signal,
    });
    collect?.push(entry);
    this.scheduler.submit(piece.index, entry);
    return settled;
  }
}

/** "write 4096 bytes at offset 8192", or the kind alone for an operation without a range. */
function operationText(kind: string, named: { offset: number; length: number } | undefined) {
  return named === undefined ? kind : describeOperation(kind, named.offset, named.length);
}

/** Waits for every promise, then rejects with the first failure in list order, if any. */
async function settleAll(promises: readonly Promise<void>[]): Promise<void> {
  const outcomes = await Promise.allSettled(promises);
  for (const outcome of outcomes) {
    if (outcome.status === "rejected") throw outcome.reason;
  }
}
