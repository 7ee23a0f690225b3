// The coordinator's shell on a fake service and an in-memory KV store, on fake timers:
// the executor around the pure decisions. Head nodes are scripted: they beat, report,
// and answer configure requests (or hang, or say they hold nothing).

import { BallastError, ErrorCode, limits, type Message, subjects } from "@ballast/protocol";
import { afterEach, beforeEach, describe, expect, test, vi } from "vitest";
import { keys } from "../src/catalogue.ts";
import {
  configureDeadlineMs,
  evictedHeadNodesNotedMax,
  memberEvictAfterMsDefault,
  purgeGraceMs,
  purgePassIntervalMs,
  reconcileIntervalMs,
} from "../src/constants.ts";
import { Coordinator } from "../src/coordinator.ts";
import type { PartitionRecord } from "../src/decisions.ts";
import { loadOf, placeRanges } from "../src/placement.ts";
import type { Tenure } from "../src/tenure.ts";
import { FakeStore } from "./fake-store.ts";

const heartbeatTimeoutMs = 1500;
const mebibyte = 1024 * 1024;

/**
 * ok: beats, reports, answers. slow: beats and reports, but configure requests time out
 * (a head node whose event loop or disk is stuck behind something). frozen: SIGSTOP,
 * silent and requests time out. dead: kill -9. empty: a fresh process holding nothing.
 */
type Behaviour = "ok" | "slow" | "frozen" | "dead" | "empty";

interface Sent {
  atMs: number;
  node: string;
  message: Message;
}

/** A scripted cluster around one coordinator. */
class Harness {
  readonly store = new FakeStore();
  readonly sent: Sent[] = [];
  readonly behaviour = new Map<string, Behaviour>();
  readonly pids = new Map<string, number>();
  readonly logs: string[] = [];
  /** When each head node last reported (and so was last granted a lease). */
  readonly reportedAtMs = new Map<string, number>();
  /** The coordinator under test, once started. */
  coordinator: Coordinator | undefined;
  private readonly routes = new Map<string, (message: never, context: never) => unknown>();
  private sequence = 0;

  readonly service = {
    kind: "coordinator",
    nodeId: "coordinator-1",
    logger: Object.fromEntries(
      ["debug", "info", "warn", "error"].map((level) => [
        level,
        (_context: unknown, message?: string) => this.logs.push(`${level}: ${message ?? ""}`),
      ]),
    ),
    serve: (subject: string, _options: unknown, dispatch: (m: never, c: never) => unknown) => {
      this.routes.set(subject, dispatch);
      return { stop: async () => void this.routes.delete(subject) };
    },
    serveInbox: () => ({ stop: async () => undefined }),
    setDescription: () => undefined,
    onClose: () => undefined,
    bus: {
      request: (subject: string, message: Message) => this.request(subject, message),
    },
  };

  constructor(readonly heads: string[]) {
    for (const head of heads) {
      this.behaviour.set(head, "ok");
      this.pids.set(head, 100);
    }
  }

  /** Requests refused as if nothing answered, whatever the node's behaviour. */
  unanswered: (message: Message) => boolean = () => false;

  private request(subject: string, message: Message): Promise<unknown> {
    const node = subject.split(".").at(-1)!;
    this.sent.push({ atMs: performance.now(), node, message });
    if (node === "sled-1") return this.sledAnswer(message);
    if (this.unanswered(message)) {
      return Promise.reject(new BallastError(ErrorCode.Unavailable, "no responders"));
    }
    switch (this.behaviour.get(node)) {
      case "ok":
        return Promise.resolve({});
      case "empty":
        return Promise.reject(new BallastError(ErrorCode.NotFound, `${node} holds nothing`));
      case "slow":
      case "frozen":
        // No answer: the request times out at its deadline.
        return new Promise((_, reject) =>
          setTimeout(
            () => reject(new BallastError(ErrorCode.Timeout, "no reply")),
            configureDeadlineMs,
          ),
        );
      default:
        return Promise.reject(new BallastError(ErrorCode.Unavailable, "no responders"));
    }
  }

  /**
   * The fake sled's answers to the leader's marks (store-marks.ts): it holds no blob and
   * takes every upload. Anything else is not served.
   */
  private async sledAnswer(message: Message): Promise<unknown> {
    switch (message.type) {
      case "sled.blob.list.v1":
        return { blobs: [], truncated: false };
      case "sled.blob.begin.v1":
        return { uploadId: "upload", partBytesMax: 1 << 20 };
      case "sled.blob.part.v1":
        return { bytesReceived: message.data.byteLength };
      case "sled.blob.commit.v1":
        return {};
      default:
        throw new BallastError(ErrorCode.Unavailable, "no responders");
    }
  }

  /** Heartbeats from every head node that runs, and a sled. */
  beat(): void {
    const dispatch = this.routes.get(subjects.heartbeat.pattern)!;
    const beat = (kind: "headnode" | "sled", nodeId: string, pid: number) =>
      dispatch(
        {
          type: "heartbeat.v1",
          kind,
          nodeId,
          pid,
          startedAtMs: pid,
          sentAtMs: Date.now(),
          sequence: this.sequence++,
          version: "0.1.0",
        } as never,
        { subject: subjects.heartbeat.build(kind, nodeId), isRequest: false } as never,
      );
    beat("sled", "sled-1", 1);
    for (const head of this.heads) {
      const behaviour = this.behaviour.get(head);
      if (behaviour === "ok" || behaviour === "slow" || behaviour === "empty") {
        beat("headnode", head, this.pids.get(head)!);
      }
    }
  }

  control(message: Message): unknown {
    // Head nodes' reports and checkpoint records have their own subject.
    const fromHeadNode =
      message.type === "headnode.report.v1" || message.type === "checkpoint.record.v1";
    const dispatch = this.routes.get(
      fromHeadNode ? subjects.coordinatorServices.pattern : subjects.coordinator.build(),
    );
    if (dispatch === undefined) throw new Error("no leader serves the control subject");
    return dispatch(message as never, { subject: "", isRequest: true } as never);
  }

  /** What the primaries add to their reports (a stall, say). */
  reportExtra: (record: PartitionRecord) => object = () => ({});
  /** Head nodes older than served bytes: their reports do not say they enforce them. */
  readonly olderHeads = new Set<string>();

  /** Each running head node reports the partitions it is primary of. */
  report(): void {
    for (const head of this.heads) {
      if (this.behaviour.get(head) !== "ok" && this.behaviour.get(head) !== "slow") continue;
      const primaries = this.records()
        .filter((record) => record.primary === head)
        .map((record) => ({
          volume: record.volume,
          volumeId: record.volumeId,
          partition: record.partition,
          epoch: record.epoch,
          session: 1,
          commitOpNum: 10,
          tailCommitted: true,
          followers: [...record.secondaries, ...(record.joining ?? [])].map((node) => ({
            node,
            matchOpNum: 10,
            learner: false,
          })),
          ...this.reportExtra(record),
        }));
      this.reportedAtMs.set(head, performance.now());
      void this.control({
        type: "headnode.report.v1",
        node: head,
        primaries,
        ...(this.olderHeads.has(head) ? {} : { enforcesServedBytes: true }),
      } as Message);
    }
  }

  records(): PartitionRecord[] {
    return [0, 1, 2]
      .map((index) => this.store.value<PartitionRecord>(keys.partition("v", index)))
      .filter((record) => record !== undefined);
  }

  record(index: number): PartitionRecord {
    return this.store.value<PartitionRecord>(keys.partition("v", index))!;
  }

  configures(node: string, partition: number, sinceMs = 0): Sent[] {
    return this.sent.filter(
      (sent) =>
        sent.node === node &&
        sent.atMs >= sinceMs &&
        sent.message.type === "headnode.configure.v1" &&
        sent.message.partition === partition,
    );
  }
}

function volume(harness: Harness, partitions: [string, string][]): void {
  partitions.forEach(([primary, secondary], index) => {
    harness.store.put(keys.partition("v", index), {
      volume: "v",
      volumeId: "v-1",
      partition: index,
      partitionStart: index * mebibyte,
      partitionBytes: mebibyte,
      epoch: 1,
      primary,
      secondaries: [secondary],
    } satisfies PartitionRecord);
  });
  harness.store.put(keys.volume("v"), {
    name: "v",
    id: "v-1",
    sizeBytes: partitions.length * mebibyte,
    replicaCount: 2,
    partitionBytes: mebibyte,
    createdAtMs: 1,
  });
}

/** Runs the cluster for `ms`: heartbeats every 200 ms, reports every 500 ms. */
async function run(harness: Harness, ms: number, onStep: () => void = () => undefined) {
  for (let elapsed = 0; elapsed < ms; elapsed += 100) {
    if (elapsed % 200 === 0) harness.beat();
    if (elapsed % 500 === 0) harness.report();
    onStep();
    await vi.advanceTimersByTimeAsync(100);
  }
}

async function started(
  heads: string[],
  partitions: [string, string][],
  behaviour: Record<string, Behaviour> = {},
  config: object = {},
) {
  const harness = new Harness(heads);
  for (const [head, what] of Object.entries(behaviour)) harness.behaviour.set(head, what);
  volume(harness, partitions);
  const coordinator = new Coordinator(
    harness.service as never,
    { heartbeatTimeoutMs, partitionBytes: mebibyte, ...config } as never,
    harness.store,
  );
  await coordinator.start();
  harness.coordinator = coordinator;
  await run(harness, 3000); // leads, fences, hears everyone, configures everyone
  return harness;
}

beforeEach(() => {
  vi.useFakeTimers({
    toFake: ["setTimeout", "clearTimeout", "setInterval", "clearInterval", "Date", "performance"],
  });
});
afterEach(() => {
  vi.useRealTimers();
});

describe("reconcile", () => {
  test("a slow head node delays nobody; frozen, it is replaced as fast as a killed one", async () => {
    // head-1 answers no configure request from the start, so requests to it are always
    // outstanding: nothing that decides may wait for them.
    const harness = await started(
      ["head-1", "head-2", "head-3", "head-4"],
      [
        ["head-1", "head-2"],
        ["head-3", "head-4"],
      ],
      { "head-1": "slow" },
    );
    expect(harness.configures("head-1", 0).length).toBeGreaterThanOrEqual(1);
    expect(harness.records().map((record) => record.term)).toEqual([1, 1]);
    const faultAtMs = performance.now();
    harness.behaviour.set("head-1", "frozen"); // SIGSTOP: silent, requests hang
    harness.behaviour.set("head-3", "dead"); // kill -9: silent, requests refused
    const promotedAtMs = new Map<number, number>();
    await run(harness, 10_000, () => {
      for (const index of [0, 1]) {
        if (!promotedAtMs.has(index) && harness.record(index).epoch > 1) {
          promotedAtMs.set(index, performance.now() - faultAtMs);
        }
      }
    });
    expect(harness.record(0)).toMatchObject({ primary: "head-2", secondaries: [] });
    expect(harness.record(1)).toMatchObject({ primary: "head-4", secondaries: [] });
    // The same reconcile round replaced both.
    expect(Math.abs(promotedAtMs.get(0)! - promotedAtMs.get(1)!)).toBeLessThanOrEqual(
      reconcileIntervalMs,
    );
    // Not before the read lease each primary was last granted (plus the margin) ran out.
    const leaseMs = limits.primaryLeaseMs + limits.primaryLeaseDriftMarginMs;
    expect(faultAtMs + promotedAtMs.get(0)!).toBeGreaterThan(
      harness.reportedAtMs.get("head-1")! + leaseMs,
    );
    expect(faultAtMs + promotedAtMs.get(1)!).toBeGreaterThan(
      harness.reportedAtMs.get("head-3")! + leaseMs,
    );
    process.stdout.write(
      `frozen primary replaced after ${promotedAtMs.get(0)} ms, killed one after ${promotedAtMs.get(1)} ms (simulated)\n`,
    );
    // The new primary is configured with the lease flag and the volume's incarnation.
    const configure = harness.configures("head-2", 0).at(-1)!.message;
    expect(configure).toMatchObject({ primary: "head-2", leased: true, volumeId: "v-1" });
  });

  test("a stall the primary reports drops the secondary; restarted empty, it is told once and left alone", async () => {
    const harness = await started(
      ["head-1", "head-2", "head-3"],
      [
        ["head-1", "head-2"],
        ["head-3", "head-1"],
      ],
    );
    // head-1 reports that head-2 keeps partition 0's commits waiting.
    harness.reportExtra = (record) =>
      record.partition === 0 && record.secondaries.includes("head-2")
        ? { followers: [{ node: "head-2", matchOpNum: 3, learner: false, stalledMs: 5000 }] }
        : {};
    await run(harness, 600);
    // Dropped: a learner takes its place (head-3, the only spare), not head-2 again. (A
    // report with a stall is decided at once, so the learner may already be in.)
    expect(harness.record(0)).toMatchObject({ primary: "head-1", secondaries: [] });
    expect(harness.record(0).epoch).toBeGreaterThanOrEqual(2);
    await run(harness, 1000);
    expect(harness.record(0).learners).toEqual(["head-3"]);
    // head-2 restarts with nothing: the leader tells it once that it is out, no more.
    harness.behaviour.set("head-2", "empty");
    harness.pids.set("head-2", 200);
    const restartedAtMs = performance.now();
    await run(harness, 10_000);
    expect(harness.configures("head-2", 0, restartedAtMs)).toHaveLength(1);
    // Every other partition kept being served: partition 1 never changed.
    expect(harness.record(1).epoch).toBe(1);
  });
});

describe("report answers", () => {
  test("name the leader's term, so that a head node can tell an ex-leader's grant", async () => {
    const harness = await started(["head-1", "head-2"], [["head-1", "head-2"]]);
    const answer = await harness.control({
      type: "headnode.report.v1",
      node: "head-1",
      session: 1,
      seq: 1,
      primaries: [],
    } as Message);
    expect(answer).toMatchObject({ term: 1, leaseMs: limits.primaryLeaseMs });
  });
});

describe("volumes", () => {
  test("describe shows the incarnation and each partition once, however often it is listed", async () => {
    const harness = await started(["head-1", "head-2"], [["head-1", "head-2"]]);
    harness.store.listTwice.add(keys.partition("v", 0));
    const state = (await harness.control({ type: "volume.describe.v1", name: "v" })) as {
      id: string;
      partitions: { partition: number; joining: string[] }[];
    };
    expect(state.id).toBe("v-1");
    expect(state.partitions.map((partition) => partition.partition)).toEqual([0]);
    expect(state.partitions[0]!.joining).toEqual([]);
  });

  test("a create over the partition limit is refused with the partition size that would do", async () => {
    const harness = await started(["head-1", "head-2"], [["head-1", "head-2"]]);
    const gibibyte = 1024 * mebibyte;
    // 128 TiB of 1 GiB partitions: 2^17 of them.
    await expect(
      harness.control({
        type: "volume.create.v1",
        name: "big",
        sizeBytes: 128 * 1024 * gibibyte,
        partitionBytes: gibibyte,
      }),
    ).rejects.toMatchObject({
      code: ErrorCode.InvalidArgument,
      message: expect.stringContaining(
        `131072 partitions is over the limit of ${limits.partitionsPerVolumeMax}: use partitions of at least ${2 * gibibyte} bytes`,
      ),
    });
    expect(harness.store.value(keys.volume("big"))).toBeUndefined();
  });

  test("describe lists a large volume a page at a time; a resize answers the first page", async () => {
    const page = limits.describePartitionsMax;
    const pairs = Array.from({ length: page + 5 }, (): [string, string] => ["head-1", "head-2"]);
    const harness = await started(["head-1", "head-2"], pairs);
    type Page = {
      partitionCount: number;
      partitionsNext?: number;
      partitions: { partition: number }[];
    };
    const first = (await harness.control({ type: "volume.describe.v1", name: "v" })) as Page;
    expect(first.partitionCount).toBe(page + 5);
    expect(first.partitions).toHaveLength(page);
    expect(first.partitions.at(-1)!.partition).toBe(page - 1);
    expect(first.partitionsNext).toBe(page);
    const second = (await harness.control({
      type: "volume.describe.v1",
      name: "v",
      partitionsFrom: first.partitionsNext,
    })) as Page;
    expect(second.partitions.map((entry) => entry.partition)).toEqual(
      [0, 1, 2, 3, 4].map((index) => page + index),
    );
    expect(second.partitionsNext).toBeUndefined();
    // A resize that changes nothing answers the state: its first page.
    const resized = (await harness.control({
      type: "volume.resize.v1",
      name: "v",
      sizeBytes: (page + 5) * mebibyte,
    })) as Page;
    expect(resized.partitions).toHaveLength(page);
    expect(resized.partitionsNext).toBe(page);
  });

  test("list names each volume with its partition count, not its partitions", async () => {
    const harness = await started(["head-1", "head-2"], [["head-1", "head-2"]]);
    const listed = (await harness.control({ type: "volume.list.v1" })) as {
      volumes: Record<string, unknown>[];
    };
    expect(listed.volumes).toHaveLength(1);
    expect(listed.volumes[0]).toMatchObject({ name: "v", id: "v-1", partitionCount: 1 });
    expect(listed.volumes[0]).not.toHaveProperty("partitions");
  });

  test("delete tells every live head node to drop the incarnation; a re-create is another one", async () => {
    const harness = await started(["head-1", "head-2", "head-3"], [["head-1", "head-2"]]);
    harness.behaviour.set("head-3", "slow"); // does not answer: logged, not fatal
    const deleting = harness.control({ type: "volume.delete.v1", name: "v" });
    await run(harness, configureDeadlineMs + 500);
    expect(await deleting).toEqual({ name: "v", deleted: true });
    const drops = harness.sent.filter((sent) => sent.message.type === "headnode.drop.v1");
    expect(drops.map((sent) => [sent.node, sent.message])).toEqual(
      ["head-1", "head-2", "head-3"].map((node) => [
        node,
        { type: "headnode.drop.v1", volume: "v", volumeId: "v-1" },
      ]),
    );
    expect(harness.records()).toEqual([]);
    // The incarnation is left to the purger, durably: its chunks and blobs remain.
    expect(harness.store.value(keys.purge("v-1"))).toMatchObject({ volume: "v", volumeId: "v-1" });
    harness.behaviour.set("head-3", "ok");
    const created = (await harness.control({
      type: "volume.create.v1",
      name: "v",
      sizeBytes: mebibyte,
      partitionBytes: mebibyte,
    })) as { id: string };
    expect(created.id).not.toBe("v-1");
    expect(harness.record(0).volumeId).toBe(created.id);
    // Its replicas were configured with the new incarnation before the answer.
    const configured = harness.sent.filter(
      (sent) =>
        sent.message.type === "headnode.configure.v1" && sent.message.volumeId === created.id,
    );
    expect(configured).toHaveLength(2);
  });

  test("a head node that misses the delete's drop is told again once it is heard", async () => {
    const harness = await started(["head-1", "head-2", "head-3"], [["head-1", "head-2"]]);
    // The primary freezes (SIGSTOP, or cut off from the bus) and its heartbeats lapse:
    // the delete does not count it alive and sends it nothing. head-3 is heard but its
    // drop times out.
    harness.behaviour.set("head-1", "frozen");
    await run(harness, heartbeatTimeoutMs + 500);
    harness.behaviour.set("head-3", "slow");
    const deleting = harness.control({ type: "volume.delete.v1", name: "v" });
    await run(harness, configureDeadlineMs + 500);
    expect(await deleting).toEqual({ name: "v", deleted: true });
    const dropsTo = (node: string, sinceMs = 0) =>
      harness.sent.filter(
        (sent) =>
          sent.node === node && sent.atMs >= sinceMs && sent.message.type === "headnode.drop.v1",
      );
    expect(dropsTo("head-1")).toEqual([]);
    // Both come back (SIGCONT): a purge pass tells each of them.
    harness.behaviour.set("head-1", "ok");
    harness.behaviour.set("head-3", "ok");
    const backAtMs = performance.now();
    await run(harness, purgeGraceMs + 2 * purgePassIntervalMs);
    const drop = { type: "headnode.drop.v1", volume: "v", volumeId: "v-1" };
    expect(dropsTo("head-1", backAtMs).map((sent) => sent.message)).toEqual([drop]);
    expect(dropsTo("head-3", backAtMs).map((sent) => sent.message)).toEqual([drop]);
    // Owed durably: the purge record names every head node that may hold a replica.
    expect(harness.store.value(keys.purge("v-1"))).toMatchObject({
      headNodes: ["head-1", "head-2", "head-3"],
    });
  });
});

describe("resize", () => {
  const stored = (harness: Harness, index: number) =>
    harness.store.value<PartitionRecord>(keys.partition("v", index));

  test("a grow places new partitions as create would and configures them before answering", async () => {
    const harness = await started(["head-1", "head-2", "head-3"], [["head-1", "head-2"]]);
    const before = [stored(harness, 0)!];
    const alive = ["head-1", "head-2", "head-3"];
    const expected = placeRanges(
      "v",
      "v-1",
      [
        { partition: 1, partitionStart: mebibyte, partitionBytes: mebibyte },
        // Half past the size: its primary is told to serve only the half inside.
        {
          partition: 2,
          partitionStart: 2 * mebibyte,
          partitionBytes: mebibyte,
          servedBytes: 0.5 * mebibyte,
        },
      ],
      2,
      alive,
      loadOf(before, alive),
    );
    const answer = (await harness.control({
      type: "volume.resize.v1",
      name: "v",
      sizeBytes: 2.5 * mebibyte,
    })) as { sizeBytes: number; partitions: unknown[] };
    expect(answer.sizeBytes).toBe(2.5 * mebibyte);
    expect(answer.partitions).toHaveLength(3);
    expect(answer).not.toHaveProperty("term");
    for (const record of expected) {
      expect(stored(harness, record.partition)).toEqual({ ...record, term: 1 });
      expect(harness.configures(record.primary, record.partition)).toHaveLength(1);
    }
    expect(harness.configures(expected[1]!.primary, 2)[0]!.message).toMatchObject({
      servedBytes: 0.5 * mebibyte,
    });
    expect(harness.store.value(keys.volume("v"))).toMatchObject({
      sizeBytes: 2.5 * mebibyte,
      term: 1,
    });
    // A grow that fits in the last partition adds nothing and trims what it reveals.
    harness.behaviour.set("2", "ok"); // partition 2's volume subject answers
    await harness.control({ type: "volume.resize.v1", name: "v", sizeBytes: 3 * mebibyte });
    expect(stored(harness, 3)).toBeUndefined();
    const onVolume = harness.sent
      .filter((sent) => sent.message.type.startsWith("volume."))
      .map((sent) => sent.message);
    // The revealed half is trimmed first (past the end its primary serves), then the
    // partition's served bytes are raised in a new epoch, which its primary confirms.
    expect(onVolume).toEqual([
      {
        type: "volume.trim.v1",
        volume: "v",
        partition: 2,
        epoch: 1,
        volumeId: "v-1",
        ranges: [{ offset: 2.5 * mebibyte, length: 0.5 * mebibyte }],
        pastEnd: true,
      },
      { type: "volume.flush.v1", volume: "v", partition: 2, epoch: 2, volumeId: "v-1" },
    ]);
    expect(stored(harness, 2)).toMatchObject({ epoch: 2, servedBytes: mebibyte });
    expect(harness.configures(expected[1]!.primary, 2).at(-1)!.message).toMatchObject({
      epoch: 2,
      servedBytes: mebibyte,
    });
    expect(harness.store.value(keys.volume("v"))).toMatchObject({ sizeBytes: 3 * mebibyte });
  });

  test("a shrink is refused without allowShrink; with it the tail is trimmed first", async () => {
    const harness = await started(
      ["head-1", "head-2", "head-3"],
      [
        ["head-1", "head-2"],
        ["head-2", "head-3"],
      ],
    );
    const shrink = { type: "volume.resize.v1" as const, name: "v", sizeBytes: 0.5 * mebibyte };
    await expect(harness.control(shrink)).rejects.toMatchObject({
      code: ErrorCode.InvalidArgument,
      message: expect.stringContaining("--allow-shrink"),
    });
    expect(harness.store.value(keys.volume("v"))).toMatchObject({ sizeBytes: 2 * mebibyte });
    expect(harness.sent.some((sent) => sent.message.type === "volume.trim.v1")).toBe(false);
    harness.behaviour.set("0", "ok");
    harness.behaviour.set("1", "ok");
    const answer = (await harness.control({ ...shrink, allowShrink: true })) as {
      sizeBytes: number;
      partitions: unknown[];
    };
    expect(answer.sizeBytes).toBe(0.5 * mebibyte);
    expect(answer.partitions).toHaveLength(2); // kept, trimmed
    const onVolume = harness.sent.filter((sent) => sent.message.type.startsWith("volume."));
    // Each partition's served bytes are lowered in a new epoch and confirmed by its
    // primary (a flush in that epoch) before any of the tail is trimmed; the trims pass
    // the end they trim past.
    expect(
      onVolume.map((sent) => [
        sent.message.type,
        sent.node,
        (sent.message as { epoch: number }).epoch,
      ]),
    ).toEqual([
      ["volume.flush.v1", "0", 2],
      ["volume.flush.v1", "1", 2],
      ["volume.trim.v1", "0", 2],
      ["volume.trim.v1", "1", 2],
    ]);
    expect(
      onVolume.slice(2).map((sent) => [(sent.message as { ranges: unknown }).ranges, sent.message]),
    ).toEqual([
      [
        [{ offset: 0.5 * mebibyte, length: 0.5 * mebibyte }],
        expect.objectContaining({ pastEnd: true }),
      ],
      [[{ offset: mebibyte, length: mebibyte }], expect.objectContaining({ pastEnd: true })],
    ]);
    expect(stored(harness, 0)).toMatchObject({ epoch: 2, servedBytes: 0.5 * mebibyte });
    expect(stored(harness, 1)).toMatchObject({ epoch: 2, servedBytes: 0 });
    // The primaries are configured with the new end (the configure that the flush
    // then finds in force).
    expect(harness.configures("head-1", 0).at(-1)!.message).toMatchObject({
      epoch: 2,
      servedBytes: 0.5 * mebibyte,
    });
    expect(harness.configures("head-2", 1).at(-1)!.message).toMatchObject({
      epoch: 2,
      servedBytes: 0,
    });
    expect(harness.store.value(keys.volume("v"))).toMatchObject({ sizeBytes: 0.5 * mebibyte });
  });

  test("a shrink trims nothing until every primary has confirmed the new end", async () => {
    const harness = await started(
      ["head-1", "head-2", "head-3"],
      [
        ["head-1", "head-2"],
        ["head-2", "head-3"],
      ],
    );
    harness.behaviour.set("0", "dead"); // partition 0's subject: nobody answers, yet
    harness.behaviour.set("1", "ok");
    const resizing = Promise.resolve(
      harness.control({
        type: "volume.resize.v1",
        name: "v",
        sizeBytes: 0.5 * mebibyte,
        allowShrink: true,
      }),
    );
    let answered = false;
    void resizing.then(() => {
      answered = true;
    });
    await run(harness, 3000);
    const onVolume = () =>
      harness.sent.filter((sent) => sent.message.type.startsWith("volume.")).map((sent) => sent);
    // Partition 0's confirmation is still being asked for; no trim has gone out.
    expect(answered).toBe(false);
    expect(onVolume().filter((sent) => sent.node === "0").length).toBeGreaterThan(1);
    expect(onVolume().some((sent) => sent.message.type === "volume.trim.v1")).toBe(false);
    expect(harness.store.value(keys.volume("v"))).toMatchObject({ sizeBytes: 2 * mebibyte });
    harness.behaviour.set("0", "ok");
    await run(harness, 1000);
    await resizing;
    const sent = onVolume();
    const firstTrim = sent.findIndex((one) => one.message.type === "volume.trim.v1");
    expect(firstTrim).toBeGreaterThan(0);
    expect(sent.slice(firstTrim).map((one) => one.message.type)).toEqual([
      "volume.trim.v1",
      "volume.trim.v1",
    ]);
    expect(harness.store.value(keys.volume("v"))).toMatchObject({ sizeBytes: 0.5 * mebibyte });
  });

  test("after a shrink, a new primary is configured with the volume's end from the record", async () => {
    const harness = await started(
      ["head-1", "head-2", "head-3"],
      [
        ["head-1", "head-2"],
        ["head-2", "head-3"],
      ],
    );
    harness.behaviour.set("0", "ok");
    harness.behaviour.set("1", "ok");
    await harness.control({
      type: "volume.resize.v1",
      name: "v",
      sizeBytes: 0.5 * mebibyte,
      allowShrink: true,
    });
    expect(harness.record(0)).toMatchObject({ primary: "head-1", epoch: 2 });
    harness.behaviour.set("head-1", "dead");
    await run(harness, 10_000);
    // Failed over: the decision kept the record's end, and the promoted primary is
    // configured with it.
    expect(harness.record(0)).toMatchObject({
      primary: "head-2",
      servedBytes: 0.5 * mebibyte,
    });
    expect(harness.record(0).epoch).toBeGreaterThan(2);
    expect(harness.configures("head-2", 0).at(-1)!.message).toMatchObject({
      primary: "head-2",
      epoch: harness.record(0).epoch,
      servedBytes: 0.5 * mebibyte,
    });
  });

  test("a resize to the same size gives a record from before servedBytes past the end its end", async () => {
    const harness = await started(
      ["head-1", "head-2", "head-3"],
      [
        ["head-1", "head-2"],
        ["head-2", "head-3"],
      ],
    );
    // Shrunk to 1 MiB before the field existed: partition 1 is kept, and still served.
    const current = harness.store.value<{ sizeBytes: number }>(keys.volume("v"))!;
    harness.store.put(keys.volume("v"), { ...current, sizeBytes: mebibyte });
    await run(harness, 2000);
    harness.behaviour.set("1", "ok");
    await harness.control({ type: "volume.resize.v1", name: "v", sizeBytes: mebibyte });
    expect(stored(harness, 0)).toMatchObject({ epoch: 1 });
    expect(stored(harness, 0)).not.toHaveProperty("servedBytes");
    expect(stored(harness, 1)).toMatchObject({ epoch: 2, servedBytes: 0 });
    expect(
      harness.sent
        .filter((sent) => sent.message.type.startsWith("volume."))
        .map((sent) => sent.message),
    ).toEqual([{ type: "volume.flush.v1", volume: "v", partition: 1, epoch: 2, volumeId: "v-1" }]);
  });

  test("a shrink that fails after lowering the ends is recorded, shown by describe, and finished by the leader", async () => {
    const harness = await started(
      ["head-1", "head-2", "head-3"],
      [
        ["head-1", "head-2"],
        ["head-2", "head-3"],
      ],
    );
    harness.behaviour.set("0", "ok");
    harness.behaviour.set("1", "ok");
    // The primaries confirm their new ends, but no trim is answered.
    harness.unanswered = (message) => message.type === "volume.trim.v1";
    const shrinking = Promise.resolve(
      harness.control({
        type: "volume.resize.v1",
        name: "v",
        sizeBytes: 0.5 * mebibyte,
        allowShrink: true,
      }),
    ).then(
      () => undefined,
      (error: BallastError) => error,
    );
    let failure: BallastError | undefined;
    void shrinking.then((error) => {
      failure = error;
    });
    await run(harness, 30_000, () => {
      if (failure !== undefined) harness.unanswered = () => false;
    });
    expect(failure).toMatchObject({ code: ErrorCode.Unavailable });
    expect(failure?.message).toMatch(/trimming/);
    // Old: the record said 2 MiB and nothing more, ends lowered, until some resize came.
    // Now the leader finished it once the trims were answered.
    expect(harness.store.value(keys.volume("v"))).toMatchObject({ sizeBytes: 0.5 * mebibyte });
    expect(harness.store.value(keys.volume("v"))).not.toHaveProperty("shrinkingTo");
    expect(harness.logs).toContain("info: finishing a shrink begun earlier");
    const described = (await harness.control({ type: "volume.describe.v1", name: "v" })) as {
      sizeBytes: number;
      shrinkingTo?: number;
      partitions: { servedBytes?: number }[];
    };
    expect(described.sizeBytes).toBe(0.5 * mebibyte);
    expect(described.shrinkingTo).toBeUndefined();
    expect(described.partitions.map((partition) => partition.servedBytes)).toEqual([
      0.5 * mebibyte,
      0,
    ]);
  });

  test("a shrink stopped halfway is shown by describe, and a resize to another size finishes it first", async () => {
    const harness = await started(
      ["head-1", "head-2", "head-3"],
      [
        ["head-1", "head-2"],
        ["head-2", "head-3"],
      ],
    );
    harness.behaviour.set("0", "ok");
    harness.behaviour.set("1", "ok");
    harness.unanswered = (message) => message.type === "volume.trim.v1";
    const shrinking = Promise.resolve(
      harness.control({
        type: "volume.resize.v1",
        name: "v",
        sizeBytes: 0.5 * mebibyte,
        allowShrink: true,
      }),
    ).catch((error: BallastError) => error);
    await run(harness, 22_000);
    expect(await shrinking).toMatchObject({ code: ErrorCode.Unavailable });
    // Stopped after lowering the ends: describe says so, the record's size unchanged.
    const described = (await harness.control({ type: "volume.describe.v1", name: "v" })) as {
      sizeBytes: number;
      shrinkingTo?: number;
      partitions: { servedBytes?: number }[];
    };
    expect(described.sizeBytes).toBe(2 * mebibyte);
    expect(described.shrinkingTo).toBe(0.5 * mebibyte);
    expect(described.partitions.map((partition) => partition.servedBytes)).toEqual([
      0.5 * mebibyte,
      0,
    ]);
    // A grow back to the old size finishes the shrink first (its tail, maybe trimmed in
    // part, is trimmed whole), then grows: the tail reads as zeros, never half trimmed.
    harness.unanswered = () => false;
    const trimsBefore = harness.sent.filter((sent) => sent.message.type === "volume.trim.v1");
    const grown = Promise.resolve(
      harness.control({ type: "volume.resize.v1", name: "v", sizeBytes: 2 * mebibyte }),
    );
    await run(harness, 2000);
    await grown;
    const trims = harness.sent
      .filter((sent) => sent.message.type === "volume.trim.v1")
      .slice(trimsBefore.length)
      .map((sent) => (sent.message as { ranges: unknown }).ranges);
    expect(trims).toContainEqual([{ offset: 0.5 * mebibyte, length: 0.5 * mebibyte }]);
    expect(trims).toContainEqual([{ offset: mebibyte, length: mebibyte }]);
    expect(harness.store.value(keys.volume("v"))).toMatchObject({ sizeBytes: 2 * mebibyte });
    expect(harness.store.value(keys.volume("v"))).not.toHaveProperty("shrinkingTo");
    expect(stored(harness, 0)).toMatchObject({ servedBytes: mebibyte });
    expect(stored(harness, 1)).toMatchObject({ servedBytes: mebibyte });
  });

  test("a shrink is refused, naming the node, while a head node serving the volume does not enforce ends", async () => {
    const harness = await started(
      ["head-1", "head-2", "head-3"],
      [
        ["head-1", "head-2"],
        ["head-2", "head-3"],
      ],
    );
    harness.behaviour.set("0", "ok");
    harness.behaviour.set("1", "ok");
    // head-3 (partition 1's secondary) still runs a version older than served bytes.
    harness.olderHeads.add("head-3");
    await run(harness, 1000);
    const shrink = {
      type: "volume.resize.v1" as const,
      name: "v",
      sizeBytes: 0.5 * mebibyte,
      allowShrink: true,
    };
    const sentBefore = harness.sent.length;
    // Old: shrunk, with the end not enforced should head-3 be promoted.
    await expect(Promise.resolve(harness.control(shrink))).rejects.toMatchObject({
      code: ErrorCode.InvalidArgument,
      message: expect.stringMatching(
        /head-3 \(runs a head node that does not enforce volume ends\)/,
      ),
    });
    expect(
      harness.sent.slice(sentBefore).some((sent) => sent.message.type.startsWith("volume.")),
    ).toBe(false);
    expect(harness.store.value(keys.volume("v"))).toMatchObject({ sizeBytes: 2 * mebibyte });
    expect(harness.store.value(keys.volume("v"))).not.toHaveProperty("shrinkingTo");
    // Upgraded (its next report says so): the shrink goes ahead.
    harness.olderHeads.clear();
    await run(harness, 1000);
    const shrunk = Promise.resolve(harness.control(shrink));
    await run(harness, 2000);
    expect(await shrunk).toMatchObject({ sizeBytes: 0.5 * mebibyte });
  });

  test("a size create would refuse is refused, and nothing changes", async () => {
    const harness = await started(["head-1", "head-2"], [["head-1", "head-2"]]);
    await expect(
      harness.control({ type: "volume.resize.v1", name: "v", sizeBytes: 2 * mebibyte + 1 }),
    ).rejects.toMatchObject({ code: ErrorCode.InvalidArgument });
    await expect(
      harness.control({ type: "volume.resize.v1", name: "nope", sizeBytes: 2 * mebibyte }),
    ).rejects.toMatchObject({ code: ErrorCode.NotFound });
    expect(harness.store.value(keys.volume("v"))).toMatchObject({ sizeBytes: mebibyte });
    expect(stored(harness, 1)).toBeUndefined();
  });
});

describe("checkpoints", () => {
  const pointer = (opNum: number) => ({
    opNum,
    blobKey: `checkpoints/x/0/${opNum}`,
    sleds: ["sled-1"],
    bytes: 1,
    createdAtMs: 1,
  });

  test("a late record from a deleted incarnation is refused, not kept under its re-creation's name", async () => {
    const harness = await started(["head-1", "head-2", "head-3"], [["head-1", "head-2"]]);
    await harness.control({ type: "volume.delete.v1", name: "v" });
    const created = (await harness.control({
      type: "volume.create.v1",
      name: "v",
      sizeBytes: mebibyte,
      partitionBytes: mebibyte,
    })) as { id: string };
    // A member of the new incarnation that also held a replica of the old one.
    const node = harness.record(0).primary;
    const outsider = ["head-1", "head-2", "head-3"].find(
      (head) => head !== node && !harness.record(0).secondaries.includes(head),
    )!;
    const record = (volumeId: string | undefined, from: string, opNum: number) =>
      harness.control({
        type: "checkpoint.record.v1",
        volume: "v",
        ...(volumeId === undefined ? {} : { volumeId }),
        partition: 0,
        node: from,
        checkpoint: pointer(opNum),
      });
    await expect(record("v-1", node, 7)).rejects.toMatchObject({
      code: ErrorCode.NotFound,
      message: expect.stringContaining(
        `incarnation v-1 is gone (the volume is now incarnation ${created.id})`,
      ),
    });
    expect(harness.store.value(keys.checkpoint("v", 0, node))).toBeUndefined();
    // The current incarnation's member is recorded; a non-member still is not.
    expect(await record(created.id, node, 8)).toEqual({});
    expect(harness.store.value(keys.checkpoint("v", 0, node))).toEqual(pointer(8));
    await expect(record(created.id, outsider, 9)).rejects.toMatchObject({
      code: ErrorCode.NotFound,
      message: expect.stringContaining(`${outsider} is not a member of v/0`),
    });
    // A head node that names no incarnation is checked for membership only, as before.
    expect(await record(undefined, node, 10)).toEqual({ replaced: pointer(8) });
  });

  test("a record for a volume whose delete died halfway is refused", async () => {
    const harness = await started(["head-1", "head-2"], [["head-1", "head-2"]]);
    // The volume record is gone, its partition records (naming head-1) are left.
    await harness.store.delete(keys.volume("v"));
    expect(harness.record(0).primary).toBe("head-1");
    await expect(
      harness.control({
        type: "checkpoint.record.v1",
        volume: "v",
        volumeId: "v-1",
        partition: 0,
        node: "head-1",
        checkpoint: pointer(1),
      }),
    ).rejects.toMatchObject({
      code: ErrorCode.NotFound,
      message: expect.stringContaining("the volume is deleted"),
    });
    expect(harness.store.value(keys.checkpoint("v", 0, "head-1"))).toBeUndefined();
  });
});

describe("head nodes membership evicts (unit, fake bus and timers)", () => {
  test("the leader keeps notes of the last evictedHeadNodesNotedMax evicted, who are told they are out if heard again; earlier ones are handled as new nodes", async () => {
    // Head nodes that were told they are out of a partition (deposed primaries, here),
    // then went silent past eviction: the leader kept every one's acknowledgement of the
    // partition, marked out of date, for as long as it led. Replaced head nodes under
    // new ids piled up, one entry per partition each.
    const harness = await started(
      ["head-1", "head-2", "mem-1", "mem-2"],
      [
        ["head-1", "head-2"],
        ["mem-1", "mem-2"],
      ],
    );
    const leader = () => (harness.coordinator as unknown as { leader: Tenure }).leader;
    const ghosts = Array.from(
      { length: evictedHeadNodesNotedMax + 1 },
      (_, index) => `ghost-${String(index).padStart(2, "0")}`,
    );
    const claims = (ghost: string) =>
      harness.control({
        type: "headnode.report.v1",
        node: ghost,
        primaries: [
          {
            volume: "v",
            volumeId: "v-1",
            partition: 0,
            epoch: 1,
            session: 1,
            commitOpNum: 10,
            tailCommitted: true,
            followers: [],
          },
        ],
      } as Message);
    for (const ghost of ghosts) {
      harness.heads.push(ghost);
      harness.behaviour.set(ghost, "ok");
      harness.pids.set(ghost, 100);
    }
    await run(harness, 400); // heard
    // Each reports itself primary of partition 0 (woken from a pause): it is told it is out.
    for (const ghost of ghosts) claims(ghost);
    await run(harness, 1000);
    for (const ghost of ghosts) {
      expect(harness.configures(ghost, 0).at(-1)?.message).toMatchObject({ primary: "head-1" });
    }
    // Cut off from the bus (not killed), in order, for longer than eviction: partition 1's
    // members first (it waits for them: nothing holds its writes), then the ghosts.
    const silenced = ["mem-1", "mem-2", ...ghosts];
    const dropped = silenced.slice(0, silenced.length - evictedHeadNodesNotedMax);
    const kept = silenced.slice(-evictedHeadNodesNotedMax);
    for (const ghost of silenced) {
      harness.behaviour.set(ghost, "frozen");
      await run(harness, 100);
    }
    for (let elapsedMs = 0; elapsedMs < memberEvictAfterMsDefault + 10_000; elapsedMs += 1000) {
      harness.beat();
      harness.report();
      await vi.advanceTimersByTimeAsync(1000);
    }
    expect(harness.logs.filter((line) => line.includes("forgot a member"))).toHaveLength(
      silenced.length,
    );
    const noted = new Set<string>();
    for (const key of ["v-1/0", "v-1/1"]) {
      for (const map of [leader().configured, leader().asked]) {
        for (const node of map.get(key)?.keys() ?? []) noted.add(node);
      }
    }
    expect(noted).toEqual(new Set(["head-1", "head-2", ...kept]));
    expect([...leader().evicted]).toEqual(kept);

    // All back, un-restarted: those noted are told they are out, as after a short silence.
    const backAtMs = performance.now();
    for (const node of silenced) harness.behaviour.set(node, "ok");
    await run(harness, 1000);
    for (const ghost of kept) expect(harness.configures(ghost, 0, backAtMs)).toHaveLength(1);
    expect(leader().evicted.size).toBe(0);
    // Those dropped are nodes like any new one: the members of partition 1 are configured
    // as members; a ghost is told it is out once it reports the partition it no longer
    // leads.
    for (const member of ["mem-1", "mem-2"]) {
      expect(harness.configures(member, 1, backAtMs).at(-1)?.message).toMatchObject({
        epoch: 1,
        primary: "mem-1",
        secondaries: ["mem-2"],
      });
    }
    const reportedAtMs = performance.now();
    for (const ghost of dropped.filter((node) => node.startsWith("ghost"))) claims(ghost);
    await run(harness, 1000);
    for (const ghost of dropped.filter((node) => node.startsWith("ghost"))) {
      expect(harness.configures(ghost, 0, reportedAtMs).at(-1)?.message).toMatchObject({
        primary: "head-1",
        secondaries: ["head-2"],
      });
    }
    // The partitions themselves never changed.
    expect(harness.records().map((record) => record.epoch)).toEqual([1, 1]);
  }, 60_000);
});

/**
 * The path from `root` to `target` through own properties, Map keys and values, Set
 * members and array elements (not closures), or undefined if `target` is not reachable.
 */
function pathTo(root: object, target: object): string | undefined {
  const seen = new Set<object>([root]);
  const queue: [unknown, string][] = [[root, "parts"]];
  for (let head = 0; head < queue.length; head++) {
    const [value, path] = queue[head]!;
    if (value === target) return path;
    if (typeof value !== "object" || value === null || ArrayBuffer.isView(value)) continue;
    const children: [unknown, string][] =
      value instanceof Map
        ? [...value].flatMap(([key, child]): [unknown, string][] => [
            [key, `${path}.key`],
            [child, `${path}[${String(key)}]`],
          ])
        : value instanceof Set
          ? [...value].map((child): [unknown, string] => [child, `${path}.member`])
          : Object.entries(value).map(([key, child]): [unknown, string] => [
              child,
              `${path}.${key}`,
            ]);
    for (const [child, childPath] of children) {
      if (child === target) return childPath;
      if (typeof child !== "object" || child === null || seen.has(child)) continue;
      seen.add(child);
      queue.push([child, childPath]);
    }
  }
  return undefined;
}

describe("a coordinator that stops leading (unit, fake bus and timers)", () => {
  test("keeps nothing of the tenure it led once its periodic work has ticked", async () => {
    // Sweeps every second, so that both sweeps' passes run while it leads.
    const harness = await started(
      ["head-1", "head-2"],
      [["head-1", "head-2"]],
      {},
      { sweepIntervalMs: 1000, sweepGraceMs: 1000 },
    );
    await run(harness, 12_000);
    const coordinator = harness.coordinator as unknown as { leader: Tenure; parts: object };
    const ended = coordinator.leader;
    expect(ended?.ready).toBe(true);
    expect(pathTo(coordinator.parts, ended)).toBeDefined(); // the parts hold it while it leads
    // Another coordinator takes the key over and keeps renewing it: this one is a standby.
    const takeOver = () =>
      harness.store.put("leader", { coordinator: "coordinator-2", term: 1_000 });
    // Heartbeats go on; reports stop (no leader serves them here).
    for (let elapsed = 0; elapsed < 5000; elapsed += 100) {
      takeOver();
      if (elapsed % 200 === 0) harness.beat();
      await vi.advanceTimersByTimeAsync(100);
    }
    expect(coordinator.leader).toBeUndefined();
    expect(harness.logs.some((line) => line.includes("lost the leadership"))).toBe(true);
    // Before, the reconciler, the purger, the sweeps and their schedules each kept the
    // ended tenure (its copy of the catalogue, its lease book) until this coordinator
    // next led: on a standby, for months.
    expect(pathTo(coordinator.parts, ended)).toBeUndefined();
  }, 60_000);
});
