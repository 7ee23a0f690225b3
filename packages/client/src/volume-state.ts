// What an open volume believes about its partitions: the coordinator's last description
// (each partition's epoch and primary) and a generation that counts descriptions.
//
// Model: requests carry the epoch of the snapshot current when they were sent, and
// remember the snapshot's generation. After a retryable failure, `refresh(generation)`
// describes the volume again — unless a description newer than the one the request used
// has already arrived (then the failure is explained, and the retry simply uses it), or
// one is already in flight (then the failure joins it). So however many requests fail
// together at a failover, the volume is described once per change, not once per request.
//
// Joining is right for a failed request: any description newer than the one it used
// explains its failure. It is wrong for a caller that must see the catalogue as of its
// call (a new NBD connection learning the size after a resize): a describe in flight
// may have read the catalogue before the resize, and its answer would be taken as
// current. `refreshAsOfNow` therefore never joins a describe already sent; it waits for
// it and describes again, and every such caller that arrives while that one is in
// flight shares the one describe queued behind it. Describes never overlap, so their
// answers are taken in the order they were read.
//
// Failure model: a describe may fail like any request; `refresh` rejects with that error
// and leaves the snapshot as it was, and the caller's retry loop decides whether to try
// again (wire.ts makes the coordinator's own faults retryable). A description that lists
// a partition twice is used with the newest copy (layout.ts). A description whose layout
// differs from the first one (other partitions, other size) is refused with
// InvalidVolumeStateError: offsets already split by the old layout would land in the
// wrong partitions; a resize (another size, partitions added after the last) is not such
// a change, and is taken. One of another incarnation of the name is NotFound.

import { ErrorCode, isBallastError, subjects } from "@ballast/protocol";
import { checkSameLayout, normalizeVolumeState, type VolumeState } from "./layout.ts";
import type { ClientOptions } from "./options.ts";
import { withRetries } from "./retry.ts";
import { describeVolume, type RequestBus } from "./wire.ts";

export interface VolumeSnapshot {
  /** Counts descriptions received; the first is 1. */
  readonly generation: number;
  readonly state: VolumeState;
  /** The volume subject of each partition, by position, built once. */
  readonly subjects: readonly string[];
}

export class VolumeStateCache {
  readonly name: string;
  private snapshot: VolumeSnapshot;
  /** The describe sent and not yet answered. */
  private refreshing: Promise<void> | undefined;
  /** The describe that `refreshAsOfNow` queued behind `refreshing`, not yet sent. */
  private queued: Promise<void> | undefined;
  private goneSeen = false;
  private readonly bus: RequestBus;
  private readonly options: Readonly<ClientOptions>;

  private constructor(
    bus: RequestBus,
    name: string,
    state: VolumeState,
    options: Readonly<ClientOptions>,
  ) {
    this.bus = bus;
    this.name = name;
    this.options = options;
    this.snapshot = {
      generation: 1,
      state,
      subjects: state.partitions.map((partition) =>
        subjects.volume.build(name, partition.partition),
      ),
    };
  }

  /** Describes the volume, retrying retryable failures within the retry budget. */
  static async open(
    bus: RequestBus,
    name: string,
    options: Readonly<ClientOptions>,
  ): Promise<VolumeStateCache> {
    const state = await withRetries(
      {
        describe: () => `describe volume ${JSON.stringify(name)}`,
        issuedAtMs: options.clock.nowMs(),
        attempt: async () =>
          normalizeVolumeState(name, await describeVolume(bus, name, options.describeDeadlineMs)),
      },
      options,
    );
    return new VolumeStateCache(bus, name, state, options);
  }

  get current(): VolumeSnapshot {
    return this.snapshot;
  }

  /**
   * Resolves once a description newer than generation `generationSeen` is current:
   * at once if one is, by joining the describe in flight if there is one, and by
   * starting one otherwise.
   */
  refresh(generationSeen: number): Promise<void> {
    if (this.snapshot.generation > generationSeen) return Promise.resolve();
    return this.describeOnce();
  }

  /**
   * Resolves once a description whose describe was sent after this call is current, so
   * that it reflects every change to the catalogue made before the call (a resize, a
   * deletion). A describe in flight is not joined: it may have read the catalogue before
   * such a change. Rejects as that describe does; the failure of the one in flight is
   * not this call's.
   */
  refreshAsOfNow(): Promise<void> {
    const inFlight = this.refreshing;
    if (inFlight === undefined) return this.describeOnce();
    if (this.queued === undefined) {
      const queued = inFlight
        .catch(() => undefined)
        .then(() => {
          this.queued = undefined;
          // A describe started since `inFlight` ended was sent after every caller that
          // queued here, so joining it is as good as sending one.
          return this.describeOnce();
        });
      this.queued = queued;
    }
    return this.queued;
  }

  /**
   * True once a describe found the volume deleted (the coordinator's NotFound, or
   * another incarnation under the name): nothing this cache addresses exists any more.
   */
  get gone(): boolean {
    return this.goneSeen;
  }

  /** The describe in flight, or a new one when none is: never two at once. */
  private describeOnce(): Promise<void> {
    if (this.refreshing === undefined) {
      this.refreshing = this.describe().finally(() => {
        this.refreshing = undefined;
      });
    }
    return this.refreshing;
  }

  private async describe(): Promise<void> {
    let state: VolumeState;
    try {
      state = normalizeVolumeState(
        this.name,
        await describeVolume(this.bus, this.name, this.options.describeDeadlineMs),
      );
      checkSameLayout(this.snapshot.state, state);
    } catch (error) {
      if (isBallastError(error, ErrorCode.NotFound)) this.goneSeen = true;
      throw error;
    }
    this.snapshot = {
      generation: this.snapshot.generation + 1,
      state,
      subjects:
        state.partitions.length === this.snapshot.subjects.length
          ? this.snapshot.subjects
          : state.partitions.map((partition) =>
              subjects.volume.build(this.name, partition.partition),
            ),
    };
  }
}
