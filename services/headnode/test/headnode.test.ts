// Scenario tests of the head node shell, on real journals in a temporary directory and a
// fake service in place of NATS: the node's inbox and volume subjects are called
// directly, and the fake coordinator answers reports. They cover what the shell decides
// about whole replicas: incarnations, drops, learners re-added, partitions it has left,
// and read leases renewed by reports.

import { existsSync } from "node:fs";
import { join } from "node:path";
import { type BallastError, ErrorCode, limits, subjects } from "@ballast/protocol";
import { afterEach, beforeEach, describe, expect, test, vi } from "vitest";
import { dropsJoinedMax, reportSoonSpacingMs } from "../src/constants.ts";
import { type FakeService, startHeadNode } from "./fake-service.ts";

const partitionBytes = 1024 * 1024;
let dataDir: string;
let service: FakeService;
let stop: () => Promise<void>;

beforeEach(async () => {
  ({ dataDir, service, stop } = await startHeadNode("ballast-headnode-"));
});

afterEach(async () => {
  await stop();
});

function configure(fields: Record<string, unknown>) {
  return service.inbox({
    type: "headnode.configure.v1",
    volume: "vol",
    partition: 0,
    partitionStart: 0,
    partitionBytes,
    epoch: 1,
    primary: "head-1",
    secondaries: [],
    sleds: ["sled-1"],
    ...fields,
  });
}

function write(epoch: number, fill: number) {
  return service.call(subjects.volume.build("vol", 0), {
    type: "volume.write.v1",
    volume: "vol",
    partition: 0,
    epoch,
    writes: [{ offset: 0, data: new Uint8Array(4096).fill(fill) }],
  });
}

async function read(epoch: number): Promise<Uint8Array> {
  const { data } = (await service.call(subjects.volume.build("vol", 0), {
    type: "volume.read.v1",
    volume: "vol",
    partition: 0,
    epoch,
    reads: [{ offset: 0, length: 4096 }],
  })) as { data: Uint8Array[] };
  return data[0]!;
}

async function codeOf(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise;
    return undefined;
  } catch (error) {
    return (error as BallastError).code;
  }
}

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 5000) {
  const start = performance.now();
  while (!(await check())) {
    if (performance.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe("volume incarnations", () => {
  test("a re-created volume never reads the deleted one's bytes, whatever the old epoch", async () => {
    await configure({ volumeId: "1-old", epoch: 7 });
    await write(7, 0xab);
    expect((await read(7))[0]).toBe(0xab);
    expect(existsSync(join(dataDir, "partitions", "1-old", "0"))).toBe(true);

    // The same name, another incarnation, starting again at epoch 1.
    const status = (await configure({ volumeId: "2-new", epoch: 1 })) as { lastOpNum: number };
    expect(status.lastOpNum).toBe(0);
    expect([...(await read(1))]).toEqual(Array(4096).fill(0));
    expect(existsSync(join(dataDir, "partitions", "1-old"))).toBe(true);
    expect(existsSync(join(dataDir, "partitions", "1-old", "0"))).toBe(false);
    expect(existsSync(join(dataDir, "partitions", "2-new", "0"))).toBe(true);
  });

  test("a configure delayed from an older incarnation answers NotFound and leaves the current one", async () => {
    await configure({ volumeId: "2-new", epoch: 1 });
    await write(1, 0x5e);
    expect(await codeOf(configure({ volumeId: "1-old", epoch: 9 }))).toBe(ErrorCode.NotFound);
    expect((await read(1))[0]).toBe(0x5e);
    expect(existsSync(join(dataDir, "partitions", "2-new", "0"))).toBe(true);
    expect(existsSync(join(dataDir, "partitions", "1-old", "0"))).toBe(false);
  });

  test("I/O naming another incarnation of the name answers WrongEpoch and changes nothing", async () => {
    await configure({ volumeId: "2-new", epoch: 1 });
    const stale = (type: string, extra: Record<string, unknown>) =>
      service.call(subjects.volume.build("vol", 0), {
        type,
        volume: "vol",
        partition: 0,
        epoch: 1,
        volumeId: "1-old",
        ...extra,
      });
    const data = new Uint8Array(4096).fill(0xcd);
    expect(await codeOf(stale("volume.write.v1", { writes: [{ offset: 0, data }] }))).toBe(
      ErrorCode.WrongEpoch,
    );
    expect(await codeOf(stale("volume.read.v1", { reads: [{ offset: 0, length: 4096 }] }))).toBe(
      ErrorCode.WrongEpoch,
    );
    expect([...(await read(1))]).toEqual(Array(4096).fill(0));
    // The right incarnation (or none named, as plain NATS clients may send) is served.
    await write(1, 0x11);
    expect((await read(1))[0]).toBe(0x11);
  });

  test("a drop closes the incarnation's replicas, removes their files and refuses it later", async () => {
    await configure({ volumeId: "1-a" });
    await write(1, 1);
    expect(
      await service.inbox({ type: "headnode.drop.v1", volume: "vol", volumeId: "id-b" }),
    ).toEqual({
      dropped: 0,
    });
    expect(
      await service.inbox({ type: "headnode.drop.v1", volume: "vol", volumeId: "1-a" }),
    ).toEqual({
      dropped: 1,
    });
    expect(existsSync(join(dataDir, "partitions", "1-a"))).toBe(false);
    expect(service.served.has(subjects.volume.build("vol", 0))).toBe(false);
    expect(
      await codeOf(
        Promise.resolve().then(() =>
          service.inbox({ type: "headnode.replica.status.v1", volume: "vol", partition: 0 }),
        ),
      ),
    ).toBe(ErrorCode.NotFound);
    // A configure of the dropped incarnation that arrives late creates nothing.
    expect(await codeOf(configure({ volumeId: "1-a", epoch: 2 }))).toBe(ErrorCode.NotFound);
    expect(existsSync(join(dataDir, "partitions", "1-a"))).toBe(false);
  });

  test("an incarnation a newer one replaced stays deleted once the newer one is dropped too", async () => {
    await configure({ volumeId: "1-a" });
    await write(1, 1);
    await configure({ volumeId: "2-b" });
    expect(
      await service.inbox({ type: "headnode.drop.v1", volume: "vol", volumeId: "2-b" }),
    ).toEqual({ dropped: 1 });
    // Nothing of the name is hosted any more: a configure of the replaced incarnation,
    // delayed, must not bring it back (as the failover simulator already modelled).
    expect(await codeOf(configure({ volumeId: "1-a", epoch: 2 }))).toBe(ErrorCode.NotFound);
    expect(existsSync(join(dataDir, "partitions", "1-a", "0"))).toBe(false);
  });
});

describe("membership", () => {
  test("a node re-added as a learner while it still holds the partition starts afresh", async () => {
    await configure({ epoch: 1 });
    await write(1, 5);
    await write(1, 6);
    // Out of the set (its replica closed, its files kept: review-leaks.md, H1), then back
    // as a learner of another primary.
    expect(await codeOf(configure({ epoch: 2, primary: "head-2", secondaries: ["head-3"] }))).toBe(
      ErrorCode.NotFound,
    );
    const status = (await configure({
      epoch: 3,
      primary: "head-2",
      secondaries: ["head-3"],
      learners: ["head-1"],
    })) as { lastOpNum: number; commitOpNum: number; epoch: number };
    expect(status).toMatchObject({ lastOpNum: 0, commitOpNum: 0, epoch: 3 });
    // Configured again as a learner in a later epoch, it keeps what it has learnt.
    await configure({
      epoch: 4,
      primary: "head-2",
      secondaries: [],
      learners: ["head-1"],
    });
    expect(
      await service.inbox({ type: "headnode.replica.status.v1", volume: "vol", partition: 0 }),
    ).toMatchObject({ epoch: 4 });
  });

  test("a primary re-added as a learner while a write waits on its secondary answers the write and takes the configure", async () => {
    // Epoch 1: primary with a secondary that never acknowledges (nothing answers here),
    // so the write waits in the replica for its commit.
    await configure({ epoch: 1, secondaries: ["head-2"] });
    const waiting = codeOf(write(1, 7));
    await new Promise((resolve) => setTimeout(resolve, 50));
    // Failed over while it was frozen, then re-added as a learner: the configure retires
    // the replica it holds. It must finish (the old shell waited for the write's handler,
    // which waited for the retired replica, and hung), and the write is answered with a
    // retryable code that says its outcome is unknown.
    const retired = configure({
      epoch: 3,
      primary: "head-2",
      secondaries: ["head-3"],
      learners: ["head-1"],
    });
    const outcome = await Promise.race([
      retired.then(() => "configured"),
      new Promise((resolve) => setTimeout(() => resolve("hung"), 3000)),
    ]);
    expect(outcome).toBe("configured");
    expect(await retired).toMatchObject({ lastOpNum: 0, epoch: 3 });
    expect(await waiting).toBe(ErrorCode.NotPrimary);
  });

  test("a stale configure naming it a learner does not discard a voter's state", async () => {
    await configure({ epoch: 5 });
    await write(5, 9);
    expect(
      await codeOf(
        configure({ epoch: 4, primary: "head-2", secondaries: [], learners: ["head-1"] }),
      ),
    ).toBe(ErrorCode.WrongEpoch);
    expect((await read(5))[0]).toBe(9);
  });

  test("a configure of a partition it neither hosts nor belongs to answers NotFound", async () => {
    expect(
      await codeOf(configure({ partition: 3, primary: "head-2", secondaries: ["head-3"] })),
    ).toBe(ErrorCode.NotFound);
    expect(existsSync(join(dataDir, "partitions", "vol", "3"))).toBe(false);
  });
});

describe("reports and read leases", () => {
  test("a leased primary reads while reports are granted, and stops once its lease runs out", async () => {
    const leaseMs = 1500;
    let granting = false;
    service.answerReport = (report) => ({
      leaseMs,
      granted: granting
        ? report.primaries.map(({ volume, partition, epoch }) => ({ volume, partition, epoch }))
        : [],
    });
    await configure({ epoch: 2, leased: true });
    await until("a first report", () => service.reports.length > 0);
    expect(await codeOf(read(2))).toBe(ErrorCode.Unavailable); // not granted
    granting = true;
    await until("a granted report", async () => (await codeOf(read(2))) === undefined);
    const [report] = service.reports;
    expect(report).toMatchObject({
      type: "headnode.report.v1",
      node: "head-1",
      primaries: [
        {
          volume: "vol",
          volumeId: "vol",
          partition: 0,
          epoch: 2,
          session: 1,
          commitOpNum: 0,
          tailCommitted: true,
          followers: [],
        },
      ],
    });
    // The coordinator stops granting (it is about to promote another primary).
    granting = false;
    await until(
      "the lease to run out",
      async () => (await codeOf(read(2))) === ErrorCode.Unavailable,
      leaseMs + 2 * limits.headnodeReportIntervalMs + 2000,
    );
  });

  test("with node leases: the whole state once, then empty changes that renew the lease", async () => {
    const leaseMs = 1500;
    // A coordinator with node leases, holding the node's state as report-state.ts
    // expects; `excluding` leaves the partition out of the node lease.
    let held = 0;
    let excluding = false;
    service.answerReport = (report) => {
      if (report.base !== undefined && report.base !== held)
        return { leaseMs, granted: [], full: true };
      held = report.seq ?? 0;
      return {
        leaseMs,
        granted: [],
        accepted: held,
        held: 1,
        ...(excluding ? { excluded: [{ volume: "vol", partition: 0, epoch: 2 }] } : {}),
      };
    };
    await configure({ epoch: 2, leased: true });
    await until("a read under the node lease", async () => (await codeOf(read(2))) === undefined);
    const count = service.reports.length;
    await until("two more reports", () => service.reports.length >= count + 2);
    const [first] = service.reports;
    expect(first).toMatchObject({ session: 1, seq: 1, primaries: [{ partition: 0, epoch: 2 }] });
    expect(first?.base).toBeUndefined();
    // Nothing changed since: the later reports carry no entry, on the last revision.
    const later = service.reports.at(-1)!;
    expect(later).toMatchObject({ primaries: [], base: (later.seq ?? 0) - 1 });
    excluding = true;
    await until(
      "the lease to run out once excluded",
      async () => (await codeOf(read(2))) === ErrorCode.Unavailable,
      leaseMs + 2 * limits.headnodeReportIntervalMs + 2000,
    );
  });

  test("an ex-leader's answers renew nothing: a term below one that answered lately", async () => {
    // Term 5 leads and answers; then only a term-4 coordinator (woken from a frozen VM
    // with its wall clock not yet set right, believing it still leads) answers, granting
    // everything. Its grants would outlast what term 5 counts on: the lease runs out.
    const leaseMs = 1500;
    let term = 5;
    let held = 0;
    let refusedWhole = 0;
    service.answerReport = (report) => {
      if (term === 5 && report.base !== undefined && report.base !== held) {
        refusedWhole++;
        return { leaseMs, granted: [], full: true, term };
      }
      if (term === 5) held = report.seq ?? 0;
      return { leaseMs, granted: [], accepted: report.seq, held: 1, term };
    };
    await configure({ epoch: 2, leased: true });
    await until("a read under term 5's lease", async () => (await codeOf(read(2))) === undefined);
    term = 4;
    await until(
      "the lease to run out though term 4 grants it",
      async () => (await codeOf(read(2))) === ErrorCode.Unavailable,
      leaseMs + 2 * limits.headnodeReportIntervalMs + 2000,
    );
    // The reports term 4 answered went as after lost answers: the next change is from
    // what term 5 accepted, so term 5, answering again, renews without a whole state.
    const refusedBefore = refusedWhole;
    term = 5;
    await until(
      "a read under term 5's lease again",
      async () => (await codeOf(read(2))) === undefined,
    );
    expect(refusedWhole).toBe(refusedBefore);
  });

  test("an unleased (static) primary reads with no coordinator at all", async () => {
    await configure({ epoch: 1 });
    await write(1, 3);
    expect((await read(1))[0]).toBe(3);
  });
});

describe("what a primary serves", () => {
  test("a primary deposed by its secondary's ack of the next epoch, then configured primary in it, serves volume and control subjects", async () => {
    const volumeSubject = subjects.volume.build("vol", 0);
    const controlSubject = subjects.partitionControl.build("vol", 0);
    await configure({ epoch: 1, secondaries: ["head-2"] });
    expect(service.served.has(volumeSubject)).toBe(true);
    expect(service.served.has(controlSubject)).toBe(true);
    // The coordinator bumps the epoch keeping head-1 primary; head-2 hears first, and
    // its acknowledgement of epoch 2 deposes head-1 (idle). The tick then demotes it and
    // stops the volume subject: held here, as a stop on NATS takes a round trip.
    let release = () => {};
    service.stopGates.set(
      volumeSubject,
      new Promise<void>((resolve) => {
        release = resolve;
      }),
    );
    await service.call(subjects.replica.build("vol", 0, "head-1"), {
      type: "replica.ack.v1",
      volume: "vol",
      partition: 0,
      epoch: 2,
      from: "head-2",
      session: 1,
      durableOpNum: 0,
      commitOpNum: 0,
      mismatch: false,
    });
    await until("the tick to stop the volume subject", () => !service.served.has(volumeSubject));
    // head-1's own configure of epoch 2 arrives while that stop is in flight.
    const configured = configure({ epoch: 2, secondaries: ["head-2"] });
    await new Promise((resolve) => setTimeout(resolve, 50));
    release();
    expect(await configured).toMatchObject({ role: "primary", epoch: 2 });
    // Let any demotion still running finish (the old shell stopped the control subject
    // here, from the role it had read before the stop).
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(service.served.has(volumeSubject)).toBe(true);
    expect(service.served.has(controlSubject)).toBe(true);
  });
});

describe("configures behind one that hangs", () => {
  test("at most one waits per partition, older ones are answered Unavailable at once, and other partitions are configured", async () => {
    const volumeSubject = subjects.volume.build("vol", 0);
    await configure({ epoch: 1, secondaries: ["head-2"] });
    // Demoted in epoch 2, the configure stops the volume subject: held here, so that
    // configure keeps running (as one did when a retire hung).
    let release = () => {};
    service.stopGates.set(
      volumeSubject,
      new Promise<void>((resolve) => {
        release = resolve;
      }),
    );
    const demoted = configure({ epoch: 2, primary: "head-2", secondaries: ["head-1"] });
    await until(
      "the demotion to stop the volume subject",
      () => !service.served.has(volumeSubject),
    );
    // The coordinator's resends, each after it gave up on the one before; and one of an
    // older epoch delivered late, which must not displace the newest.
    const settled = new Set<number>();
    const resends = [3, 4, 5, 6, 7, 5].map((epoch, index) => {
      const answer = codeOf(configure({ epoch, primary: "head-2", secondaries: ["head-1"] }));
      void answer.then(() => settled.add(index));
      return answer;
    });
    // Another partition on the node is configured meanwhile.
    expect(
      await configure({ partition: 1, partitionStart: partitionBytes, epoch: 1 }),
    ).toMatchObject({ role: "primary", epoch: 1 });
    await new Promise((resolve) => setTimeout(resolve, 50));
    // All but the newest (epoch 7) are answered, while the demotion still runs.
    expect([...settled].sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 5]);
    for (const index of [0, 1, 2, 3, 5]) expect(await resends[index]).toBe(ErrorCode.Unavailable);
    release();
    expect(await demoted).toMatchObject({ role: "secondary", epoch: 2 });
    expect(await resends[4]).toBeUndefined();
    expect(
      await service.inbox({ type: "headnode.replica.status.v1", volume: "vol", partition: 0 }),
    ).toMatchObject({ role: "secondary", epoch: 7 });
  });
});

describe("drops behind a configure that hangs", () => {
  /**
   * Hosts incarnation 1-a as primary, then starts its demotion (epoch 2) with the
   * volume subject's stop held, so that configure keeps running and holds partition
   * 0's lock until `release`.
   */
  async function hangDemotion() {
    const volumeSubject = subjects.volume.build("vol", 0);
    await configure({ volumeId: "1-a", epoch: 1, secondaries: ["head-2"] });
    let release = () => {};
    service.stopGates.set(
      volumeSubject,
      new Promise<void>((resolve) => {
        release = resolve;
      }),
    );
    const demoted = configure({
      volumeId: "1-a",
      epoch: 2,
      primary: "head-2",
      secondaries: ["head-1"],
    });
    await until(
      "the demotion to stop the volume subject",
      () => !service.served.has(volumeSubject),
    );
    return { demoted, release };
  }

  const drop = () => service.inbox({ type: "headnode.drop.v1", volume: "vol", volumeId: "1-a" });

  test("resent drops share the running one's answer, a few at most; the rest are answered Unavailable at once", async () => {
    const { demoted, release } = await hangDemotion();
    // A configure of the incarnation waits already when the drops arrive.
    const configuredBefore = codeOf(configure({ volumeId: "1-a", epoch: 3, secondaries: [] }));
    // The delete's drop, then the purge passes' resends, each after the coordinator gave
    // up on the one before.
    const sent = 1 + dropsJoinedMax + 5;
    const settled = new Set<number>();
    const answers = Array.from({ length: sent }, (_, index) => {
      const answer = drop().then(
        (result) => result,
        (error: BallastError) => error.code,
      );
      void answer.then(() => settled.add(index));
      return answer;
    });
    await new Promise((resolve) => setTimeout(resolve, 50));
    // The old shell queued every one on the partition's lock, each holding an inbox
    // handler slot: none was answered while the demotion ran, and each ran in its turn.
    const turnedAway = Array.from(
      { length: sent - 1 - dropsJoinedMax },
      (_, i) => 1 + dropsJoinedMax + i,
    );
    expect([...settled].sort((a, b) => a - b)).toEqual(turnedAway);
    for (const index of turnedAway) expect(await answers[index]).toBe(ErrorCode.Unavailable);
    expect(service.served.has(subjects.replica.build("vol", 0, "head-1"))).toBe(true);
    release();
    expect(await demoted).toMatchObject({ role: "secondary", epoch: 2 });
    // The running drop closed the replica once; the duplicates share its answer.
    for (const index of Array.from({ length: 1 + dropsJoinedMax }, (_, i) => i)) {
      expect(await answers[index]).toEqual({ dropped: 1 });
    }
    // The configure that waited ran before the drop, and was refused: deleted.
    expect(await configuredBefore).toBe(ErrorCode.NotFound);
    expect(existsSync(join(dataDir, "partitions", "1-a"))).toBe(false);
    expect(service.served.has(subjects.replica.build("vol", 0, "head-1"))).toBe(false);
    // A resend once it is done runs afresh, as the coordinator's next pass does.
    expect(await drop()).toEqual({ dropped: 0 });
  });

  test("a configure arriving while a drop waits is refused, and the drop still closes the replica", async () => {
    const { demoted, release } = await hangDemotion();
    const dropped = drop();
    const configured = codeOf(configure({ volumeId: "1-a", epoch: 3, secondaries: [] }));
    release();
    await demoted;
    expect(await dropped).toEqual({ dropped: 1 });
    expect(await configured).toBe(ErrorCode.NotFound);
    expect(existsSync(join(dataDir, "partitions", "1-a"))).toBe(false);
    expect(
      await codeOf(
        Promise.resolve().then(() =>
          service.inbox({ type: "headnode.replica.status.v1", volume: "vol", partition: 0 }),
        ),
      ),
    ).toBe(ErrorCode.NotFound);
  });
});

describe("early reports for new leased primaries", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  // A new volume of 16,384 partitions gave each of two head nodes 8,192 leased primaries
  // one after another: each configure sent a report at once, each going through every
  // hosted replica here and at the leader.
  test("primaries configured one after another wait for one report together", async () => {
    // Timers (and the clock they read) stand still unless advanced: no interval report
    // and no early one comes by itself; files and journals are real. The head node is
    // started again under them: the one beforeEach started keeps a real 500 ms interval
    // report, which a loaded machine let land among the configures.
    await stop();
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "setInterval", "performance"] });
    ({ dataDir, service, stop } = await startHeadNode("ballast-headnode-"));
    const before = service.reports.length;
    const partitions = 20;
    for (let partition = 0; partition < partitions; partition++) {
      await configure({ partition, partitionStart: partition * partitionBytes, leased: true });
    }
    // The first at once; the others wait for the spacing to pass, together.
    await vi.advanceTimersByTimeAsync(0);
    expect(service.reports.length - before).toBe(1);
    await vi.advanceTimersByTimeAsync(reportSoonSpacingMs);
    expect(service.reports.length - before).toBe(2);
    // Between them the two reports name every new primary.
    const named = new Set(
      service.reports.slice(before).flatMap((report) => report.primaries.map((p) => p.partition)),
    );
    expect(named.size).toBe(partitions);
  });
});
