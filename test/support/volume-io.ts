// Block I/O on a volume for integration tests, through the wire as any NATS client does
// it: describe the volume, send to the partition's subject with its epoch, and on a
// retryable error (a failover in progress) describe again and retry. Keeps a model of
// what was acknowledged so that tests can read everything back.

import { BallastError, subjects } from "@ballast/protocol";
import type { Bus } from "@ballast/runtime";
import { expect } from "vitest";

export const blockBytes = 4096;

export class VolumeModel {
  /** Acknowledged writes: block index → fill byte. */
  readonly written = new Map<number, number>();

  constructor(
    private readonly bus: Bus,
    private readonly volume: string,
  ) {}

  async describe() {
    return this.bus.request(subjects.coordinator.build(), {
      type: "volume.describe.v1",
      name: this.volume,
    });
  }

  /** Writes one 4 KiB block of partition 0, retrying through failovers for up to 30 s. */
  async writeBlock(block: number, fill: number): Promise<void> {
    await this.retrying(async (epoch) => {
      await this.bus.request(
        subjects.volume.build(this.volume, 0),
        {
          type: "volume.write.v1",
          volume: this.volume,
          partition: 0,
          epoch,
          writes: [{ offset: block * blockBytes, data: new Uint8Array(blockBytes).fill(fill) }],
        },
        { deadlineMs: 3000 },
      );
    });
    this.written.set(block, fill);
  }

  async flush(): Promise<number> {
    return this.retrying(async (epoch) => {
      const result = await this.bus.request(
        subjects.volume.build(this.volume, 0),
        { type: "volume.flush.v1", volume: this.volume, partition: 0, epoch },
        { deadlineMs: 10_000 },
      );
      return result.flushedOpNum;
    });
  }

  /** Every acknowledged block reads back with its fill. */
  async expectAllWritten(): Promise<void> {
    for (const [block, fill] of this.written) {
      const data = await this.retrying(async (epoch) => {
        const result = await this.bus.request(
          subjects.volume.build(this.volume, 0),
          {
            type: "volume.read.v1",
            volume: this.volume,
            partition: 0,
            epoch,
            reads: [{ offset: block * blockBytes, length: blockBytes }],
          },
          { deadlineMs: 5000 },
        );
        return result.data[0]!;
      });
      expect([...new Set(data)], `block ${block}`).toEqual([fill]);
    }
  }

  private async retrying<T>(attempt: (epoch: number) => Promise<T>): Promise<T> {
    const deadline = Date.now() + 30_000;
    for (;;) {
      try {
        // The describe too: a coordinator that lost its lead under load answers it
        // "no longer leads; retry" (CI, session 21), retryable like the attempt's errors.
        const state = await this.describe();
        return await attempt(state.partitions[0]!.epoch);
      } catch (error) {
        if (!(error instanceof BallastError) || !error.retryable || Date.now() > deadline)
          throw error;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
  }
}
