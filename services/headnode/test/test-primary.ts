// A partition host as a lone primary, for tests that drive one the way the head node
// does: a real host on a real journal in a temporary directory, a fake service in place
// of NATS (fake-service.ts: no coordinator answers, so checkpoints are never recorded),
// fake sleds that hold every chunk they are given (the first two offered), and a node
// tick schedule driven by the test (tick-schedule.ts): the host is asked only at the tick
// it says it is next due, or after an input. Every write is flushed to a chunk of its own
// at once, and no checkpoint is taken of its own accord, so that nothing but its held
// ticks moves its tick count once it is idle.

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Service } from "@ballast/runtime";
import { expect } from "vitest";
import type { ReplicaLimits } from "../src/constants.ts";
import { PartitionHost } from "../src/partition-host.ts";
import type { Reply } from "../src/replica/effects.ts";
import type { SledClient } from "../src/sled-client.ts";
import { FakeService } from "./fake-service.ts";

/** Fake sleds: every chunk and blob is held by the first two sleds it is offered to. */
const fakeSleds = {
  writeChunk: async (_owner: unknown, _id: string, _data: Uint8Array, sleds: readonly string[]) =>
    sleds.slice(0, 2),
  putBlob: async (_key: string, _data: Uint8Array, sleds: readonly string[]) => sleds.slice(0, 2),
} as unknown as SledClient;

export class TestPrimary {
  /** The node tick now, and the node tick at which the host is next due. */
  now = 0;
  due = 0;

  private constructor(
    readonly host: PartitionHost,
    private readonly dataDir: string,
  ) {}

  /**
   * A host of partition 0 of "vol" (1 MiB), primary at epoch 1 over `sleds`, with the
   * fake sleds above unless given a sled client of the test's own.
   */
  static async open(
    dirPrefix: string,
    sleds: readonly string[],
    sledClient: SledClient = fakeSleds,
    options: { limits?: Partial<ReplicaLimits>; service?: FakeService } = {},
  ): Promise<TestPrimary> {
    const dataDir = await mkdtemp(join(tmpdir(), dirPrefix));
    const host = await PartitionHost.open(
      (options.service ?? new FakeService()) as unknown as Service,
      dataDir,
      { volume: "vol", volumeId: "vol", partition: 0, partitionStart: 0, partitionBytes: 1 << 20 },
      sledClient,
      1,
      undefined,
      {
        flushBytesThreshold: 1,
        checkpointIntervalTicks: 1e9,
        checkpointIntervalOps: 1e9,
        ...options.limits,
      },
    );
    const primary = new TestPrimary(host, dataDir);
    host.attach({
      get now() {
        return primary.now;
      },
      wake: () => {
        primary.due = Math.min(primary.due, primary.now + 1);
      },
    });
    host.configure({ epoch: 1, primary: "head-1", secondaries: [] }, sleds);
    return primary;
  }

  async close(): Promise<void> {
    await this.host.close();
    await rm(this.dataDir, { recursive: true, force: true });
  }

  /** One node tick: the host is asked only if due; its I/O gets a turn after it. */
  async nodeTick(): Promise<void> {
    this.now++;
    if (this.now >= this.due) this.due = this.host.tick(this.now);
    await new Promise((resolve) => setTimeout(resolve, 1));
  }

  /** Node ticks until `done` holds (at most `limit`). */
  async until(done: () => boolean, limit = 2000): Promise<void> {
    for (let tick = 0; tick < limit && !done(); tick++) await this.nodeTick();
    expect(done()).toBe(true);
  }

  /** Writes one block of `fill` at `offset` and waits until it is answered and flushed. */
  async writeFlushed(offset: number, fill: number): Promise<void> {
    const host = this.host;
    let answered: Reply | undefined;
    void host
      .request((requestId) => ({
        kind: "write",
        requestId,
        epoch: 1,
        writes: [{ offset, data: new Uint8Array(4096).fill(fill) }],
      }))
      .then((reply) => {
        answered = reply;
      });
    await this.until(
      () =>
        answered !== undefined &&
        host.replica.metadata.unflushed.size === 0 &&
        host.replica.commitOpNum === host.replica.lastOpNum,
    );
  }
}
