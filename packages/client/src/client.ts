// The entry point of the client library: a BallastClient holds a bus and options, and
// opens volumes. It keeps no state of its own beyond them; each Volume it returns owns
// its description, its queues and its retries, so volumes fail over independently.
//
// Failure model: opening a volume describes it through the coordinator, retrying
// retryable failures (a coordinator being elected answers Unavailable) within the retry
// budget. A volume that does not exist fails at once with the coordinator's NotFound; a
// name that could not be a volume's is refused with InvalidArgument before anything is
// sent.

import { BallastError, ErrorCode, isValidName, limits } from "@ballast/protocol";
import { type ClientOptions, resolveClientOptions } from "./options.ts";
import { Volume } from "./volume.ts";
import { VolumeStateCache } from "./volume-state.ts";
import type { RequestBus } from "./wire.ts";

export class BallastClient {
  private readonly bus: RequestBus;
  private readonly options: Readonly<ClientOptions>;

  /** Throws ClientOptionsError if an option is out of its range. */
  constructor(bus: RequestBus, options: Partial<ClientOptions> = {}) {
    this.bus = bus;
    this.options = resolveClientOptions(options);
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
    return new Volume(this.bus, state, this.options);
  }
}
