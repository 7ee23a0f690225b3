// The client's side of the ordering fence (fence.ts): every mutation attempt carries the
// client's session and a sequence above every one sent before, a retry included; reads
// and flushes carry none; a Superseded refusal is retried without a describe; a Volume
// opened again by the same client goes on in the same session.

import { ErrorCode, limits } from "@ballast/protocol";
import { describe, expect, it } from "vitest";
import { BallastClient } from "../src/index.ts";
import { FakeClusterBus } from "./fake-cluster-bus.ts";
import { mebibyte, openTestVolume, VirtualClock } from "./helpers.ts";

const spec = { name: "fenced", sizeBytes: 2 * mebibyte, partitionBytes: mebibyte };
const mutationTypes = ["volume.write.v1", "volume.trim.v1", "volume.write-zeroes.v1"];

/** The fences of the mutation requests sent so far, in the order sent. */
function fencesSent(fake: FakeClusterBus) {
  return fake.sent
    .filter((request) => mutationTypes.includes(request.message.type))
    .map((request) => (request.message as { fence?: { session: string; sequence: number } }).fence);
}

describe("mutation fences", () => {
  it("every write, trim and write-zeroes attempt carries the session and a higher sequence; reads and flushes none", async () => {
    const { fake, client, volume } = await openTestVolume(spec);
    expect(client.session).toMatch(new RegExp(`^[0-9a-f]{${limits.clientSessionHexLength}}$`));
    await volume.write(0, new Uint8Array(4096).fill(1));
    await volume.trim(mebibyte, 4096);
    await volume.writeZeroes(8192, 4096);
    await volume.read(0, 4096);
    await volume.flushToSleds();
    const fences = fencesSent(fake);
    expect(fences).toHaveLength(3);
    expect(fences.every((fence) => fence?.session === client.session)).toBe(true);
    expect(fences.map((fence) => fence!.sequence)).toEqual([1, 2, 3]);
    for (const type of ["volume.read.v1", "volume.flush.v1"] as const) {
      expect(fake.requestsOf(type).length).toBeGreaterThan(0);
      expect(fake.requestsOf(type).every((request) => !("fence" in request.message))).toBe(true);
    }
  });

  it("a retry after a timeout is a new attempt with a new, higher sequence", async () => {
    const { fake, volume } = await openTestVolume(spec);
    // The first attempt was applied but its reply lost (a Timeout at the client).
    fake.failNext(spec.name, 0, 2, ErrorCode.Timeout, { afterApplying: true });
    await volume.write(0, new Uint8Array(4096).fill(7));
    await volume.write(0, new Uint8Array(4096).fill(8));
    const sequences = fencesSent(fake).map((fence) => fence!.sequence);
    // Three attempts of the first write, one of the second: strictly increasing.
    expect(sequences).toEqual([1, 2, 3, 4]);
  });

  it("concurrent attempts leave in sequence order", async () => {
    const { fake, volume } = await openTestVolume(spec, { requestEntriesMax: 1 });
    await Promise.all(
      Array.from({ length: 12 }, (_, index) =>
        volume.write((index % 2) * mebibyte + index * 4096, new Uint8Array(4096).fill(index)),
      ),
    );
    const sequences = fencesSent(fake).map((fence) => fence!.sequence);
    expect(sequences).toHaveLength(12);
    expect(sequences).toEqual([...sequences].sort((left, right) => left - right));
    expect(new Set(sequences).size).toBe(12);
  });

  it("a Superseded refusal is retried at once as a new attempt, with no describe", async () => {
    const { fake, volume } = await openTestVolume(spec);
    const describesBefore = fake.requestsOf("volume.describe.v1").length;
    fake.failNext(spec.name, 0, 1, ErrorCode.Superseded);
    await volume.write(0, new Uint8Array(4096).fill(3));
    expect(fencesSent(fake).map((fence) => fence!.sequence)).toEqual([1, 2]);
    expect(fake.requestsOf("volume.describe.v1").length).toBe(describesBefore);
    expect(fake.contents(spec.name)[0]).toBe(3);
  });

  it("a volume closed and opened again by the same client keeps its session and goes on counting", async () => {
    const fake = new FakeClusterBus([spec]);
    const client = new BallastClient(fake, { clock: new VirtualClock(), random: () => 0.5 });
    const first = await client.openVolume(spec.name);
    await first.write(0, new Uint8Array(4096).fill(1));
    await first.close();
    const second = await client.openVolume(spec.name);
    await second.write(0, new Uint8Array(4096).fill(2));
    const fences = fencesSent(fake);
    expect(fences.map((fence) => fence!.session)).toEqual([client.session, client.session]);
    expect(fences.map((fence) => fence!.sequence)).toEqual([1, 2]);
    // Another client is another session.
    const other = new BallastClient(fake, { clock: new VirtualClock(), random: () => 0.5 });
    expect(other.session).not.toBe(client.session);
  });
});
