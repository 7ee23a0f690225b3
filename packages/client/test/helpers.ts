// Shared pieces of the client's tests: a virtual clock (retry delays pass at once, and
// are recorded), waiting for the client to reach a state, deterministic test bytes, and
// opening a volume on a FakeClusterBus.

import { expect } from "vitest";
import { BallastClient, type ClientOptions, type Clock, type Volume } from "../src/index.ts";
import { FakeClusterBus, type FakeVolumeSpec } from "./fake-cluster-bus.ts";

export const kibibyte = 1024;
export const mebibyte = 1024 * kibibyte;

/** A clock whose time moves only when the client sleeps; every sleep is recorded. */
export class VirtualClock implements Clock {
  nowMsValue = 0;
  readonly sleepsMs: number[] = [];

  nowMs(): number {
    return this.nowMsValue;
  }

  sleep(delayMs: number): Promise<void> {
    this.sleepsMs.push(delayMs);
    this.nowMsValue += delayMs;
    return Promise.resolve();
  }
}

/** Resolves after the current event-loop turn, once the client's pump has had its chance. */
export function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Waits, turn by turn, until `condition` holds; fails the test if it never does. */
export async function waitUntil(condition: () => boolean, what: string): Promise<void> {
  for (let turn = 0; turn < 10_000; turn += 1) {
    if (condition()) return;
    await nextTurn();
  }
  expect.fail(`gave up waiting until ${what}`);
}

/** `length` bytes that differ from those of any other seed at almost every position. */
export function patternBytes(length: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(length);
  let state = (seed * 2_654_435_761 + 1) >>> 0;
  for (let index = 0; index < length; index += 1) {
    // xorshift32: cheap, deterministic, and never all zeroes.
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    bytes[index] = state & 0xff;
  }
  return bytes;
}

export interface TestVolume {
  fake: FakeClusterBus;
  client: BallastClient;
  volume: Volume;
  clock: VirtualClock;
}

/** A fake cluster holding one volume, a client on it with a virtual clock, and the open volume. */
export async function openTestVolume(
  spec: FakeVolumeSpec,
  options: Partial<ClientOptions> = {},
): Promise<TestVolume> {
  const fake = new FakeClusterBus([spec]);
  const clock = new VirtualClock();
  fake.elapse = (ms) => {
    clock.nowMsValue += ms;
  };
  const client = new BallastClient(fake, { clock, random: () => 0.5, ...options });
  const volume = await client.openVolume(spec.name);
  return { fake, client, volume, clock };
}

/** Total data bytes a recorded write or read request carried. */
export function requestDataBytes(
  message: { writes: { data: Uint8Array }[] } | { reads: { length: number }[] },
): number {
  return "writes" in message
    ? message.writes.reduce((sum, write) => sum + write.data.byteLength, 0)
    : message.reads.reduce((sum, read) => sum + read.length, 0);
}
