// The chaos run (issue 13): a real cluster of separate processes (2 coordinators, 3 head
// nodes, 3 sleds, 1 NBD gateway, nats-server), two volumes of several small partitions
// (replica counts 2 and 3), concurrent clients through the client library and through
// NBD (workload.ts), the nemesis (nemesis.ts), then: heal everything, wait for full
// strength, read back every block the workload touched through the client library, and
// check the whole history for per-block linearizability and durability (checker.ts).
//
// The run is bounded by its time and its operation count. The seed fixes every client's
// choices and the fault schedule; wall-clock timing does not replay.

import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { BallastClient, type Volume } from "@ballast/client";
import { limits, serviceKinds, subjects } from "@ballast/protocol";
import { Bus, connectNats, createLogger, type NatsAccess, startTracing } from "@ballast/runtime";
import { LocalCluster } from "../local-cluster.ts";
import { freePort } from "../nats-server.ts";
import { checkHistory, formatHistory, type Outcome } from "./checker.ts";
import { type FuzzStats, fuzzSubjects, runFuzz } from "./fuzz.ts";
import {
  type FaultKind,
  type FaultRecord,
  faultKinds,
  lostDiskMembers,
  noMemberOnLostDisk,
  recentWarnings,
  runNemesis,
  shortOfFullStrength,
  Wounds,
  waitForFullStrength,
} from "./nemesis.ts";
import { decodeBlock, payloadBlockBytes, volumeTagOf } from "./payload.ts";
import { seededRandom } from "./random.ts";
import {
  type ClientPlan,
  type ClientStats,
  History,
  libraryPort,
  nbdPort,
  type OpKind,
  opKinds,
  rangeBlocks,
  runClient,
} from "./workload.ts";

export interface ChaosOptions {
  seed: number;
  /** How long the workload and the nemesis run. */
  seconds: number;
  /** Client operations at most (the run ends at whichever bound comes first). */
  opsMax: number;
  /** Where the cluster lives; a fresh temporary directory if absent. */
  dataDir?: string;
  /** Keep the data directory (it is kept anyway when the check fails). */
  keep: boolean;
  /** Faults in a fixed round-robin order, so a short run has each kind at least once. */
  roundRobin: boolean;
  /**
   * With `roundRobin`, how long the run may go on past `seconds` until every kind has
   * run once: twice `seconds` if absent.
   */
  secondsMax?: number;
  /** Malformed messages to every subject and random bytes to the NBD port (fuzz.ts). */
  fuzz: boolean;
  /** The fault kinds the nemesis injects (all of faultKinds if absent). */
  faults?: readonly FaultKind[];
  log: (line: string) => void;
}

export interface VolumePlan {
  name: string;
  replicaCount: number;
  partitions: number;
}

export const chaosVolumes: readonly VolumePlan[] = [
  { name: "chaos-two", replicaCount: 2, partitions: 4 },
  { name: "chaos-three", replicaCount: 3, partitions: 3 },
];
export const chaosPartitionBytes = limits.partitionBytesMin;
/** Clients per volume through the client library; one more goes through NBD. */
export const libraryClientsPerVolume = 2;
export const heartbeatIntervalMs = 200;
export const heartbeatTimeoutMs = 1500;
/**
 * How long the cleanup waits for a client connection to drain before it goes on to stop
 * the cluster anyway: with NATS down a drain may never finish, and the processes must be
 * stopped whatever happens.
 */
export const connectionCloseBoundMs = 10_000;
/** How long the healed cluster may take to reach full strength before the run fails. */
export const settleTimeoutMs = 120_000;
/**
 * Log lines at warn or above printed per service when the healed cluster is short of
 * full strength: the data directory is kept, but CI's machine does not survive the run.
 */
export const warningsShownPerService = 15;

/**
 * The services' environment: fast membership, small sleds, the test fault switch on,
 * and a quick orphan sweep. The clients flush a small chunk every few operations, so
 * the sleds (2 × 64 MiB each) take tens of thousands of chunks an hour, and the nemesis
 * kills the leading coordinator every minute or two, which starts every grace afresh:
 * with the default sweep (every 30 s, 60 s grace) the sleds filled within 20 minutes.
 * The soak (bench/soak.ts) sweeps the same way for the same reason.
 */
export const chaosEnv: Record<string, string> = {
  BALLAST_HEARTBEAT_INTERVAL_MS: String(heartbeatIntervalMs),
  BALLAST_HEARTBEAT_TIMEOUT_MS: String(heartbeatTimeoutMs),
  BALLAST_SWEEP_INTERVAL_MS: "2000",
  BALLAST_SWEEP_GRACE_MS: "5000",
  BALLAST_LOG_LEVEL: "info",
  BALLAST_SLED_DEVICES: "2",
  BALLAST_SLED_DEVICE_BYTES: String(64 * 1024 * 1024),
  BALLAST_TEST_FAULTS: "1",
};

export interface FaultSummary {
  count: number;
  /** Start times, in seconds since the run began. */
  atSeconds: number[];
  /** Longest gap between successful operations of any one client after such a fault. */
  longestUnavailableMs: number;
  /** Longest time from the recovery to full strength. */
  longestToFullStrengthMs: number | undefined;
  errors: string[];
}

export interface ChaosReport {
  seed: number;
  seconds: number;
  dataDir: string;
  operations: Record<OpKind, Record<Outcome, number>>;
  operationsTotal: number;
  blockOperations: number;
  checkedBlocks: number;
  faults: FaultRecord[];
  faultsByKind: Partial<Record<FaultKind, FaultSummary>>;
  violations: { kind: string; volume: string; block: number; message: string; history: string }[];
  /** From the end of the workload (everything healed) to full strength. */
  backToFullStrengthMs: number | undefined;
  servicesRunning: boolean;
  fuzz?: FuzzStats;
  historyPath?: string;
}

/** The first block of each range of a volume: one inside each partition, one across each boundary. */
export function rangesOf(plan: VolumePlan): number[] {
  const perPartition = chaosPartitionBytes / payloadBlockBytes;
  const ranges: number[] = [];
  for (let partition = 0; partition < plan.partitions; partition++) {
    ranges.push(partition * perPartition + 16);
    if (partition > 0) ranges.push(partition * perPartition - rangeBlocks / 2);
  }
  return ranges;
}

async function connectBus(natsUrl: string, name: string, access: NatsAccess) {
  const logger = createLogger({ service: "chaos", nodeId: name, level: "silent" });
  const tracing = startTracing({ serviceName: "ballast-chaos", instanceId: name });
  const connection = await connectNats({ servers: natsUrl, name, logger, access });
  return {
    bus: new Bus(connection, tracing.tracer),
    connection,
    close: async () => {
      await connection.drain().catch(() => undefined);
      await tracing.shutdown().catch(() => undefined);
    },
  };
}

export async function runChaos(options: ChaosOptions): Promise<ChaosReport> {
  const { log } = options;
  const dataDir = resolve(options.dataDir ?? (await mkdtemp(join(tmpdir(), "ballast-chaos-"))));
  const nbdPortNumber = await freePort();
  log(`chaos: seed ${options.seed}, ${options.seconds} s, data in ${dataDir}`);
  const cluster = await LocalCluster.start({
    dataDir,
    coordinators: 2,
    headNodes: 3,
    sleds: 3,
    gateways: 1,
    nbdPortFirst: nbdPortNumber,
    env: chaosEnv,
  });
  const connections: { close(): Promise<void> }[] = [];
  const volumesOpen: Volume[] = [];
  let keep = options.keep;
  try {
    const control = await connectBus(
      cluster.natsUrl,
      "chaos-control",
      cluster.natsAccess("operator"),
    );
    connections.push(control);
    if (!(await waitForFullStrength(control.bus, cluster.ids(), 60_000))) {
      throw new Error("the cluster did not come up healthy within 60 s");
    }
    for (const volume of chaosVolumes) {
      await control.bus.request(
        subjects.coordinator.build(),
        {
          type: "volume.create.v1",
          name: volume.name,
          sizeBytes: volume.partitions * chaosPartitionBytes,
          partitionBytes: chaosPartitionBytes,
          replicaCount: volume.replicaCount,
        },
        { deadlineMs: 10_000 },
      );
    }
    if (!(await waitForFullStrength(control.bus, cluster.ids(), 60_000))) {
      throw new Error("the volumes did not reach full strength within 60 s");
    }

    // The clients: per volume, library clients (each with its own NATS connection) and
    // one NBD client; the volume's ranges are dealt out round-robin, one owner each.
    const history = new History();
    const plans: ClientPlan[] = [];
    let writer = 0;
    for (const volume of chaosVolumes) {
      const owners: { name: string; port: ClientPlan["port"] }[] = [];
      for (let index = 1; index <= libraryClientsPerVolume; index++) {
        const name = `${volume.name}-lib-${index}`;
        const connection = await connectBus(cluster.natsUrl, name, cluster.natsAccess("client"));
        connections.push(connection);
        const opened = await new BallastClient(connection.bus).openVolume(volume.name);
        volumesOpen.push(opened);
        owners.push({ name, port: libraryPort(opened) });
      }
      owners.push({ name: `${volume.name}-nbd`, port: nbdPort(() => nbdPortNumber, volume.name) });
      const ranges = rangesOf(volume);
      owners.forEach((owner, index) => {
        plans.push({
          name: owner.name,
          writer: ++writer,
          volume: volume.name,
          ranges: ranges.filter((_, at) => at % owners.length === index),
          port: owner.port,
          random: seededRandom(options.seed, owner.name),
        });
      });
    }

    // Round-robin runs go on past --seconds until every fault kind has run once (up to
    // `secondsMax`, by default twice the time), so that a short run always covers them all.
    const kinds = options.faults ?? faultKinds;
    const deadline = Date.now() + options.seconds * 1000;
    const deadlineHard =
      Date.now() + Math.max(options.seconds, options.secondsMax ?? 2 * options.seconds) * 1000;
    let started = 0;
    let nemesisDone = false;
    const nemesisGo = (faultsDone: number) =>
      started < options.opsMax &&
      (Date.now() < deadline ||
        (options.roundRobin && faultsDone < kinds.length && Date.now() < deadlineHard));
    const clientsGo = () => (Date.now() < deadline || !nemesisDone) && started++ < options.opsMax;
    const wounds = new Wounds();
    const clientRuns = plans.map((plan) => runClient(plan, history, clientsGo));
    const fuzzRun = options.fuzz
      ? runFuzz(
          control.connection,
          fuzzSubjects(
            serviceKinds.flatMap((kind) => cluster.ids(kind).map((id) => ({ kind, id }))),
            chaosVolumes.map((volume) => ({ name: volume.name, partitions: volume.partitions })),
            cluster.ids("headnode"),
          ),
          nbdPortNumber,
          seededRandom(options.seed, "fuzz"),
          () => !nemesisDone,
        )
      : undefined;
    const faults = await runNemesis(
      {
        cluster,
        bus: control.bus,
        volumes: chaosVolumes.map((volume) => volume.name),
        heartbeatTimeoutMs,
        random: seededRandom(options.seed, "nemesis"),
        nowMs: () => history.nowMs(),
        log,
      },
      wounds,
      nemesisGo,
      options.roundRobin,
      kinds,
    ).finally(() => {
      nemesisDone = true;
    });
    const stats = await Promise.all(clientRuns);
    const fuzz = await fuzzRun;
    const workloadEndMs = history.nowMs();
    log(`chaos: workload done at ${(workloadEndMs / 1000).toFixed(1)} s; healing`);

    await wounds.heal(cluster, control.bus, log);
    const healedAt = Date.now();
    // Full strength also means no member recorded on a disk its node lost
    // (lose-head-disk): such a member holds nothing, whatever the status says.
    const volumeNames = chaosVolumes.map((volume) => volume.name);
    const full = await waitForFullStrength(
      control.bus,
      cluster.ids(),
      settleTimeoutMs,
      noMemberOnLostDisk(control.bus, cluster, volumeNames),
    );
    const backToFullStrengthMs = full ? Date.now() - healedAt : undefined;
    if (!full) {
      const left = await lostDiskMembers(control.bus, cluster, volumeNames).catch(() => []);
      if (left.length > 0) log(`chaos: members on lost disks: ${JSON.stringify(left)}`);
      log(`chaos: short of full strength: ${await shortOfFullStrength(control.bus, cluster)}`);
      for (const line of await recentWarnings(cluster, warningsShownPerService)) log(line);
    }
    log(
      full
        ? `chaos: full strength ${backToFullStrengthMs} ms after healing`
        : `chaos: NOT at full strength ${settleTimeoutMs} ms after healing`,
    );

    // Durability: read back every block of every range, after the heal, through the library.
    const reader = await new BallastClient(control.bus).openVolume(chaosVolumes[0]!.name);
    volumesOpen.push(reader);
    for (const volume of chaosVolumes) {
      const opened =
        volume === chaosVolumes[0]
          ? reader
          : await new BallastClient(control.bus).openVolume(volume.name);
      if (opened !== reader) volumesOpen.push(opened);
      const tag = volumeTagOf(volume.name);
      for (const start of rangesOf(volume)) {
        await finalRead(opened, history, volume.name, tag, start);
      }
    }

    const check = checkHistory(history.ops);
    const servicesRunning =
      cluster.ids().every((id) => cluster.isRunning(id)) &&
      (await waitForFullStrength(control.bus, cluster.ids(), 10_000));
    const report: ChaosReport = {
      seed: options.seed,
      seconds: options.seconds,
      dataDir,
      operations: sumCounts(stats),
      operationsTotal: stats.reduce(
        (sum, client) =>
          sum +
          Object.values(client.counts).reduce(
            (inner, outcomes) => inner + outcomes.ok + outcomes.fail + outcomes.unknown,
            0,
          ),
        0,
      ),
      blockOperations: history.ops.length,
      checkedBlocks: check.blocks,
      faults,
      faultsByKind: summariseFaults(faults, stats, workloadEndMs),
      violations: check.violations.map((violation) => ({
        kind: violation.kind,
        volume: violation.volume,
        block: violation.block,
        message: violation.message,
        history: formatHistory(violation.history),
      })),
      backToFullStrengthMs,
      servicesRunning,
      ...(fuzz === undefined ? {} : { fuzz }),
    };
    if (check.violations.length > 0 || !servicesRunning) {
      keep = true;
      report.historyPath = join(dataDir, "chaos-history.json");
      await writeFile(
        report.historyPath,
        JSON.stringify({ report, violations: check.violations, history: history.ops }, null, 1),
      );
    }
    return report;
  } catch (error) {
    keep = true;
    throw error;
  } finally {
    // Whatever failed, every process this run started is stopped, nats-servers included.
    for (const volume of volumesOpen) await bounded(volume.close());
    for (const connection of connections) await bounded(connection.close());
    await cluster.stop().catch((error) => {
      keep = true;
      log(`chaos: stopping the cluster failed: ${(error as Error).message}`);
    });
    if (keep) log(`chaos: kept ${dataDir}`);
    else await rm(dataDir, { recursive: true, force: true });
  }
}

/** Waits for `closing` at most connectionCloseBoundMs; a failure to close is ignored. */
async function bounded(closing: Promise<unknown>): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    closing.catch(() => undefined),
    new Promise((resolve) => {
      timer = setTimeout(resolve, connectionCloseBoundMs);
    }),
  ]);
  clearTimeout(timer);
}

/** Reads one range after the heal, retrying, and records the reads as ordinary reads. */
async function finalRead(
  volume: Volume,
  history: History,
  name: string,
  tag: number,
  start: number,
): Promise<void> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const invokeMs = history.nowMs();
    try {
      const data = await volume.read(start * payloadBlockBytes, rangeBlocks * payloadBlockBytes);
      const completeMs = history.nowMs();
      for (let index = 0; index < rangeBlocks; index++) {
        const block = start + index;
        history.add({
          process: "final-read",
          kind: "read",
          volume: name,
          block,
          value: decodeBlock(
            data.subarray(index * payloadBlockBytes, (index + 1) * payloadBlockBytes),
            tag,
            block,
          ),
          invokeMs,
          completeMs,
          outcome: "ok",
        });
      }
      return;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }
  throw new Error(
    `final read of ${name} blocks ${start}..${start + rangeBlocks - 1} failed 5 times`,
  );
}

function sumCounts(stats: readonly ClientStats[]): Record<OpKind, Record<Outcome, number>> {
  const total = {} as Record<OpKind, Record<Outcome, number>>;
  for (const kind of opKinds) {
    total[kind] = { ok: 0, fail: 0, unknown: 0 };
    for (const client of stats) {
      for (const outcome of ["ok", "fail", "unknown"] as const) {
        total[kind][outcome] += client.counts[kind][outcome];
      }
    }
  }
  return total;
}

/**
 * Per fault kind: how many, when, and the longest unavailability: for each fault, the
 * window from its start to the next fault's start (or the workload's end); in it, each
 * client's longest gap between successes (counting from the fault's start); the most of
 * any client.
 */
export function summariseFaults(
  faults: readonly FaultRecord[],
  stats: readonly ClientStats[],
  endMs: number,
): Partial<Record<FaultKind, FaultSummary>> {
  const summary: Partial<Record<FaultKind, FaultSummary>> = {};
  faults.forEach((fault, index) => {
    const windowEnd = faults[index + 1]?.startMs ?? endMs;
    let longest = 0;
    for (const client of stats) {
      let last = fault.startMs;
      for (const at of client.successesMs) {
        if (at <= fault.startMs) continue;
        if (at > windowEnd) break;
        longest = Math.max(longest, at - last);
        last = at;
      }
      if (last === fault.startMs) longest = Math.max(longest, windowEnd - fault.startMs);
    }
    const entry = summary[fault.kind] ?? {
      count: 0,
      atSeconds: [],
      longestUnavailableMs: 0,
      longestToFullStrengthMs: undefined,
      errors: [],
    };
    summary[fault.kind] = entry;
    entry.count++;
    entry.atSeconds.push(Math.round(fault.startMs / 100) / 10);
    entry.longestUnavailableMs = Math.max(entry.longestUnavailableMs, Math.round(longest));
    if (fault.fullStrengthMs !== undefined && fault.recoveredMs !== undefined) {
      entry.longestToFullStrengthMs = Math.max(
        entry.longestToFullStrengthMs ?? 0,
        Math.round(fault.fullStrengthMs - fault.recoveredMs),
      );
    }
    if (fault.error !== undefined) entry.errors.push(fault.error);
  });
  return summary;
}

/** The report as text. */
export function formatReport(report: ChaosReport): string {
  const lines = [
    `chaos report: seed ${report.seed}, ${report.seconds} s`,
    `operations: ${report.operationsTotal} (${report.blockOperations} block operations on ${report.checkedBlocks} blocks checked)`,
  ];
  for (const kind of opKinds) {
    const counts = report.operations[kind];
    lines.push(
      `  ${kind.padEnd(13)} ok ${counts.ok}, fail ${counts.fail}, unknown ${counts.unknown}`,
    );
  }
  lines.push(`faults: ${report.faults.length}`);
  for (const kind of faultKinds) {
    const entry = report.faultsByKind[kind];
    if (entry === undefined) {
      lines.push(`  ${kind.padEnd(19)} not injected`);
      continue;
    }
    lines.push(
      `  ${kind.padEnd(19)} ×${entry.count} at ${entry.atSeconds.join(", ")} s; longest unavailability ${entry.longestUnavailableMs} ms; back to full strength in ${entry.longestToFullStrengthMs ?? "(not within bound)"} ms${entry.errors.length > 0 ? `; errors: ${entry.errors.join("; ")}` : ""}`,
    );
  }
  lines.push(
    `back to full strength after the run: ${report.backToFullStrengthMs === undefined ? "NOT REACHED" : `${report.backToFullStrengthMs} ms`}`,
    `every service running: ${report.servicesRunning ? "yes" : "NO"}`,
    ...(report.fuzz === undefined
      ? []
      : [
          `fuzz: ${report.fuzz.messages} malformed messages (${report.fuzz.answered} answered), ${report.fuzz.nbdConnections} NBD connections of random bytes`,
        ]),
    `violations: ${report.violations.length}`,
  );
  for (const violation of report.violations) {
    lines.push(
      `  ${violation.kind} on ${violation.volume} block ${violation.block}: ${violation.message}`,
      violation.history,
    );
  }
  if (report.historyPath !== undefined) lines.push(`history saved to ${report.historyPath}`);
  return `${lines.join("\n")}\n`;
}
