// The entry point of the client library: a BallastClient holds a bus and options, and
// opens volumes. Its one state of its own is the session that numbers mutation attempts
// (fence.ts), shared by every Volume it opens, so that a volume closed and opened again
// still fences the stale attempts of the first; each Volume owns its description, its
// queues and its retries, so volumes fail over independently.
//
// Failure model: opening a volume describes it through the coordinator, retrying
// retryable failures (a coordinator being elected answers Unavailable) within the retry
// budget. A volume that does not exist fails at once with the coordinator's NotFound; a
// name that could not be a volume's is refused with InvalidArgument before anything is
// sent.

import { BallastError, ErrorCode, isValidName, limits, subjects } from "@ballast/protocol";
import { describeDeadlineMs } from "./constants.ts";
import { AttemptSequencer } from "./fence.ts";
import { type ClientOptions, resolveClientOptions } from "./options.ts";
import { Volume } from "./volume.ts";
import { VolumeStateCache } from "./volume-state.ts";
import type { RequestBus } from "./wire.ts";

export class BallastClient {
  private readonly bus: RequestBus;
  private readonly options: Readonly<ClientOptions>;
  /** Numbers every mutation attempt of every Volume this client opens. */
  private readonly sequencer: AttemptSequencer;

  /** Throws ClientOptionsError if an option is out of its range. */
  constructor(bus: RequestBus, options: Partial<ClientOptions> = {}) {
    this.bus = bus;
    this.options = resolveClientOptions(options);
    this.sequencer = new AttemptSequencer();
    if (this.options.links) this.bus.enableLinks?.(["volume"]);
  }

  /** This client's session, which its mutation attempts carry in their fence. */
  get session(): string {
    return this.sequencer.session;
  }

  /** Describes the volume through the coordinator and returns it as a BlockDevice. */
  async openVolume(name: string): Promise<Volume> {
    if (!isValidName(name, limits.volumeNameLengthMax)) {
      throw new BallastError(
        ErrorCode.InvalidArgument,
        `cannot open volume ${JSON.stringify(name)}: a volume name is 1 to ${limits.volumeNameLengthMax} lowercase letters, digits and '-', starting with a letter or digit`,
        { details: { name } },
      );
    }
    const state = await VolumeStateCache.open(this.bus, name, this.options);
    const parent = state.current.state.parent;
    if (parent === undefined) {
      return new Volume(this.bus, state, this.options, undefined, undefined, this.sequencer);
    }
    // A clone reads through its parent snapshot (volume.ts), which must be the very
    // snapshot it was cloned from: the coordinator keeps it while the clone exists.
    const snapshot = await this.openSnapshot(parent.volume, parent.snapshot);
    if (snapshot.snapshot !== parent.snapshotId || snapshot.id !== parent.volumeId) {
      await snapshot.close();
      throw new BallastError(
        ErrorCode.NotFound,
        `clone ${name}'s parent snapshot ${parent.volume}@${parent.snapshot} is gone`,
        { details: { name, parent: parent.volume, snapshot: parent.snapshot } },
      );
    }
    return new Volume(this.bus, state, this.options, undefined, snapshot, this.sequencer);
  }

  /**
   * Opens snapshot `snapshot` of volume `name` as a read-only BlockDevice: reads return
   * the volume as it was when the snapshot was taken; writes, trims and write-zeroes are
   * refused. NotFound if the volume has no snapshot of that name.
   */
  async openSnapshot(name: string, snapshot: string): Promise<Volume> {
    if (!isValidName(snapshot, limits.snapshotNameLengthMax)) {
      throw new BallastError(
        ErrorCode.InvalidArgument,
        `cannot open snapshot ${JSON.stringify(snapshot)}: a snapshot name is 1 to ${limits.snapshotNameLengthMax} lowercase letters, digits and '-', starting with a letter or digit`,
        { details: { name, snapshot } },
      );
    }
    const volume = await this.openVolume(name);
    const { snapshots } = await this.bus.request(
      subjects.coordinator.build(),
      { type: "snapshot.list.v1", volume: name },
      { deadlineMs: describeDeadlineMs },
    );
    const found = snapshots.find((entry) => entry.name === snapshot);
    // The volume opened must be the incarnation the snapshot is of.
    if (found === undefined || (volume.id !== undefined && found.volumeId !== volume.id)) {
      await volume.close();
      throw new BallastError(
        ErrorCode.NotFound,
        `volume ${name} has no snapshot named ${snapshot}`,
        {
          details: { name, snapshot },
        },
      );
    }
    // Reopened first: the snapshot takes over a clone's parent reader, which closing the
    // volume would otherwise close with it.
    const reopened = volume.reopenAsSnapshot(this.bus, this.options, {
      id: found.id,
      name: found.name,
      ...(found.overlap === undefined ? {} : { overlap: found.overlap }),
    });
    await volume.close();
    return reopened;
  }
}
