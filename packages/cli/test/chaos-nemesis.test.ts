// The fill-sled fault's filler (chaos nemesis) against a fake sled on a fake bus (a
// unit test: the real sled's NoSpace is covered by the sled's own tests and by the
// chaos run): it fills until the sled says NoSpace, no further, tells the wounds what
// it stored as it goes, fails loudly on any other error, and its undo deletes every
// filler id it may have stored.

import { BallastError, ErrorCode } from "@ballast/protocol";
import type { Bus } from "@ballast/runtime";
import { describe, expect, test } from "vitest";
import {
  fillerChunkBytes,
  fillerOwner,
  fillerWritesInFlight,
  fillSled,
  unfillSled,
} from "../src/chaos/nemesis.ts";

/** A fake sled holding `capacity` bytes of chunks, reached through a fake bus. */
function fakeSled(capacity: number, failWith?: ErrorCode) {
  const stored = new Map<string, number>();
  let used = 0;
  const bus = {
    async request(
      subject: string,
      message: { type: string; chunkId: string; owner: unknown; data?: Uint8Array },
    ) {
      expect(subject).toContain("sled-2");
      expect(message.owner).toEqual(fillerOwner);
      if (message.type === "sled.chunk.write.v1") {
        const bytes = message.data!.byteLength;
        if (failWith !== undefined) throw new BallastError(failWith, "fake failure");
        if (used + bytes > capacity) throw new BallastError(ErrorCode.NoSpace, "fake sled full");
        stored.set(message.chunkId, bytes);
        used += bytes;
        return { bytes, created: true };
      }
      if (message.type === "sled.chunk.delete.v1") {
        const bytes = stored.get(message.chunkId);
        if (bytes === undefined) throw new BallastError(ErrorCode.NotFound, "no such chunk");
        stored.delete(message.chunkId);
        used -= bytes;
        return { freedBytes: bytes };
      }
      throw new Error(`unexpected ${message.type}`);
    },
  } as unknown as Bus;
  return { bus, stored, used: () => used };
}

describe("fill-sled", () => {
  test("fills until NoSpace, and the undo deletes everything it stored", async () => {
    const capacity = 37 * fillerChunkBytes + 1000;
    const sled = fakeSled(capacity);
    const told: number[] = [];
    const tried = await fillSled(sled.bus, "sled-2", (count) => told.push(count));
    expect(sled.stored.size).toBe(37);
    expect(tried).toBeGreaterThanOrEqual(37);
    expect(tried).toBeLessThanOrEqual(37 + fillerWritesInFlight);
    // The wounds always know at least as many ids as were stored, before they are stored.
    expect(told.at(-1)).toBe(tried);
    expect(told).toEqual([...told].sort((a, b) => a - b));
    await unfillSled(sled.bus, "sled-2", tried);
    expect(sled.stored.size).toBe(0);
    expect(sled.used()).toBe(0);
  });

  test("a sled that never answers NoSpace ends the fault with an error naming it", async () => {
    const sled = fakeSled(Number.MAX_SAFE_INTEGER);
    await expect(fillSled(sled.bus, "sled-2", () => undefined)).rejects.toThrow(
      "sled-2 took 2048 filler chunks and never answered NoSpace",
    );
    expect(sled.stored.size).toBe(2048);
  });

  test("an error other than NoSpace ends the fault with that error", async () => {
    const sled = fakeSled(1 << 30, ErrorCode.Unavailable);
    await expect(fillSled(sled.bus, "sled-2", () => undefined)).rejects.toThrow("fake failure");
  });
});
