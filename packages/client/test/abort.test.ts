// Aborting an operation (OperationOptions.signal) against the fake cluster: an aborted
// operation rejects at once with the signal's reason and sends no further attempt, so a
// caller that gives up on a write and then writes the same blocks again cannot have the
// first write's retry land on top of the second. That is how the chaos run found it:
// a client whose own timeout abandoned a write (the library went on retrying it for its
// whole budget) saw that write come back after two newer acknowledged ones.

import { ErrorCode } from "@ballast/protocol";
import { describe, expect, it } from "vitest";
import { BallastClient } from "../src/index.ts";
import type { Clock } from "../src/options.ts";
import { FakeClusterBus } from "./fake-cluster-bus.ts";
import { mebibyte, patternBytes, waitUntil } from "./helpers.ts";

const spec = { name: "aborts", sizeBytes: 2 * mebibyte, partitionBytes: mebibyte };

/** A clock whose sleeps end only when the test says so: retries wait on it. */
class GatedClock implements Clock {
  nowMsValue = 0;
  readonly sleeping: (() => void)[] = [];
  nowMs(): number {
    return this.nowMsValue;
  }
  sleep(delayMs: number): Promise<void> {
    return new Promise((resolve) =>
      this.sleeping.push(() => {
        this.nowMsValue += delayMs;
        resolve();
      }),
    );
  }
  wake(): void {
    for (const resolve of this.sleeping.splice(0)) resolve();
  }
}

async function open() {
  const fake = new FakeClusterBus([spec]);
  const clock = new GatedClock();
  const client = new BallastClient(fake, { clock, random: () => 0.5 });
  const volume = await client.openVolume(spec.name);
  return { fake, clock, volume };
}

describe("aborting an operation", () => {
  it("rejects at once with the reason, and its retry never lands after the caller's next write", async () => {
    const { fake, clock, volume } = await open();
    // The first attempt is applied, then its answer is lost: the client will retry.
    fake.failNext(spec.name, 0, 1, ErrorCode.Timeout, { afterApplying: true });
    const first = patternBytes(8192, 1);
    const second = patternBytes(8192, 2);
    const controller = new AbortController();
    const abandoned = volume.write(4096, first, { signal: controller.signal });
    const outcome = abandoned.then(
      () => "resolved",
      (error: unknown) => error,
    );
    await waitUntil(() => clock.sleeping.length === 1, "the write to wait before its retry");

    const reason = new Error("the caller's own timeout");
    controller.abort(reason);
    expect(await outcome).toBe(reason);

    // The caller writes the same blocks again; then the abandoned write's retry is due.
    await volume.write(4096, second);
    clock.wake();
    await waitUntil(() => clock.sleeping.length === 0, "the retry loop to run");
    for (let turn = 0; turn < 20; turn++) await new Promise((resolve) => setImmediate(resolve));

    expect(fake.requestsOf("volume.write.v1").length).toBe(2);
    const contents = fake.contents(spec.name).subarray(4096, 4096 + 8192);
    expect(Buffer.from(contents).equals(Buffer.from(second))).toBe(true);
    // A flush after the abort does not wait for the aborted write.
    await volume.flush();
  });

  it("an operation aborted before it is sent sends nothing; the rest of its batch goes", async () => {
    const { fake, volume } = await open();
    const controller = new AbortController();
    controller.abort(new Error("never mind"));
    const aborted = volume.write(0, patternBytes(4096, 3), { signal: controller.signal });
    const kept = volume.write(8192, patternBytes(4096, 4));
    await expect(aborted).rejects.toThrow("never mind");
    await kept;
    const writes = fake.requestsOf("volume.write.v1");
    expect(
      writes.flatMap((request) => request.message.writes.map((write) => write.offset)),
    ).toEqual([8192]);
    expect(
      Buffer.from(fake.contents(spec.name).subarray(0, 4096)).every((byte) => byte === 0),
    ).toBe(true);
  });

  it("trims, write-zeroes and reads take the signal too", async () => {
    const { fake, volume } = await open();
    const controller = new AbortController();
    controller.abort(new Error("gone"));
    const { signal } = controller;
    await expect(volume.trim(0, 4096, { signal })).rejects.toThrow("gone");
    await expect(volume.writeZeroes(0, 4096, { signal })).rejects.toThrow("gone");
    await expect(volume.read(0, 4096, { signal })).rejects.toThrow("gone");
    expect(fake.requestsOf("volume.trim.v1").length).toBe(0);
    expect(fake.requestsOf("volume.read.v1").length).toBe(0);
  });
});
