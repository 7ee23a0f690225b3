// Two coordinators' catalogue parts over one store, for tests of what an ex-leader that
// stalled (a GC pause, SIGSTOP, a paused VM) can do once it resumes beside the leader that
// took over. Each leader has its own view of the shared FakeStore that passes every call
// through a gate, so that a test decides when each leader's next store call runs: hold
// one leader before a chosen call (`holdBefore`), or interleave both call by call
// (`interleave`, the order drawn by fast-check).

import type { Message } from "@ballast/protocol";
import fc from "fast-check";
import { expect } from "vitest";
import {
  Catalogue,
  type ControlStore,
  isDeleting,
  keys,
  type SnapshotRecord,
  type StoredEntry,
  type VolumeRecord,
} from "../src/catalogue.ts";
import type { PartitionRecord } from "../src/decisions.ts";
import type { PurgeRecord } from "../src/purge.ts";
import { Snapshots } from "../src/snapshots.ts";
import type { Tenure } from "../src/tenure.ts";
import { Volumes } from "../src/volumes.ts";
import type { FakeStore } from "./fake-store.ts";

export const partitionBytes = 1024 * 1024;

/** One store call a leader is about to make. */
export interface StoreCall {
  method: "get" | "create" | "update" | "delete" | "keys";
  key: string;
}

export const isWrite = (call: StoreCall) => call.method !== "get" && call.method !== "keys";

/** A leader's view of the shared store: every call waits for `gate` first. */
class GatedStore implements ControlStore {
  constructor(
    private readonly shared: FakeStore,
    private readonly gate: (call: StoreCall) => Promise<void>,
  ) {}

  async get(key: string): Promise<StoredEntry | null> {
    await this.gate({ method: "get", key });
    return this.shared.get(key);
  }

  async create(key: string, value: Uint8Array): Promise<number> {
    await this.gate({ method: "create", key });
    return this.shared.create(key, value);
  }

  async update(key: string, value: Uint8Array, revision: number): Promise<number> {
    await this.gate({ method: "update", key });
    return this.shared.update(key, value, revision);
  }

  async delete(key: string, options?: { previousSeq?: number }): Promise<void> {
    await this.gate({ method: "delete", key });
    return this.shared.delete(key, options);
  }

  async keys(filter: string): Promise<AsyncIterable<string>> {
    await this.gate({ method: "keys", key: filter });
    return this.shared.keys(filter);
  }
}

const silent = { info: () => undefined, warn: () => undefined, error: () => undefined };

/** The parts one coordinator uses for catalogue changes, over its gated view. */
export function leaderOver(
  shared: FakeStore,
  term: number,
  gate: (call: StoreCall) => Promise<void>,
  // The cluster's answers, where a test scripts them (undefined: the defaults below).
  answer?: (subject: string, message: Message) => unknown,
  // The monotonic clock its rollback marks are aged on (the real one if absent).
  markClock?: () => number,
) {
  const catalogue = new Catalogue(new GatedStore(shared, gate));
  const service = {
    bus: {
      // Head nodes and primaries answer every drop, and every trim and flush (the
      // confirmation of a new end) a resize makes, at once.
      request: async (subject: string, message: Message) => {
        const answered = answer?.(subject, message);
        if (answered !== undefined) return answered;
        if (message.type === "headnode.drop.v1") return { dropped: 0 };
        if (message.type === "partition.snapshot.drop.v1") return { epoch: 1, opNum: 9 };
        if (message.type === "volume.trim.v1") return { opNumFirst: 9, opNumLast: 9 };
        if (message.type === "volume.flush.v1") return { flushedOpNum: 9 };
        throw new Error(`unexpected ${message.type} on ${subject}`);
      },
    },
    logger: silent,
  };
  const volumes = new Volumes({
    service: service as never,
    catalogue,
    heartbeats: {
      aliveHeadNodes: () => new Set(["head-1", "head-2", "head-3"]),
      aliveSleds: () => [],
      headNodeDisks: () => new Map(),
      list: () => [],
    },
    configurer: { configure: async () => undefined },
    // A fake: no sled to witness creates on (store-marks.ts).
    marks: { witnessCreate: async () => undefined },
    // Neither holds the tenure it is given: nothing is configured or remembered.
    tenures: { held: () => undefined, current: () => undefined },
    partitionBytesDefault: partitionBytes,
    // A fake: every head node enforces volume ends.
    features: { enforcesServedBytes: () => true },
    // Leaders step only at store calls: a timer between a resize's attempts would stall
    // the interleaving, so its retries go straight to their next store read.
    retryPause: async () => undefined,
  });
  const snapshots = new Snapshots({
    // A fake of the store marks: one control store throughout, every create witnessed.
    storeMarks: { witnessCreate: async () => undefined },
    service: service as never,
    catalogue,
    ...(markClock === undefined ? {} : { markClock }),
  });
  const tenure = { term } as Tenure;
  /** This leader's cleanup of delete markers, all of them at once (as at age 0): one store call. */
  const removeMarkers = async () => {
    await gate({ method: "delete", key: ">" });
    return shared.removeMarkers();
  };
  return { catalogue, volumes, snapshots, tenure, removeMarkers };
}

/** Volume `v` of two partitions, with partition records, and its snapshot `s1`. */
export function seed(store: FakeStore): void {
  store.put(keys.incarnation("v"), { incarnation: 1 });
  store.put(keys.volume("v"), {
    name: "v",
    id: "1-aaaaaaaaaaaa",
    sizeBytes: 2 * partitionBytes,
    replicaCount: 2,
    partitionBytes,
    createdAtMs: 0,
  } satisfies VolumeRecord);
  for (const partition of [0, 1]) {
    store.put(keys.partition("v", partition), {
      volume: "v",
      volumeId: "1-aaaaaaaaaaaa",
      partition,
      partitionStart: partition * partitionBytes,
      partitionBytes,
      epoch: 1,
      primary: "head-1",
      secondaries: ["head-2"],
      term: 1,
    } satisfies PartitionRecord);
  }
  store.put("snapshot.v.s1", {
    volume: "v",
    name: "s1",
    id: "sid-1",
    volumeId: "1-aaaaaaaaaaaa",
    createdAtMs: 0,
    partitions: [
      { index: 0, opNum: 3 },
      { index: 1, opNum: 3 },
    ],
    sizeBytes: 2 * partitionBytes,
  } satisfies SnapshotRecord);
}

/**
 * What must hold whatever the interleaving: every listed volume has all its partition
 * records, of its own incarnation; every listed clone's parent volume is live, with that
 * incarnation and no purge of it recorded, and its parent snapshot is recorded and not
 * being deleted.
 */
export async function expectSafe(store: FakeStore): Promise<void> {
  const volumeKeys: string[] = [];
  for await (const key of await store.keys(keys.volumes)) volumeKeys.push(key);
  for (const key of volumeKeys) {
    const volume = store.value<VolumeRecord & { creatingSinceMs?: number }>(key)!;
    if (volume.creatingSinceMs !== undefined) continue; // not a volume yet: never listed
    const count = Math.ceil(volume.sizeBytes / volume.partitionBytes);
    for (let partition = 0; partition < count; partition++) {
      const record = store.value<PartitionRecord>(keys.partition(volume.name, partition));
      expect(record?.volumeId, `partition ${partition} of ${volume.name}`).toBe(volume.id);
    }
    const parent = volume.parent;
    if (parent === undefined) continue;
    const parentVolume = store.value<VolumeRecord>(keys.volume(parent.volume));
    expect(parentVolume?.id, `the parent volume of clone ${volume.name}`).toBe(parent.volumeId);
    expect(store.value<PurgeRecord>(keys.purge(parent.volumeId))).toBeUndefined();
    const snapshot = store.value<SnapshotRecord>(`snapshot.${parent.volume}.${parent.snapshot}`);
    expect(snapshot?.id, `the parent snapshot of clone ${volume.name}`).toBe(parent.snapshotId);
    expect(isDeleting(snapshot!), `the parent snapshot of clone ${volume.name}`).toBe(false);
  }
}

/** Whether a listed (not still creating) volume `name` exists. */
export function listed(store: FakeStore, name: string): boolean {
  const volume = store.value<VolumeRecord & { creatingSinceMs?: number }>(keys.volume(name));
  return volume !== undefined && volume.creatingSinceMs === undefined;
}

/**
 * A gate that lets calls through until one matches `when`, then holds that one and every
 * later one (the leader is stalled) until `release`. `reached` settles once it holds.
 */
export function holdBefore(when: (call: StoreCall) => boolean) {
  let release!: () => void;
  let reachedResolve!: () => void;
  const released = new Promise<void>((resolve) => {
    release = resolve;
  });
  const reached = new Promise<void>((resolve) => {
    reachedResolve = resolve;
  });
  let held = false;
  return {
    gate: async (call: StoreCall) => {
      if (!held && !when(call)) return;
      held = true;
      reachedResolve();
      await released;
    },
    reached,
    release: () => release(),
  };
}

/** Lets every call through at once. */
export const open = async (_call: StoreCall) => undefined;

/** Settles after every promise that can run now has run (no timers are involved). */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

/** How many times in a row `interleave` finds no call waiting before it gives up. */
const idleTurnsMax = 1000;

/**
 * Runs operations of several leaders, one store call at a time, in the order `choices`
 * draws: each turn, of the leaders waiting at their next call, the one at `choice %
 * waiting` runs that call. Returns each operation's outcome. `running`, if given, hears
 * which leader runs before each one does (its start, and each call let through): until
 * the next, only that leader's code runs (settle runs what the call let go, the other
 * leaders waiting at their gates), so a clock can answer as that leader's machine would.
 */
export async function interleave(
  operations: ((gate: (call: StoreCall) => Promise<void>) => Promise<unknown>)[],
  choices: readonly number[],
  running?: (leader: number) => void,
): Promise<PromiseSettledResult<unknown>[]> {
  const waiting: { leader: number; go: () => void }[] = [];
  const done = operations.map(() => false);
  const outcomes = Promise.allSettled(
    operations.map((operation, leader) => {
      running?.(leader);
      return operation(
        (_call) =>
          new Promise<void>((go) => {
            waiting.push({ leader, go });
          }),
      ).finally(() => {
        done[leader] = true;
      });
    }),
  );
  let turn = 0;
  let idle = 0;
  while (!done.every(Boolean)) {
    await settle();
    if (waiting.length === 0) {
      idle++;
      expect(idle, "an operation waits on something other than the store").toBeLessThan(
        idleTurnsMax,
      );
      continue;
    }
    idle = 0;
    waiting.sort((a, b) => a.leader - b.leader);
    const [next] = waiting.splice((choices[turn % choices.length] ?? 0) % waiting.length, 1);
    turn++;
    running?.(next!.leader);
    next!.go();
  }
  return outcomes;
}

/** How far apart the leaders' wall clocks may be drawn, and how far one may step. */
export const wallSkewMsMax = 2 * 60_000;
/** Steps of a leader's wall clock drawn per run at most. */
const wallStepsMax = 3;

/**
 * Each leader's wall clock: its own offset from the real one, and steps (an NTP slew
 * or a step, forward or back) at drawn turns of the interleaving, counted in the
 * leaders' runs (`running`).
 */
export interface WallSkew {
  offsetsMs: readonly number[];
  steps: readonly { atRun: number; leader: number; stepMs: number }[];
}

export function wallSkewArbitrary(leaders: number): fc.Arbitrary<WallSkew> {
  // The bounds as often as the rest: two machines a mark's life or more apart.
  const skew = fc.oneof(
    fc.integer({ min: -wallSkewMsMax, max: wallSkewMsMax }),
    fc.constantFrom(-wallSkewMsMax, wallSkewMsMax),
  );
  return fc.record({
    offsetsMs: fc.array(skew, { minLength: leaders, maxLength: leaders }),
    steps: fc.array(
      fc.record({
        atRun: fc.nat({ max: 40 }),
        leader: fc.nat({ max: leaders - 1 }),
        stepMs: skew,
      }),
      { maxLength: wallStepsMax },
    ),
  });
}

/**
 * The wall clocks of leaders whose machines disagree (`skew`): `now` answers as the
 * machine of the leader `running` last named, over `base` (the real clock, or a test's).
 * Every wall-clock reading of the coordinator code under test (Date.now) goes through
 * it while the test mocks Date.now with `now`.
 */
export class SkewedWallClocks {
  private current = 0;
  private runs = 0;
  private readonly offsetsMs: number[];

  constructor(
    private readonly skew: WallSkew,
    private readonly base: () => number,
  ) {
    this.offsetsMs = [...skew.offsetsMs];
  }

  /** For `interleave`: `leader` runs now. */
  readonly running = (leader: number): void => {
    for (const step of this.skew.steps) {
      if (step.atRun === this.runs) this.offsetsMs[step.leader]! += step.stepMs;
    }
    this.runs++;
    this.current = leader;
  };

  readonly now = (): number => this.base() + (this.offsetsMs[this.current] ?? 0);
}
