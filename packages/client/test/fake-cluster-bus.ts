// FakeClusterBus: a whole Ballast cluster as the client sees it through the bus, in one
// object. It answers volume.describe.v1 on the coordinator's subject and serves volume.*
// requests on each partition's subject from an in-memory byte array per partition,
// refusing what a head node refuses (wrong epoch, another incarnation of the volume,
// unaligned or out-of-partition ranges, too many bytes, malformed messages), so that a
// client bug shows up as a refusal rather than as silently accepted bytes.
//
// Knobs: fail the next N requests to a partition with a code (before or after applying
// them: "after" is a lost reply, so a retry applies the mutation twice), each failure
// perhaps taking time on the client's clock (a request that waits out its deadline at
// a frozen primary); fail only its reads (a primary without a read lease); refuse any
// request with an entry at a given offset; fail describes (planned failures queue up);
// fail a partition over to a new epoch and primary (requests with the old epoch get
// WrongEpoch, and describes report the new epoch at once); list a partition twice in
// describes, as the coordinator's catalogue listing does when the partition's record
// changes during it (the copy before the last failover, and the current one);
// re-create or delete a volume; delay requests; hold all requests until resumed, or
// serve them and hold their replies (a reply in transit while the cluster changes).
// Every request is recorded in `sent`, in the order the client sent it.
//
// Timing: a request is served when it arrives, after its delay and any hold of requests,
// and is answered at once unless its reply is held; requests held together are served
// in the order they were sent.

import {
  BallastError,
  ErrorCode,
  limits,
  type MessageOf,
  messageSchemas,
  type RequestMessage,
  type RequestType,
  type ResultOf,
  subjects,
} from "@ballast/protocol";
import type { RequestOptions } from "@ballast/runtime";
import type { RequestBus } from "../src/index.ts";

export interface FakeVolumeSpec {
  name: string;
  /** The incarnation describes report; `${name}-1` unless given. */
  id?: string;
  sizeBytes: number;
  /** Every partition has this many bytes, except perhaps a shorter last one. */
  partitionBytes: number;
  replicaCount?: 2 | 3;
}

export interface RecordedRequest<T extends RequestType = RequestType> {
  readonly subject: string;
  readonly message: MessageOf<T>;
  readonly deadlineMs: number | undefined;
}

interface PlannedFailure {
  code: ErrorCode;
  remaining: number;
  afterApplying: boolean;
  /** Only requests of these types fail (and count); all when undefined. */
  types?: readonly RequestType[];
  /** How long each failure takes on the client's clock (see `elapse`). */
  takesMs: number;
}

interface FakePartition {
  partition: number;
  partitionStart: number;
  partitionBytes: number;
  epoch: number;
  primary: string;
  secondaries: string[];
  /** The epoch and primary before the last failover (for stale copies in describes). */
  previous: { epoch: number; primary: string; secondaries: string[] } | undefined;
  /** How describes list the partition twice: the stale copy before or after the current. */
  listedTwice: "stale-first" | "stale-last" | undefined;
  bytes: Uint8Array;
  lastOpNum: number;
  flushedOpNum: number;
  failures: PlannedFailure[];
}

interface FakeVolume {
  name: string;
  id: string;
  sizeBytes: number;
  replicaCount: 2 | 3;
  partitionBytes: number;
  partitions: FakePartition[];
  /** Entry offsets that make any request carrying them fail, with the code to fail with. */
  refusals: Map<number, ErrorCode>;
}

type VolumeMessage = MessageOf<
  "volume.write.v1" | "volume.read.v1" | "volume.trim.v1" | "volume.write-zeroes.v1"
>;

const nodeIds = ["headnode-1", "headnode-2", "headnode-3", "headnode-4"];

export class FakeClusterBus implements RequestBus {
  /** Every request the client sent, in order. */
  readonly sent: RecordedRequest[] = [];
  /** How long each request takes to reach its server, on real timers. */
  requestDelayMs = 0;
  /**
   * Moves the client's clock forward; a planned failure that takes time calls it. A test
   * on a virtual clock sets it, so that the retry budget sees the time a real failure
   * would have cost.
   */
  elapse: (ms: number) => void = () => undefined;
  private readonly volumes = new Map<string, FakeVolume>();
  private readonly describeFailures: PlannedFailure[] = [];
  private hold:
    | {
        released: Promise<void>;
        release: () => void;
        only: (subject: string, message: RequestMessage) => boolean;
        /** "request": held before it is served; "reply": served, and its reply held. */
        what: "request" | "reply";
      }
    | undefined;
  private heldCount = 0;

  constructor(specs: readonly FakeVolumeSpec[]) {
    for (const spec of specs) this.createVolume(spec);
  }

  createVolume(spec: FakeVolumeSpec): void {
    const partitions: FakePartition[] = [];
    for (let start = 0, partition = 0; start < spec.sizeBytes; partition += 1) {
      const partitionBytes = Math.min(spec.partitionBytes, spec.sizeBytes - start);
      const replicaCount = spec.replicaCount ?? 2;
      const members = Array.from(
        { length: replicaCount },
        (_, member) => nodeIds[(partition + member) % nodeIds.length]!,
      );
      partitions.push({
        partition,
        partitionStart: start,
        partitionBytes,
        epoch: 1,
        primary: members[0]!,
        secondaries: members.slice(1),
        previous: undefined,
        listedTwice: undefined,
        bytes: new Uint8Array(partitionBytes),
        lastOpNum: 0,
        flushedOpNum: 0,
        failures: [],
      });
      start += partitionBytes;
    }
    this.volumes.set(spec.name, {
      name: spec.name,
      id: spec.id ?? `${spec.name}-1`,
      sizeBytes: spec.sizeBytes,
      replicaCount: spec.replicaCount ?? 2,
      partitionBytes: spec.partitionBytes,
      partitions,
      refusals: new Map(),
    });
  }

  /**
   * Resizes the volume as the coordinator does: a grow past the last partition appends
   * full partitions after it, a shrink only lowers the size; data stays.
   */
  resizeVolume(name: string, sizeBytes: number): void {
    const volume = this.volumes.get(name)!;
    const last = volume.partitions.at(-1)!;
    for (
      let start = last.partitionStart + last.partitionBytes, partition = last.partition + 1;
      start < sizeBytes;
      partition += 1, start += volume.partitionBytes
    ) {
      volume.partitions.push({
        ...last,
        partition,
        partitionStart: start,
        partitionBytes: volume.partitionBytes,
        bytes: new Uint8Array(volume.partitionBytes),
        lastOpNum: 0,
        flushedOpNum: 0,
        failures: [],
      });
    }
    volume.sizeBytes = sizeBytes;
  }

  /** Removes the volume: describes answer NotFound, its subjects have no responders. */
  deleteVolume(name: string): void {
    this.volumes.delete(name);
  }

  // The bus.

  request<T extends RequestType>(
    subject: string,
    message: MessageOf<T>,
    options: RequestOptions = {},
  ): Promise<ResultOf<T>> {
    this.sent.push({ subject, message, deadlineMs: options.deadlineMs } as RecordedRequest);
    return this.deliver(subject, message as RequestMessage, options.deadlineMs) as Promise<
      ResultOf<T>
    >;
  }

  // Knobs.

  /**
   * The next `count` requests to the partition (of `types`, if given) fail with `code`,
   * each taking `takesMs` of the client's time. Plans queue up: the next starts when
   * this one is used up.
   */
  failNext(
    volume: string,
    partition: number,
    count: number,
    code: ErrorCode,
    options: { afterApplying?: boolean; types?: readonly RequestType[]; takesMs?: number } = {},
  ): void {
    this.partitionOf(volume, partition).failures.push({
      code,
      remaining: count,
      afterApplying: options.afterApplying ?? false,
      ...(options.types === undefined ? {} : { types: options.types }),
      takesMs: options.takesMs ?? 0,
    });
  }

  /** The next `count` describes (after those already planned) fail with `code`. */
  failDescribes(count: number, code: ErrorCode, options: { takesMs?: number } = {}): void {
    this.describeFailures.push({
      code,
      remaining: count,
      afterApplying: false,
      takesMs: options.takesMs ?? 0,
    });
  }

  /**
   * Describes list the partition twice from now on: its copy from before the last
   * failover (which must have happened) and its current one, in the order given.
   */
  listTwiceInDescribes(
    volume: string,
    partition: number,
    order: "stale-first" | "stale-last" = "stale-last",
  ): void {
    const state = this.partitionOf(volume, partition);
    if (state.previous === undefined) {
      throw new Error(`partition ${partition} of ${volume} has not failed over yet`);
    }
    state.listedTwice = order;
  }

  /** Any request with an entry starting at `offset` fails with `code`, as a whole. */
  refuseEntriesAt(volume: string, offset: number, code: ErrorCode): void {
    this.volumeOf(volume).refusals.set(offset, code);
  }

  /** Moves the partition to the next epoch with its first secondary as primary. */
  failover(volume: string, partition: number): { epoch: number; primary: string } {
    const state = this.partitionOf(volume, partition);
    state.previous = {
      epoch: state.epoch,
      primary: state.primary,
      secondaries: [...state.secondaries],
    };
    const [next, ...rest] = state.secondaries;
    state.secondaries = [...rest, state.primary];
    state.primary = next!;
    state.epoch += 1;
    return { epoch: state.epoch, primary: state.primary };
  }

  /**
   * Holds requests on their way until `resume()`: every request, or those for which
   * `only(subject, message)` is true.
   */
  pause(only: (subject: string, message: RequestMessage) => boolean = () => true): void {
    this.holdUntilResumed(only, "request");
  }

  /**
   * Serves requests as they arrive but holds their replies until `resume()`: every
   * request, or those for which `only(subject, message)` is true. A describe held so
   * answers with the catalogue as it was when it arrived, however it changes meanwhile.
   */
  holdReplies(only: (subject: string, message: RequestMessage) => boolean = () => true): void {
    this.holdUntilResumed(only, "reply");
  }

  private holdUntilResumed(
    only: (subject: string, message: RequestMessage) => boolean,
    what: "request" | "reply",
  ): void {
    if (this.hold !== undefined) throw new Error("the fake cluster is paused already");
    let release!: () => void;
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    this.hold = { released, release, only, what };
  }

  resume(): void {
    const hold = this.hold;
    this.hold = undefined;
    hold?.release();
  }

  // Inspection.

  /** Requests (or replies) held by `pause()` or `holdReplies()` now. */
  get held(): number {
    return this.heldCount;
  }

  requestsOf<T extends RequestType>(type: T): RecordedRequest<T>[] {
    return this.sent.filter(
      (request) => request.message.type === type,
    ) as unknown as RecordedRequest<T>[];
  }

  /** Planned failures of requests to the partition not yet met. */
  failuresPlanned(volume: string, partition: number): number {
    return this.partitionOf(volume, partition).failures.reduce(
      (sum, failure) => sum + failure.remaining,
      0,
    );
  }

  /** Planned describe failures not yet met. */
  get describeFailuresPlanned(): number {
    return this.describeFailures.reduce((sum, failure) => sum + failure.remaining, 0);
  }

  get describeCount(): number {
    return this.requestsOf("volume.describe.v1").length;
  }

  /** A copy of the volume's bytes. */
  contents(volume: string): Uint8Array {
    const state = this.volumeOf(volume);
    const bytes = new Uint8Array(state.sizeBytes);
    for (const partition of state.partitions) bytes.set(partition.bytes, partition.partitionStart);
    return bytes;
  }

  epochOf(volume: string, partition: number): number {
    return this.partitionOf(volume, partition).epoch;
  }

  flushedOpNumOf(volume: string, partition: number): number {
    return this.partitionOf(volume, partition).flushedOpNum;
  }

  // Serving.

  private async deliver(
    subject: string,
    message: RequestMessage,
    deadlineMs: number | undefined,
  ): Promise<unknown> {
    if (this.requestDelayMs > 0) {
      if (deadlineMs !== undefined && this.requestDelayMs >= deadlineMs) {
        await sleep(deadlineMs);
        throw new BallastError(
          ErrorCode.Timeout,
          `no reply on ${subject} within the deadline of ${deadlineMs} ms`,
        );
      }
      await sleep(this.requestDelayMs);
    }
    while (this.hold?.what === "request" && this.hold.only(subject, message)) {
      this.heldCount += 1;
      await this.hold.released;
      this.heldCount -= 1;
    }
    const hold = this.hold;
    if (hold?.what !== "reply" || !hold.only(subject, message)) return this.serve(subject, message);
    let outcome: { value: unknown } | { error: unknown };
    try {
      outcome = { value: this.serve(subject, message) };
    } catch (error) {
      outcome = { error };
    }
    this.heldCount += 1;
    await hold.released;
    this.heldCount -= 1;
    if ("error" in outcome) throw outcome.error;
    return outcome.value;
  }

  private serve(subject: string, message: RequestMessage): unknown {
    const schema = messageSchemas[message.type] as {
      safeParse(value: unknown): { success: boolean; error?: { message: string } };
    };
    const parsed = schema.safeParse(message);
    if (!parsed.success) {
      throw new BallastError(
        ErrorCode.InvalidMessage,
        `fake refused ${message.type}: ${parsed.error?.message}`,
      );
    }
    switch (message.type) {
      case "volume.describe.v1":
        return this.onDescribe(subject, message);
      case "volume.write.v1":
      case "volume.read.v1":
      case "volume.trim.v1":
      case "volume.write-zeroes.v1":
        return this.onVolumeMessage(subject, message);
      case "volume.flush.v1":
        return this.onFlush(subject, message);
      default:
        throw new BallastError(
          ErrorCode.UnexpectedMessageType,
          `fake cluster does not serve ${message.type}`,
        );
    }
  }

  private onDescribe(subject: string, message: MessageOf<"volume.describe.v1">): unknown {
    if (subject !== subjects.coordinator.build()) {
      throw new BallastError(ErrorCode.Unavailable, `no service is listening on ${subject}`);
    }
    const failure = this.describeFailures[0];
    if (failure !== undefined) {
      failure.remaining -= 1;
      if (failure.remaining <= 0) this.describeFailures.shift();
      this.elapse(failure.takesMs);
      throw new BallastError(failure.code, `fake describe failure (${failure.code})`);
    }
    const volume = this.volumes.get(message.name);
    if (volume === undefined) {
      throw new BallastError(ErrorCode.NotFound, `volume ${message.name} does not exist`);
    }
    // Pages as the coordinator does: at most describePartitionsMax from partitionsFrom.
    const from = message.partitionsFrom ?? 0;
    const page = volume.partitions
      .filter((partition) => partition.partition >= from)
      .slice(0, limits.describePartitionsMax);
    const last = page.at(-1);
    const more = last !== undefined && last.partition + 1 < volume.partitions.length;
    return {
      name: volume.name,
      id: volume.id,
      sizeBytes: volume.sizeBytes,
      replicaCount: volume.replicaCount,
      partitionBytes: volume.partitionBytes,
      createdAtMs: 0,
      partitionCount: volume.partitions.length,
      ...(more ? { partitionsNext: last.partition + 1 } : {}),
      partitions: page.flatMap((partition) => {
        const current = describePartition(partition, partition);
        if (partition.listedTwice === undefined || partition.previous === undefined) {
          return [current];
        }
        const stale = describePartition(partition, partition.previous);
        return partition.listedTwice === "stale-first" ? [stale, current] : [current, stale];
      }),
    };
  }

  /**
   * Finds the addressed partition, applies planned failures before it, checks the
   * incarnation and the epoch.
   */
  private admit(
    subject: string,
    message: {
      type: RequestType;
      volume: string;
      partition: number;
      epoch: number;
      volumeId?: string | undefined;
    },
  ): { volume: FakeVolume; partition: FakePartition; failAfter: PlannedFailure | undefined } {
    const volume = this.volumes.get(message.volume);
    const partition = volume?.partitions[message.partition];
    if (volume === undefined || partition === undefined) {
      throw new BallastError(ErrorCode.Unavailable, `no service is listening on ${subject}`);
    }
    if (subject !== subjects.volume.build(message.volume, message.partition)) {
      throw new BallastError(
        ErrorCode.InvalidArgument,
        `message for ${message.volume}/${message.partition} sent to ${subject}`,
      );
    }
    let failAfter: PlannedFailure | undefined;
    const failure = partition.failures[0];
    if (failure !== undefined && (failure.types?.includes(message.type) ?? true)) {
      failure.remaining -= 1;
      if (failure.remaining <= 0) partition.failures.shift();
      this.elapse(failure.takesMs);
      if (!failure.afterApplying) {
        throw new BallastError(failure.code, `fake failure (${failure.code}) on ${subject}`);
      }
      failAfter = failure;
    }
    if (message.volumeId !== undefined && message.volumeId !== volume.id) {
      // As a head node answers a request for another incarnation of the name: the client
      // describes again, and learns that its volume was deleted.
      throw new BallastError(
        ErrorCode.WrongEpoch,
        `${message.volume}/${message.partition} here is incarnation ${volume.id}, not ${message.volumeId}`,
        {
          details: {
            epoch: message.epoch,
            volumeId: message.volumeId,
            currentVolumeId: volume.id,
          },
        },
      );
    }
    if (message.epoch !== partition.epoch) {
      throw new BallastError(
        ErrorCode.WrongEpoch,
        `request for epoch ${message.epoch}, but ${message.volume}/${message.partition} is in epoch ${partition.epoch}`,
        {
          details: {
            epoch: message.epoch,
            currentEpoch: partition.epoch,
            primary: partition.primary,
          },
        },
      );
    }
    return { volume, partition, failAfter };
  }

  private onVolumeMessage(subject: string, message: VolumeMessage): unknown {
    const { volume, partition, failAfter } = this.admit(subject, message);
    const ranges =
      message.type === "volume.write.v1"
        ? message.writes.map((write) => ({ offset: write.offset, length: write.data.byteLength }))
        : message.type === "volume.read.v1"
          ? message.reads
          : message.ranges;
    let dataBytes = 0;
    for (const range of ranges) {
      const refusal = volume.refusals.get(range.offset);
      if (refusal !== undefined) {
        throw new BallastError(refusal, `fake refusal (${refusal}) of offset ${range.offset}`);
      }
      checkRange(partition, range.offset, range.length);
      dataBytes += range.length;
    }
    const carriesData = message.type === "volume.write.v1" || message.type === "volume.read.v1";
    if (carriesData && dataBytes > limits.requestDataBytesMax) {
      throw new BallastError(
        ErrorCode.PayloadTooLarge,
        `a request may carry at most ${limits.requestDataBytesMax} bytes; it carries ${dataBytes}`,
      );
    }
    let result: unknown;
    const at = (offset: number): number => offset - partition.partitionStart;
    switch (message.type) {
      case "volume.read.v1":
        result = {
          data: message.reads.map((read) =>
            partition.bytes.slice(at(read.offset), at(read.offset) + read.length),
          ),
        };
        break;
      case "volume.write.v1":
        for (const write of message.writes) partition.bytes.set(write.data, at(write.offset));
        result = this.committed(partition, message.writes.length);
        break;
      case "volume.trim.v1":
      case "volume.write-zeroes.v1":
        for (const range of message.ranges) {
          partition.bytes.fill(0, at(range.offset), at(range.offset) + range.length);
        }
        result = this.committed(partition, message.ranges.length);
        break;
    }
    if (failAfter !== undefined) {
      throw new BallastError(failAfter.code, `fake lost reply (${failAfter.code}) on ${subject}`);
    }
    return result;
  }

  private onFlush(subject: string, message: MessageOf<"volume.flush.v1">): unknown {
    const { partition, failAfter } = this.admit(subject, message);
    partition.flushedOpNum = partition.lastOpNum;
    if (failAfter !== undefined) {
      throw new BallastError(failAfter.code, `fake lost reply (${failAfter.code}) on ${subject}`);
    }
    return { flushedOpNum: partition.flushedOpNum };
  }

  private committed(partition: FakePartition, count: number) {
    const opNumFirst = partition.lastOpNum + 1;
    partition.lastOpNum += count;
    return { opNumFirst, opNumLast: partition.lastOpNum };
  }

  private volumeOf(name: string): FakeVolume {
    const volume = this.volumes.get(name);
    if (volume === undefined) throw new Error(`the fake cluster has no volume ${name}`);
    return volume;
  }

  private partitionOf(name: string, partition: number): FakePartition {
    const state = this.volumeOf(name).partitions[partition];
    if (state === undefined) throw new Error(`volume ${name} has no partition ${partition}`);
    return state;
  }
}

/** A partition as describes list it, with the epoch and members of `assignment`. */
function describePartition(
  partition: FakePartition,
  assignment: { epoch: number; primary: string; secondaries: string[] },
) {
  return {
    partition: partition.partition,
    partitionStart: partition.partitionStart,
    partitionBytes: partition.partitionBytes,
    epoch: assignment.epoch,
    primary: assignment.primary,
    secondaries: [...assignment.secondaries],
    inSync: [assignment.primary, ...assignment.secondaries],
    learners: [],
    rebuilds: [],
    checkpoints: [],
  };
}

function checkRange(partition: FakePartition, offset: number, length: number): void {
  if (offset % limits.sectorBytes !== 0 || length % limits.sectorBytes !== 0) {
    throw new BallastError(
      ErrorCode.Unaligned,
      `offset ${offset} and length ${length} must be multiples of ${limits.sectorBytes}`,
    );
  }
  if (length === 0) {
    throw new BallastError(ErrorCode.InvalidArgument, `a range at ${offset} has length 0`);
  }
  const end = partition.partitionStart + partition.partitionBytes;
  if (offset < partition.partitionStart || offset + length > end) {
    throw new BallastError(
      ErrorCode.OutOfRange,
      `range [${offset}, ${offset + length}) is outside partition ${partition.partition} [${partition.partitionStart}, ${end})`,
    );
  }
}

function sleep(delayMs: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, delayMs));
}
