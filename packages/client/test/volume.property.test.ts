// Model-based properties: random groups of aligned writes, trims, write-zeroes and reads,
// issued concurrently within a group, against a model byte array. Every read must match
// the model, and after the last group the fake cluster's bytes must equal it.
//
// Ranges within one group never overlap (concurrent overlapping I/O has no defined
// order), so the model may apply a group in any order. Small geometry — partitions of
// 16 sectors with a short last one, requests of at most 4 sectors and 3 entries — makes
// splitting, batching and the bounds matter on almost every step; a full-scale property
// runs the real 4 MiB limit over partitions larger and smaller than it. A third property
// injects retryable failures, lost replies and failovers (some while requests are in
// flight), and asserts that nothing fails and nothing is lost.

import { ErrorCode } from "@ballast/protocol";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { ClientOptions, Volume } from "../src/index.ts";
import type { FakeClusterBus, FakeVolumeSpec } from "./fake-cluster-bus.ts";
import { mebibyte, openTestVolume, patternBytes, waitUntil } from "./helpers.ts";

const sectorBytes = 512;

type OperationKind = "write" | "trim" | "write-zeroes" | "read";

interface Operation {
  kind: OperationKind;
  offset: number;
  length: number;
  seed: number;
}

type Fault =
  | { kind: "none" }
  | { kind: "fail"; partition: number; count: number; code: ErrorCode; afterApplying: boolean }
  | { kind: "failover"; partition: number }
  | { kind: "failover-in-flight"; partition: number };

interface Step {
  fault: Fault;
  group: Operation[];
}

function operationArbitrary(sizeBytes: number, lengthSectorsMax: number): fc.Arbitrary<Operation> {
  const sectorCount = sizeBytes / sectorBytes;
  return fc
    .record({
      kind: fc.constantFrom<OperationKind>(
        "write",
        "write",
        "trim",
        "write-zeroes",
        "read",
        "read",
      ),
      sector: fc.integer({ min: 0, max: sectorCount - 1 }),
      lengthSectors: fc.integer({ min: 1, max: lengthSectorsMax }),
      seed: fc.nat(),
    })
    .map(({ kind, sector, lengthSectors, seed }) => ({
      kind,
      offset: sector * sectorBytes,
      length: Math.min(lengthSectors, sectorCount - sector) * sectorBytes,
      seed,
    }));
}

/** Keeps the operations of a group whose ranges overlap none kept before them. */
function withoutOverlaps(group: readonly Operation[]): Operation[] {
  const kept: Operation[] = [];
  for (const operation of group) {
    const overlaps = kept.some(
      (other) =>
        operation.offset < other.offset + other.length &&
        other.offset < operation.offset + operation.length,
    );
    if (!overlaps) kept.push(operation);
  }
  return kept;
}

function faultArbitrary(partitionCount: number): fc.Arbitrary<Fault> {
  const partition = fc.integer({ min: 0, max: partitionCount - 1 });
  return fc.oneof(
    { weight: 3, arbitrary: fc.constant<Fault>({ kind: "none" }) },
    {
      weight: 2,
      arbitrary: fc.record({
        kind: fc.constant("fail" as const),
        partition,
        count: fc.integer({ min: 1, max: 3 }),
        code: fc.constantFrom(
          ErrorCode.WrongEpoch,
          ErrorCode.NotPrimary,
          ErrorCode.Unavailable,
          ErrorCode.Timeout,
          ErrorCode.ShuttingDown,
        ),
        afterApplying: fc.boolean(),
      }),
    },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant("failover" as const), partition }) },
    {
      weight: 1,
      arbitrary: fc.record({ kind: fc.constant("failover-in-flight" as const), partition }),
    },
  );
}

function stepsArbitrary(
  spec: FakeVolumeSpec,
  lengthSectorsMax: number,
  groupSizeMax: number,
  stepsMax: number,
  faults: boolean,
): fc.Arbitrary<Step[]> {
  const partitionCount = Math.ceil(spec.sizeBytes / spec.partitionBytes);
  const step = fc.record({
    fault: faults ? faultArbitrary(partitionCount) : fc.constant<Fault>({ kind: "none" }),
    group: fc
      .array(operationArbitrary(spec.sizeBytes, lengthSectorsMax), {
        minLength: 1,
        maxLength: groupSizeMax,
      })
      .map(withoutOverlaps),
  });
  return fc.array(step, { minLength: 1, maxLength: stepsMax });
}

/** Issues one operation on the volume and applies it to the model; resolves to a read's check. */
async function runOperation(
  volume: Volume,
  model: Uint8Array,
  operation: Operation,
): Promise<void> {
  const { offset, length } = operation;
  switch (operation.kind) {
    case "write": {
      const data = patternBytes(length, operation.seed);
      model.set(data, offset);
      await volume.write(offset, data);
      return;
    }
    case "trim":
    case "write-zeroes":
      model.fill(0, offset, offset + length);
      await (operation.kind === "trim"
        ? volume.trim(offset, length)
        : volume.writeZeroes(offset, length));
      return;
    case "read": {
      // The group has no overlapping ranges, so the model's bytes here are final for it.
      const expected = model.slice(offset, offset + length);
      const read = await volume.read(offset, length);
      expect(Buffer.from(read).equals(Buffer.from(expected))).toBe(true);
      return;
    }
  }
}

async function runSteps(
  spec: FakeVolumeSpec,
  options: Partial<ClientOptions>,
  steps: readonly Step[],
): Promise<void> {
  const { fake, volume } = await openTestVolume(spec, options);
  const model = new Uint8Array(spec.sizeBytes);
  for (const { fault, group } of steps) {
    const inFlight = applyFault(fake, spec.name, fault);
    const outcomes = Promise.allSettled(
      group.map((operation) => runOperation(volume, model, operation)),
    );
    await inFlight?.(group.length > 0);
    const failures = (await outcomes).filter((outcome) => outcome.status === "rejected");
    expect(failures).toEqual([]);
  }
  await volume.flushToSleds();
  expect(Buffer.from(fake.contents(spec.name)).equals(Buffer.from(model))).toBe(true);
  const whole = await volume.read(0, spec.sizeBytes);
  expect(Buffer.from(whole).equals(Buffer.from(model))).toBe(true);
  await volume.close();
}

/**
 * Sets the fault up before the group is issued. A failover in flight returns a function
 * to call once the group is issued: it waits for a request to be held, fails over, and
 * releases the requests.
 */
function applyFault(
  fake: FakeClusterBus,
  volume: string,
  fault: Fault,
): ((issued: boolean) => Promise<void>) | undefined {
  switch (fault.kind) {
    case "none":
      return undefined;
    case "fail":
      fake.failNext(volume, fault.partition, fault.count, fault.code, {
        afterApplying: fault.afterApplying,
      });
      return undefined;
    case "failover":
      fake.failover(volume, fault.partition);
      return undefined;
    case "failover-in-flight":
      fake.pause();
      return async (issued) => {
        if (issued) await waitUntil(() => fake.held > 0, "a request of the group is held");
        fake.failover(volume, fault.partition);
        fake.resume();
      };
  }
}

const smallSpec: FakeVolumeSpec = {
  name: "model",
  // Four partitions of 16 sectors and a last one of 12.
  sizeBytes: 76 * sectorBytes,
  partitionBytes: 16 * sectorBytes,
};

const smallOptions: Partial<ClientOptions> = {
  requestDataBytesMax: 4 * sectorBytes,
  requestEntriesMax: 3,
  requestsInflightPerQueueMax: 2,
  requestsInflightPerVolumeMax: 5,
};

describe("a volume against a model byte array", () => {
  it("matches the model on every read and at the end (small geometry)", async () => {
    await fc.assert(
      fc.asyncProperty(stepsArbitrary(smallSpec, 40, 6, 16, false), (steps) =>
        runSteps(smallSpec, smallOptions, steps),
      ),
      { numRuns: 150 },
    );
  });

  it("matches the model at full scale: 4 MiB requests, partitions above and below it", async () => {
    const spec: FakeVolumeSpec = {
      name: "scale",
      // Partitions of 6 MiB, 6 MiB and 3 MiB: a 10 MiB write spans all three.
      sizeBytes: 15 * mebibyte,
      partitionBytes: 6 * mebibyte,
    };
    await fc.assert(
      fc.asyncProperty(stepsArbitrary(spec, (10 * mebibyte) / sectorBytes, 3, 3, false), (steps) =>
        runSteps(spec, {}, steps),
      ),
      { numRuns: 8 },
    );
  });

  it("matches the model through retryable failures, lost replies and failovers", async () => {
    await fc.assert(
      fc.asyncProperty(stepsArbitrary(smallSpec, 40, 6, 16, true), (steps) =>
        runSteps(smallSpec, smallOptions, steps),
      ),
      { numRuns: 150 },
    );
  });
});
