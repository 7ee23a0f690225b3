// Reads of a clone in the client library: the clone's own bytes where its partitions
// mapped them, the parent snapshot's where they never did (below the overlap), zeros past
// the overlap; a clone of a clone reads through both. Against a small fake cluster that
// keeps, per volume, the bytes and which sectors were ever mapped, as head nodes do.

import {
  BallastError,
  ErrorCode,
  type MessageOf,
  type RequestType,
  type ResultOf,
} from "@ballast/protocol";
import { describe, expect, test } from "vitest";
import { BallastClient, type RequestBus } from "../src/index.ts";
import { fallThroughRanges } from "../src/layering.ts";
import { VirtualClock } from "./helpers.ts";

const sector = 512;
const partitionBytes = 64 * sector;

interface FakeVolume {
  name: string;
  id: string;
  sizeBytes: number;
  bytes: Uint8Array;
  mapped: boolean[];
  /** Frozen copies by snapshot id. */
  snapshots: Map<string, { name: string; bytes: Uint8Array; mapped: boolean[]; overlap?: number }>;
  parent?: {
    volume: string;
    volumeId: string;
    snapshot: string;
    snapshotId: string;
    overlap: number;
  };
}

/** Volumes whose partitions answer reads with unmapped ranges when asked. */
class LayeredFake implements RequestBus {
  readonly volumes = new Map<string, FakeVolume>();
  readonly reads: MessageOf<"volume.read.v1">[] = [];

  add(name: string, sizeBytes: number, parent?: FakeVolume["parent"]): FakeVolume {
    const volume: FakeVolume = {
      name,
      id: `1-${name}`,
      sizeBytes,
      bytes: new Uint8Array(sizeBytes),
      mapped: new Array(sizeBytes / sector).fill(false),
      snapshots: new Map(),
      ...(parent === undefined ? {} : { parent }),
    };
    this.volumes.set(name, volume);
    return volume;
  }

  write(name: string, offset: number, data: Uint8Array | number, length = 0): void {
    const volume = this.volumes.get(name)!;
    const bytes = typeof data === "number" ? new Uint8Array(length).fill(data) : data;
    volume.bytes.set(bytes, offset);
    for (let at = offset; at < offset + bytes.length; at += sector)
      volume.mapped[at / sector] = true;
  }

  snapshot(name: string, snapshot: string): string {
    const volume = this.volumes.get(name)!;
    const id = `s-${name}-${snapshot}`;
    volume.snapshots.set(id, {
      name: snapshot,
      bytes: volume.bytes.slice(),
      mapped: [...volume.mapped],
      ...(volume.parent === undefined ? {} : { overlap: volume.parent.overlap }),
    });
    return id;
  }

  async request<T extends RequestType>(
    _subject: string,
    message: MessageOf<T>,
  ): Promise<ResultOf<T>> {
    return this.answer(message as MessageOf<RequestType>) as ResultOf<T>;
  }

  private answer(message: MessageOf<RequestType>): unknown {
    switch (message.type) {
      case "volume.describe.v1": {
        const volume = this.volumes.get(message.name);
        if (volume === undefined) throw new BallastError(ErrorCode.NotFound, "no such volume");
        const count = Math.ceil(volume.sizeBytes / partitionBytes);
        return {
          name: volume.name,
          id: volume.id,
          sizeBytes: volume.sizeBytes,
          replicaCount: 2,
          partitionBytes,
          createdAtMs: 0,
          partitions: Array.from({ length: count }, (_, index) => ({
            partition: index,
            partitionStart: index * partitionBytes,
            partitionBytes,
            epoch: 1,
            primary: "head-1",
            secondaries: ["head-2"],
            inSync: ["head-1", "head-2"],
            learners: [],
            rebuilds: [],
            checkpoints: [],
          })),
          ...(volume.parent === undefined ? {} : { parent: volume.parent }),
        };
      }
      case "snapshot.list.v1": {
        const volume = this.volumes.get(message.volume)!;
        return {
          snapshots: [...volume.snapshots].map(([id, frozen]) => ({
            volume: volume.name,
            name: frozen.name,
            id,
            volumeId: volume.id,
            createdAtMs: 0,
            partitions: [],
            ...(frozen.overlap === undefined ? {} : { overlap: frozen.overlap }),
          })),
        };
      }
      case "volume.read.v1": {
        this.reads.push(message);
        const volume = this.volumes.get(message.volume)!;
        const source =
          message.snapshot === undefined ? volume : volume.snapshots.get(message.snapshot)!;
        const data = message.reads.map((range) =>
          source.bytes.slice(range.offset, range.offset + range.length),
        );
        if (message.unmapped !== true) return { data };
        const unmapped = message.reads.map((range) => {
          const ranges: { offset: number; length: number }[] = [];
          for (let at = range.offset; at < range.offset + range.length; at += sector) {
            if (source.mapped[at / sector]) continue;
            const last = ranges.at(-1);
            if (last !== undefined && last.offset + last.length === at) last.length += sector;
            else ranges.push({ offset: at, length: sector });
          }
          return ranges;
        });
        return { data, unmapped };
      }
      case "volume.write.v1":
        for (const entry of message.writes) this.write(message.volume, entry.offset, entry.data);
        return { opNumFirst: 1, opNumLast: 1 };
      case "volume.trim.v1":
      case "volume.write-zeroes.v1":
        for (const range of message.ranges) {
          this.write(message.volume, range.offset, 0, range.length);
        }
        return { opNumFirst: 1, opNumLast: 1 };
      default:
        throw new Error(`the fake does not answer ${message.type}`);
    }
  }
}

function client(bus: RequestBus) {
  return new BallastClient(bus, { clock: new VirtualClock() });
}

/** A parent of three partitions with a pattern per partition, and its snapshot `s1`. */
function parentWithSnapshot() {
  const bus = new LayeredFake();
  const size = 3 * partitionBytes;
  bus.add("parent", size);
  bus.write("parent", 0, 0x11, 8 * sector);
  bus.write("parent", partitionBytes, 0x22, 8 * sector);
  bus.write("parent", 2 * partitionBytes + 4 * sector, 0x33, 4 * sector);
  const snapshotId = bus.snapshot("parent", "s1");
  const frozen = bus.volumes.get("parent")!.snapshots.get(snapshotId)!.bytes;
  const parent = {
    volume: "parent",
    volumeId: "1-parent",
    snapshot: "s1",
    snapshotId,
    overlap: size,
  };
  return { bus, size, frozen, parent };
}

describe("reads of a clone", () => {
  test("fall-through ranges are the unmapped ones below the overlap", () => {
    expect(
      fallThroughRanges(
        [
          { offset: 0, length: 512 },
          { offset: 1024, length: 2048 },
          { offset: 4096, length: 512 },
        ],
        2048,
      ),
    ).toEqual([
      { offset: 0, length: 512 },
      { offset: 1024, length: 1024 },
    ]);
    expect(fallThroughRanges([{ offset: 0, length: 512 }], 0)).toEqual([]);
  });

  test("a new clone reads as its parent snapshot, and the parent's later writes stay out", async () => {
    const { bus, size, frozen, parent } = parentWithSnapshot();
    bus.add("clone", size, parent);
    bus.write("parent", 0, 0x44, 2 * sector);
    const volume = await client(bus).openVolume("clone");
    expect(await volume.read(0, size)).toEqual(frozen);
    // The clone's reads ask for unmapped ranges; the parent's are snapshot reads.
    expect(bus.reads.some((read) => read.volume === "clone" && read.unmapped === true)).toBe(true);
    expect(
      bus.reads
        .filter((read) => read.volume === "parent")
        .every((read) => read.snapshot === parent.snapshotId && read.unmapped === undefined),
    ).toBe(true);
    await volume.close();
  });

  test("the clone's writes, trims and write-zeroes win over the parent; zeros past the overlap", async () => {
    const { bus, size, frozen, parent } = parentWithSnapshot();
    bus.add("clone", size, { ...parent, overlap: 2 * partitionBytes + 6 * sector });
    const volume = await client(bus).openVolume("clone");
    await volume.write(2 * sector, new Uint8Array(4 * sector).fill(0xaa));
    await volume.trim(partitionBytes, 2 * sector);
    await volume.writeZeroes(partitionBytes + 6 * sector, sector);
    const expected = frozen.slice();
    expected.fill(0xaa, 2 * sector, 6 * sector);
    expected.fill(0, partitionBytes, partitionBytes + 2 * sector);
    expected.fill(0, partitionBytes + 6 * sector, partitionBytes + 7 * sector);
    // Past the overlap: zeros, though the snapshot has 0x33 there.
    expected.fill(0, 2 * partitionBytes + 6 * sector);
    expect(await volume.read(0, size)).toEqual(expected);
    // A read within one partition, across a mapped and an unmapped part.
    expect(await volume.read(5 * sector, 4 * sector)).toEqual(
      expected.slice(5 * sector, 9 * sector),
    );
    await volume.close();
  });

  test("a clone of a clone reads through both parents", async () => {
    const { bus, size, frozen, parent } = parentWithSnapshot();
    bus.add("clone", size, parent);
    bus.write("clone", partitionBytes + 2 * sector, 0xbb, 2 * sector);
    const cloneSnapshot = bus.snapshot("clone", "c1");
    bus.write("clone", 0, 0xcc, 16 * sector);
    bus.add("grandchild", size, {
      volume: "clone",
      volumeId: "1-clone",
      snapshot: "c1",
      snapshotId: cloneSnapshot,
      overlap: size,
    });
    const volume = await client(bus).openVolume("grandchild");
    const expected = frozen.slice();
    expected.fill(0xbb, partitionBytes + 2 * sector, partitionBytes + 4 * sector);
    expect(await volume.read(0, size)).toEqual(expected);
    await volume.close();
  });

  test("a snapshot of a clone falls through below the overlap the clone had when it was taken", async () => {
    const { bus, size, frozen, parent } = parentWithSnapshot();
    const clone = bus.add("clone", size, parent);
    bus.snapshot("clone", "c1");
    // A shrink and a grow since: the clone's own overlap is lower now.
    clone.parent = { ...parent, overlap: partitionBytes };
    bus.write("clone", partitionBytes, 0, 2 * partitionBytes);
    const opened = client(bus);
    const snapshot = await opened.openSnapshot("clone", "c1");
    expect(await snapshot.read(0, size)).toEqual(frozen);
    const volume = await opened.openVolume("clone");
    const now = frozen.slice();
    now.fill(0, partitionBytes);
    expect(await volume.read(0, size)).toEqual(now);
    await snapshot.close();
    await volume.close();
  });

  test("a clone whose parent snapshot is another than recorded is not opened", async () => {
    const { bus, size, parent } = parentWithSnapshot();
    bus.add("clone", size, { ...parent, snapshotId: "s-gone" });
    await expect(client(bus).openVolume("clone")).rejects.toMatchObject({
      code: ErrorCode.NotFound,
    });
  });
});
