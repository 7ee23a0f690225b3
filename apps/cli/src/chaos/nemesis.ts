// The chaos nemesis: faults on the real processes of a LocalCluster, each followed by
// its recovery, on a schedule drawn from the seed. Between faults it waits until the
// cluster is back at full strength (or a bound passes), so that faults do not pile up
// beyond what the replica counts tolerate; the one deliberate pile-up is
// `kill-head-and-sled`, two crashes at once, which every partition survives (replica
// counts 2 and 3 on three head nodes, chunk copies on three sleds).
//
// Faults:
// - kill-primary / kill-secondary: kill -9 of a head node that is a partition's primary
//   (secondary), restarted after the hold;
// - kill-sled, kill-coordinator (the leading one), kill-gateway: kill -9, then restart;
// - stop-primary: SIGSTOP of a primary for longer than the heartbeat timeout and the
//   read lease, then SIGCONT (the woken node must not act in its old epoch);
// - kill-nats: kill -9 of nats-server, restarted on the same port and store (never on
//   another: LocalCluster.restartNatsServer); a failed restart (not ready in time, port
//   taken) leaves no server behind and is tried again, a bounded number of times, in
//   the fault and again in every heal, which restarts any nats-server found down;
// - hang-journal / hang-sled: the gray failure: SIGUSR2 flips the test switch
//   (BALLAST_TEST_FAULTS=1, packages/runtime/src/test-faults.ts) so the node's journal
//   commits (a head node's) or device writes (a sled's) hang while it still heartbeats;
//   SIGUSR2 again lets them go on.
// - fail-journal: a disk error: SIGURG arms the test switch so that the next journal
//   commit of a head node (a primary's or a secondary's) fails with EIO. That replica's
//   journal fails for good; the coordinator drops it (a secondary, or a primary by
//   failing over) or configures it again, and the head node reopens it in a new session
//   (services/headnode/src/headnode.ts). One signal fails one commit, so there is nothing
//   to heal; the clients' writes make the commit come soon.
// - fill-sled: a sled's devices fill up for real: the nemesis stores filler chunks on it
//   (under an owner no volume has) until the sled answers NoSpace, holds, then deletes
//   them. Flushes must go to the other sleds meanwhile; nothing may be lost or refused
//   for good.
// - kill-two-heads: two of the three head nodes killed at once, so some partition of
//   the two-replica volume loses both replicas together; every acknowledged write must
//   come back from their journals when they restart.
// - lose-head-disk: a head node killed, its data directory deleted (its log stays) and
//   started again at once under the same id, on a new empty disk: the coordinator must
//   count it out of every partition (a primary replaced by a secondary, which holds
//   every acknowledged write) and rebuild it. Only a head node whose every partition has
//   another live voter is chosen (lost-disk.ts), so no fault takes the last copy; the
//   fault is over when, at full strength, no partition record names a member on a disk
//   it lost.

import { readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { describeVolumeWhole } from "@ballast/client";
import { ErrorCode, limits, subjects } from "@ballast/protocol";
import type { Bus } from "@ballast/runtime";
import { clusterHealth, healthLine, isFullStrength } from "../health.ts";
import type { LocalCluster } from "../local-cluster.ts";
import { describeOmitted } from "../status.ts";
import type { VolumeState } from "../volume.ts";
import {
  formatLostDiskMember,
  headsThatMayLoseDisk,
  type LostDiskMember,
  lostDiskMembersNow,
  readDiskId,
  serviceDataDir,
} from "./lost-disk.ts";
import type { Random } from "./random.ts";

export const faultKinds = [
  "kill-primary",
  "kill-secondary",
  "kill-sled",
  "kill-coordinator",
  "kill-gateway",
  "stop-primary",
  "kill-nats",
  "hang-journal",
  "hang-sled",
  "kill-head-and-sled",
  "fill-sled",
  "kill-two-heads",
  "fail-journal",
  "lose-head-disk",
] as const;
export type FaultKind = (typeof faultKinds)[number];

/** How long a fault lasts before its recovery, at least and at most. */
export const holdMsMin = 2000;
export const holdMsMax = 5000;
/**
 * The hold's upper bound in round-robin runs (CI's short run): shorter, as the gaps
 * are, since each of the 14 kinds costs CI its hold. Still at least holdMsMin, which is
 * past the heartbeat timeout of the chaos services: a killed node is counted dead.
 */
export const holdMsMaxRoundRobin = 2500;
/** Quiet time between one fault's recovery (at full strength) and the next fault. */
export const gapMsMin = 1000;
export const gapMsMax = 3000;
/**
 * The gap's bounds in round-robin runs (CI's short run, which goes on until every kind
 * has run once): shorter, so that a fault kind costs CI about its own recovery, not its
 * recovery and a whole gap more. A gap starts once the cluster is back at full
 * strength, so even the shortest has the workload run on a whole cluster (some 600
 * client operations at CI's rate) before the next fault. Still drawn from the same stream.
 */
export const gapMsMinRoundRobin = 500;
export const gapMsMaxRoundRobin = 1000;
/** How long the nemesis waits for full strength after a recovery before going on. */
export const fullStrengthWaitMs = 60_000;

/**
 * How many times a nats-server restart is tried, in the kill-nats fault and again in a
 * heal. Each try may take up to natsRestartReadyTimeoutMs; more tries than this would
 * hide a server that cannot come back, which is a finding to report.
 */
export const natsRestartAttempts = 3;
/** Pause between restart tries, so that a port a dying process still holds is freed. */
export const natsRestartPauseMs = 1000;

/** The owner of fill-sled's filler chunks: a volume name no chaos volume uses. */
export const fillerOwner = { volume: "chaos-filler", partition: 0 } as const;
/** Size of one filler chunk (a partition's flush writes chunks of this order too). */
export const fillerChunkBytes = 1024 * 1024;
/** Filler chunk writes in flight at once: the fill takes seconds, not tens of them. */
export const fillerWritesInFlight = 4;
/**
 * Most filler chunks fill-sled stores before giving up on seeing NoSpace: 2 GiB, far
 * above the chaos sleds' 2 × 64 MiB, so reaching it means the sled never said full.
 */
export const fillerChunksMax = 2048;

export interface FaultRecord {
  kind: FaultKind;
  targets: string[];
  /** History times (ms since the run began). */
  startMs: number;
  recoveredMs?: number;
  /** When the cluster was next seen at full strength; absent if not within the bound. */
  fullStrengthMs?: number;
  error?: string;
}

export interface NemesisContext {
  cluster: LocalCluster;
  bus: Bus;
  volumes: readonly string[];
  heartbeatTimeoutMs: number;
  random: Random;
  nowMs: () => number;
  log: (line: string) => void;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Restarts nats-server `index` of the cluster, trying again up to `attempts` times in
 * all; throws the last failure, with how many tries it took.
 */
export async function restartNatsServerRetrying(
  cluster: Pick<LocalCluster, "restartNatsServer">,
  index: number,
  log: (line: string) => void,
  attempts = natsRestartAttempts,
  pauseMs = natsRestartPauseMs,
): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await cluster.restartNatsServer(index);
      return;
    } catch (error) {
      const message = (error as Error).message;
      if (attempt >= attempts) {
        throw new Error(`nats-server ${index} did not restart in ${attempts} tries: ${message}`, {
          cause: error,
        });
      }
      log(`nats-server ${index}: restart try ${attempt} of ${attempts} failed: ${message}`);
      await sleep(pauseMs);
    }
  }
}

/**
 * Heals what a fault left behind: processes down, stopped or with hanging writes. A
 * nats-server is restarted whenever the cluster has one down, whatever fault (or failed
 * heal) left it so. Everything is healed that can be; then the first failure is thrown.
 */
export class Wounds {
  readonly stopped = new Set<string>();
  readonly hanging = new Set<string>();
  /** Sleds holding filler chunks, with how many were stored. */
  readonly filled = new Map<string, number>();

  async heal(
    cluster: LocalCluster,
    bus?: Bus,
    log: (line: string) => void = () => undefined,
  ): Promise<void> {
    const failures: unknown[] = [];
    for (const index of cluster.natsServersDown()) {
      await restartNatsServerRetrying(cluster, index, log).catch((error) => failures.push(error));
    }
    for (const id of this.stopped) if (cluster.isRunning(id)) cluster.signal(id, "SIGCONT");
    this.stopped.clear();
    for (const id of this.hanging) if (cluster.isRunning(id)) cluster.signal(id, "SIGUSR2");
    this.hanging.clear();
    for (const id of cluster.ids()) if (!cluster.isRunning(id)) cluster.restart(id);
    if (bus !== undefined) {
      for (const [sled, count] of this.filled) {
        await unfillSled(bus, sled, count);
        this.filled.delete(sled);
      }
    }
    if (failures.length > 0) throw failures[0];
  }
}

const fillerChunkId = (index: number) => `chaos-filler-${index}`;

/**
 * Stores filler chunks on `sled`, `fillerWritesInFlight` at a time, until it answers
 * NoSpace; returns how many chunk ids were tried (every filler id below it may be
 * stored). `record` is told the count as it grows, so that a heal after an error deletes
 * them.
 */
export async function fillSled(
  bus: Bus,
  sled: string,
  record: (tried: number) => void,
): Promise<number> {
  const data = new Uint8Array(fillerChunkBytes).fill(0xf1);
  const write = async (index: number): Promise<boolean> => {
    try {
      await bus.request(
        subjects.node.build("sled", sled),
        { type: "sled.chunk.write.v1", owner: fillerOwner, chunkId: fillerChunkId(index), data },
        { deadlineMs: 10_000 },
      );
      return true;
    } catch (error) {
      if ((error as { code?: unknown }).code === ErrorCode.NoSpace) return false;
      throw error;
    }
  };
  for (let first = 0; first < fillerChunksMax; first += fillerWritesInFlight) {
    const batch = Array.from({ length: fillerWritesInFlight }, (_, index) => first + index);
    record(first + batch.length);
    const stored = await Promise.all(batch.map(write));
    if (stored.includes(false)) return first + batch.length;
  }
  throw new Error(`${sled} took ${fillerChunksMax} filler chunks and never answered NoSpace`);
}

/** Deletes the first `count` filler chunk ids (a missing one is fine: maybe never stored). */
export async function unfillSled(bus: Bus, sled: string, count: number): Promise<void> {
  for (let index = 0; index < count; index++) {
    await bus
      .request(
        subjects.node.build("sled", sled),
        { type: "sled.chunk.delete.v1", owner: fillerOwner, chunkId: fillerChunkId(index) },
        { deadlineMs: 10_000 },
      )
      .catch(() => undefined);
  }
}

export async function describe(bus: Bus, volume: string): Promise<VolumeState> {
  return describeVolumeWhole(bus, volume, { deadlineMs: 2000 });
}

export async function clusterStatus(bus: Bus) {
  const status = await bus.request(
    subjects.coordinator.build(),
    { type: "cluster.status.v1", probe: true },
    { deadlineMs: 3000 },
  );
  return describeOmitted(bus, status);
}

/** Whether every service is healthy and every partition of every volume at full strength. */
export async function atFullStrength(bus: Bus, ids: readonly string[]): Promise<boolean> {
  try {
    const status = await clusterStatus(bus);
    const healthy = new Set(status.services.filter((s) => s.healthy).map((s) => s.id));
    return ids.every((id) => healthy.has(id)) && isFullStrength(status);
  } catch {
    return false;
  }
}

/**
 * Waits until atFullStrength, and `also` (if given) says yes too; a throw from `also`
 * counts as no. False if that did not happen within `timeoutMs`.
 */
export async function waitForFullStrength(
  bus: Bus,
  ids: readonly string[],
  timeoutMs: number,
  also?: () => Promise<boolean>,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (
      (await atFullStrength(bus, ids)) &&
      (also === undefined || (await also().catch(() => false)))
    ) {
      return true;
    }
    await sleep(250);
  }
  return false;
}

/**
 * Why the cluster is not at full strength, in one line: services not running, services
 * the coordinator does not count healthy, and what each short partition lacks. For the
 * log of a wait that failed, so that a run whose data directory is gone (CI) still says
 * what was missing.
 */
export async function shortOfFullStrength(
  bus: Bus,
  cluster: Pick<LocalCluster, "ids" | "isRunning">,
): Promise<string> {
  const parts: string[] = [];
  const stopped = cluster.ids().filter((id) => !cluster.isRunning(id));
  if (stopped.length > 0) parts.push(`not running: ${stopped.join(", ")}`);
  try {
    const status = await clusterStatus(bus);
    const healthy = new Set(status.services.filter((s) => s.healthy).map((s) => s.id));
    const unhealthy = cluster.ids().filter((id) => !healthy.has(id));
    if (unhealthy.length > 0) parts.push(`not healthy: ${unhealthy.join(", ")}`);
    for (const health of clusterHealth(status)) {
      if (health.state !== "full") parts.push(`${health.name} ${healthLine(health)}`);
    }
  } catch (error) {
    parts.push(`no status from the coordinator: ${(error as Error).message}`);
  }
  return parts.join("; ") || "full strength now";
}

/**
 * The last `count` lines at warn or above of each service's log (pino JSON; nats-server
 * lines are skipped), for a run that failed where its data directory does not survive.
 */
export async function recentWarnings(
  cluster: Pick<LocalCluster, "ids" | "dataDir">,
  count: number,
): Promise<string[]> {
  const lines: string[] = [];
  for (const id of cluster.ids()) {
    const text = await readFile(join(cluster.dataDir, "logs", `${id}.log`), "utf8").catch(() => "");
    const warnings = text.split("\n").filter((line) => {
      if (!line.startsWith("{")) return false;
      try {
        return (JSON.parse(line) as { level?: number }).level! >= 40;
      } catch {
        return false;
      }
    });
    for (const line of warnings.slice(-count)) lines.push(`${id}: ${line}`);
  }
  return lines;
}

/** Members recorded on a disk their head node lost, over the chaos volumes. */
export async function lostDiskMembers(
  bus: Bus,
  cluster: Pick<LocalCluster, "records">,
  volumes: readonly string[],
): Promise<LostDiskMember[]> {
  const counts = [];
  for (const name of volumes) {
    counts.push({ name, partitions: (await describe(bus, name)).partitions.length });
  }
  return lostDiskMembersNow(bus, cluster, counts);
}

/** Whether no partition record names a member on a disk it lost (see lost-disk.ts). */
export const noMemberOnLostDisk =
  (bus: Bus, cluster: Pick<LocalCluster, "records">, volumes: readonly string[]) => async () =>
    (await lostDiskMembers(bus, cluster, volumes)).length === 0;

/**
 * A head node that may lose its disk (lost-disk.ts, headsThatMayLoseDisk), from the
 * leader's status; asked again for a while if none may (a partition short of a voter
 * after the last fault). Throws if none may: the fault is then not injected.
 */
async function diskLossTarget(context: NemesisContext): Promise<string> {
  let why = "no answer from the coordinator";
  for (let attempt = 0; attempt < 20; attempt++) {
    try {
      const status = await clusterStatus(context.bus);
      const alive = new Set(status.services.filter((s) => s.healthy).map((s) => s.id));
      const lost = await lostDiskMembers(context.bus, context.cluster, context.volumes);
      const candidates = headsThatMayLoseDisk(
        status.volumes as unknown as VolumeState[],
        context.cluster.ids("headnode"),
        alive,
        new Set(lost.map((member) => member.node)),
      );
      if (candidates.length > 0) return context.random.pick(candidates);
      why = `every head node holds some partition's only live voter (alive: ${[...alive].join(", ")}; on lost disks: ${lost.map(formatLostDiskMember).join("; ") || "none"})`;
    } catch (error) {
      why = (error as Error).message;
    }
    await sleep(250);
  }
  throw new Error(`no head node may lose its disk: ${why}`);
}

async function headRole(context: NemesisContext, role: "primary" | "secondary"): Promise<string> {
  for (let attempt = 0; attempt < 20; attempt++) {
    try {
      const state = await describe(context.bus, context.random.pick(context.volumes));
      const partition = context.random.pick(state.partitions);
      const candidates = role === "primary" ? [partition.primary] : partition.secondaries;
      if (candidates.length > 0) return context.random.pick(candidates);
    } catch {
      // The coordinator may be failing over; ask again.
    }
    await sleep(250);
  }
  return context.random.pick(context.cluster.ids("headnode"));
}

async function leadingCoordinator(context: NemesisContext): Promise<string> {
  for (let attempt = 0; attempt < 20; attempt++) {
    try {
      return (await clusterStatus(context.bus)).coordinator;
    } catch {
      await sleep(250);
    }
  }
  return context.random.pick(context.cluster.ids("coordinator"));
}

/** Injects one fault, holds it, recovers; returns what happened. */
export async function runFault(
  kind: FaultKind,
  context: NemesisContext,
  wounds: Wounds,
  holdMaxMs = holdMsMax,
): Promise<FaultRecord> {
  const { cluster, random } = context;
  const hold = random.between(holdMsMin, holdMaxMs);
  const record: FaultRecord = { kind, targets: [], startMs: context.nowMs() };
  const killAndRestart = async (ids: string[]) => {
    record.targets = ids;
    record.startMs = context.nowMs();
    await Promise.all(ids.map((id) => cluster.kill(id, "SIGKILL")));
    await sleep(hold);
    for (const id of ids) cluster.restart(id);
  };
  try {
    switch (kind) {
      case "kill-primary":
        await killAndRestart([await headRole(context, "primary")]);
        break;
      case "kill-secondary":
        await killAndRestart([await headRole(context, "secondary")]);
        break;
      case "kill-sled":
        await killAndRestart([random.pick(cluster.ids("sled"))]);
        break;
      case "kill-coordinator":
        await killAndRestart([await leadingCoordinator(context)]);
        break;
      case "kill-gateway":
        await killAndRestart(cluster.ids("gateway"));
        break;
      case "kill-head-and-sled":
        await killAndRestart([
          random.pick(cluster.ids("headnode")),
          random.pick(cluster.ids("sled")),
        ]);
        break;
      case "kill-two-heads": {
        const heads = [...cluster.ids("headnode")];
        const first = random.pick(heads);
        await killAndRestart([first, random.pick(heads.filter((id) => id !== first))]);
        break;
      }
      case "fill-sled": {
        const sled = random.pick(cluster.ids("sled"));
        record.targets = [sled];
        record.startMs = context.nowMs();
        const tried = await fillSled(context.bus, sled, (count) => wounds.filled.set(sled, count));
        context.log(
          `fill-sled: ${sled} answered NoSpace within ${tried} filler chunks of ${fillerChunkBytes} bytes`,
        );
        await sleep(hold);
        await unfillSled(context.bus, sled, tried);
        wounds.filled.delete(sled);
        break;
      }
      case "stop-primary": {
        const id = await headRole(context, "primary");
        record.targets = [id];
        record.startMs = context.nowMs();
        cluster.signal(id, "SIGSTOP");
        wounds.stopped.add(id);
        await sleep(context.heartbeatTimeoutMs + limits.primaryLeaseMs + hold);
        cluster.signal(id, "SIGCONT");
        wounds.stopped.delete(id);
        break;
      }
      case "kill-nats":
        record.targets = ["nats-server"];
        record.startMs = context.nowMs();
        await cluster.killNatsServer("SIGKILL");
        await sleep(hold);
        await restartNatsServerRetrying(cluster, 0, context.log);
        break;
      case "hang-journal":
      case "hang-sled": {
        const id =
          kind === "hang-journal"
            ? await headRole(context, "primary")
            : random.pick(cluster.ids("sled"));
        record.targets = [id];
        record.startMs = context.nowMs();
        cluster.signal(id, "SIGUSR2");
        wounds.hanging.add(id);
        await sleep(hold);
        cluster.signal(id, "SIGUSR2");
        wounds.hanging.delete(id);
        break;
      }
      case "fail-journal": {
        const id = await headRole(context, random.pick(["primary", "secondary"] as const));
        record.targets = [id];
        record.startMs = context.nowMs();
        cluster.signal(id, "SIGURG");
        await sleep(hold);
        break;
      }
      case "lose-head-disk": {
        // No hold: the node comes back at once, as a replaced disk under the old id
        // would, before the coordinator could count it dead. The hold is still drawn
        // above, so that the schedule's stream is the same whatever the fault.
        const id = await diskLossTarget(context);
        const directory = serviceDataDir(cluster, id);
        const disk = await readDiskId(directory);
        record.targets = [id];
        record.startMs = context.nowMs();
        await cluster.kill(id, "SIGKILL");
        await rm(directory, { recursive: true, force: true });
        // Before the restart the node has no disk, so every member the records name on
        // its old one shows here: the recovery check below has something to wait for.
        const recorded = await lostDiskMembers(context.bus, cluster, context.volumes)
          .then((members) => members.filter((member) => member.node === id))
          .catch((error: Error) => `unreadable (${error.message})`);
        cluster.restart(id);
        context.log(
          `lose-head-disk: ${id} killed, ${directory} (disk ${disk?.slice(0, 8) ?? "unknown"}) deleted, restarted; the records had it on that disk in ${typeof recorded === "string" ? recorded : `${recorded.length} partitions (${recorded.map((member) => `${member.volume}/${member.partition}`).join(", ")})`}`,
        );
        break;
      }
      default: {
        const unreachable: never = kind;
        throw new Error(`unknown fault ${String(unreachable)}`);
      }
    }
  } catch (error) {
    record.error = (error as Error).message;
    await wounds.heal(cluster, context.bus, context.log).catch((healError) => {
      record.error += `; the heal failed too: ${(healError as Error).message}`;
    });
  }
  record.recoveredMs = context.nowMs();
  context.log(
    `fault ${kind} on ${record.targets.join(", ")} at ${(record.startMs / 1000).toFixed(1)} s, recovered at ${(record.recoveredMs / 1000).toFixed(1)} s${record.error ? ` (error: ${record.error})` : ""}`,
  );
  // After a lost disk, full strength counts only once the node is counted out and
  // rebuilt: until the coordinator hears its new disk, the status may call it full.
  const rebuilt =
    kind === "lose-head-disk" && record.error === undefined
      ? noMemberOnLostDisk(context.bus, cluster, context.volumes)
      : undefined;
  if (await waitForFullStrength(context.bus, cluster.ids(), fullStrengthWaitMs, rebuilt)) {
    record.fullStrengthMs = context.nowMs();
    return record;
  }
  context.log(
    `chaos: not at full strength ${fullStrengthWaitMs} ms after ${kind}: ${await shortOfFullStrength(context.bus, cluster)}`,
  );
  if (rebuilt !== undefined) {
    const left = await lostDiskMembers(context.bus, cluster, context.volumes).catch(
      (error: Error) => `unreadable: ${error.message}`,
    );
    record.error = `not rebuilt within ${fullStrengthWaitMs} ms: members on lost disks: ${typeof left === "string" ? left : left.map(formatLostDiskMember).join("; ") || "none (the status is short)"}`;
  }
  return record;
}

/**
 * Runs faults until `keepGoing()` says stop. With `roundRobin`, the kinds come in order
 * (so a short run injects each at least once); otherwise each is drawn from the seed.
 */
export async function runNemesis(
  context: NemesisContext,
  wounds: Wounds,
  keepGoing: (faultsDone: number) => boolean,
  roundRobin: boolean,
  kinds: readonly FaultKind[] = faultKinds,
): Promise<FaultRecord[]> {
  if (kinds.length === 0) throw new Error("the nemesis needs at least one fault kind");
  const faults: FaultRecord[] = [];
  let index = 0;
  while (keepGoing(faults.length)) {
    await sleep(
      roundRobin
        ? context.random.between(gapMsMinRoundRobin, gapMsMaxRoundRobin)
        : context.random.between(gapMsMin, gapMsMax),
    );
    if (!keepGoing(faults.length)) break;
    const kind = roundRobin ? kinds[index++ % kinds.length]! : context.random.pick(kinds);
    faults.push(
      await runFault(kind, context, wounds, roundRobin ? holdMsMaxRoundRobin : holdMsMax),
    );
  }
  return faults;
}
