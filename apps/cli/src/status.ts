// `ballast status`: what the coordinator knows about the cluster, with each live
// service's own description. `--json` prints a stable shape that scripts and tests read:
//
//   { "nats": "nats://127.0.0.1:4222", "coordinator": "coordinator-1",
//     "generatedAtMs": 1764061200000,
//     "services": [ { "kind": "sled", "id": "sled-1", "pid": 123, "healthy": true,
//                     "startedAtMs": …, "lastHeartbeatAtMs": …, "lastHeartbeatAgeMs": 312,
//                     "version": "0.1.0", "info": { … },
//                     "capacity": { "capacityBytes": …, "usedBytes": …, … } } ],
//     "volumes": [ { …, "stored": { "bytes": …, "chunks": …, "sleds": [ … ] } } ],
//     "capacity": { "sleds": 3, "sledsUnanswered": 0, "capacityBytes": …, … },
//     "sleds": [ { "id": "sled-1", "state": "in", "since": …, "silentMs": 200, … } ] }
//
// Each volume also carries `reported`: what its primaries last reported to the leader,
// summed — { "partitions", "partitionsReported", "chunksShortOfCopies", and when
// reported "chunkBytes", "liveBytes", "reclaimableBytes" }.
//
// A live head node's entry also carries `slowSleds`: the sleds it asks last, having seen
// them slow lately (alive but answering late), and the reads it hedged since it started,
// with each sled's hold as of its answer —
//   { "slow": ["sled-2"], "hedgedReads": 14, "hedgedWrites": 2,
//     "holds": [ { "sled": "sled-2", "slowForMs": 130000, "holdLeftMs": 25000,
//                  "holdMs": 60000 } ] }
// (`holds` and `hedgedWrites` absent from head nodes that predate them; the same object is in its
// `info.details.slowSleds`).
//
// Fields are only ever added, never renamed or removed, within protocol v1.
//
// The human view gives each volume a one-line health summary (health.ts); `--check`
// makes the exit code say whether every partition is at full strength. A head node that
// holds any sled slow gets a line under SLOW SLEDS; that is degraded but serving, and
// `--check` does not count it (health.ts).

import { describeVolumeWhole } from "@ballast/client";
import { BallastError, ErrorCode, limits, type ResultOf, subjects } from "@ballast/protocol";
import type { Bus } from "@ballast/runtime";
import { statusDeadlineMs } from "./constants.ts";
import { CliError, exitCodes } from "./errors.ts";
import {
  clusterHealth,
  healthLine,
  membersOf,
  refillingSledsOf,
  slowSledsHeldOf,
  unreachableSledsOf,
} from "./health.ts";
import { formatBytes } from "./sizes.ts";
import { table } from "./table.ts";
import { partitionLine, storedLine, summary, type VolumeState } from "./volume.ts";

export type ClusterStatus = ResultOf<"cluster.status.v1"> & { nats: string };

export async function fetchStatus(bus: Bus, natsUrl: string): Promise<ClusterStatus> {
  try {
    const result = await bus.request(
      subjects.coordinator.build(),
      { type: "cluster.status.v1", probe: true },
      { deadlineMs: statusDeadlineMs },
    );
    return { nats: natsUrl, ...(await describeOmitted(bus, result)) };
  } catch (error) {
    if (
      error instanceof BallastError &&
      (error.code === ErrorCode.Unavailable || error.code === ErrorCode.Timeout)
    ) {
      throw new CliError(
        exitCodes.unreachable,
        `NATS at ${natsUrl} is up, but no coordinator answered: ${error.message}`,
        { cause: error },
      );
    }
    throw error;
  }
}

/**
 * The status with the partitions of every volume it lists without them (an answer lists
 * a bounded number of partitions in all: `partitionsOmitted`), each from its own
 * describe; a volume deleted in between is left out.
 */
export async function describeOmitted<S extends ResultOf<"cluster.status.v1">>(
  bus: Bus,
  status: S,
): Promise<S> {
  const volumes: S["volumes"] = [];
  for (const volume of status.volumes) {
    if (volume.partitionsOmitted !== true) {
      volumes.push(volume);
      continue;
    }
    try {
      const described = await describeVolumeWhole(bus, String(volume.name), {
        deadlineMs: statusDeadlineMs,
      });
      const { partitionsOmitted: _omitted, ...shown } = volume;
      volumes.push({ ...shown, partitions: described.partitions });
    } catch (error) {
      if (error instanceof BallastError && error.code === ErrorCode.NotFound) continue;
      throw error;
    }
  }
  return { ...status, volumes };
}

export function formatStatus(status: ClusterStatus, nowMs: number): string {
  const rows = status.services.map((service) => [
    service.kind,
    service.id,
    String(service.pid),
    service.healthy ? "healthy" : "DEAD",
    `${formatDuration(service.lastHeartbeatAgeMs)} ago`,
    service.healthy ? formatDuration(nowMs - service.startedAtMs) : "-",
    service.probeError === undefined ? "" : `probe failed: ${service.probeError}`,
  ]);
  // Members the volumes name that the coordinator has not heard at all (it restarted
  // after they died, or forgot them after a long silence): not alive, and said so.
  const listed = new Set(status.services.map((service) => service.id));
  const unheard = [...new Set(status.volumes.flatMap((volume) => membersOf(volume as VolumeState)))]
    .filter((node) => !listed.has(node))
    .sort();
  for (const node of unheard) {
    rows.push(["headnode", node, "-", "UNKNOWN", "never", "-", "not heard by this coordinator"]);
  }
  const header = ["KIND", "ID", "PID", "HEALTH", "HEARTBEAT", "UPTIME", ""];
  const healthy = status.services.filter((service) => service.healthy).length;
  const health = clusterHealth(status);
  const unreachable = unreachableSledsOf(status);
  const lines = [
    `NATS ${status.nats}   coordinator ${status.coordinator}`,
    ...controlStoreLines(status),
    "",
    `SERVICES (${healthy} of ${rows.length} healthy)`,
    ...table([header, ...rows], "  "),
    ...capacityLines(status),
    ...sledLines(status, nowMs),
    ...slowSledLines(status),
    "",
    "VOLUMES",
    ...(status.volumes.length === 0
      ? ["  (none)"]
      : status.volumes.map((volume, at) => {
          const state = volume as VolumeState;
          const line = `    ${healthLine(health[at]!)}\n`;
          const reported = reportedLine(
            volume.reported as Reported | undefined,
            unreachable,
            refillingSledsOf(status, state.name),
          );
          return `  ${summary(state)}${line}${indent(storedLine(state))}${reported}${state.partitions.map((partition) => `  ${partitionLine(partition)}`).join("")}`.trimEnd();
        })),
  ];
  return `${lines.join("\n")}\n`;
}

/** What a volume's primaries last reported (coordinator status.ts `reported`). */
interface Reported {
  partitions: number;
  partitionsReported: number;
  chunksShortOfCopies?: number;
  chunkBytes?: number;
  liveBytes?: number;
  reclaimableBytes?: number;
}

/**
 * Copies to make again and, when reported, capacity live and reclaimable; one line.
 * `unreachable`: sleds in service that are not alive, whose copies count but cannot be
 * read; `refilling`: sleds back on a new disk this volume's primaries have not all
 * audited. The line does not call the copies whole while there are any.
 */
export function reportedLine(
  reported: Reported | undefined,
  unreachable: readonly string[] = [],
  refilling: readonly string[] = [],
): string {
  if (reported === undefined || reported.partitionsReported === 0) return "";
  const parts: string[] = [];
  if (reported.chunksShortOfCopies !== undefined) {
    const buts = [
      ...(unreachable.length === 0
        ? []
        : [
            `${unreachable.join(", ")} ${unreachable.length === 1 ? "is" : "are"} not alive: copies there cannot be read until ${unreachable.length === 1 ? "it returns or is" : "they return or are"} declared out`,
          ]),
      ...(refilling.length === 0
        ? []
        : [
            `${refilling.join(", ")} ${refilling.length === 1 ? "is" : "are"} back on a new disk: copies listed there are unverified until every primary has audited it`,
          ]),
    ];
    const whole = [
      `every chunk has ${limits.chunkCopies} copies on sleds in service`,
      ...buts,
    ].join(", but ");
    parts.push(
      reported.chunksShortOfCopies === 0
        ? whole
        : `${reported.chunksShortOfCopies} chunks SHORT OF COPIES`,
    );
  }
  if (reported.chunkBytes !== undefined && reported.liveBytes !== undefined) {
    parts.push(
      `chunks ${formatBytes(reported.chunkBytes)}: live ${formatBytes(reported.liveBytes)}, reclaimable ${formatBytes(reported.reclaimableBytes ?? reported.chunkBytes - reported.liveBytes)}`,
    );
  }
  if (parts.length === 0) return "";
  const of =
    reported.partitionsReported === reported.partitions
      ? ""
      : ` (${reported.partitionsReported} of ${reported.partitions} partitions reported)`;
  return `    ${parts.join("; ")}${of}\n`;
}

/**
 * A warning when the sleds hold another control store's mark (coordinator
 * store-marks.ts): the catalogue is not the one the data was made under, so its volume
 * list may be missing volumes whose data is still there. Nothing when all is well.
 */
export function controlStoreLines(status: Pick<ClusterStatus, "controlStore">): string[] {
  const store = status.controlStore;
  if (store === undefined) return [];
  const aheadOfCatalogue =
    store.sequence !== undefined && store.sequence.witnessed > store.sequence.catalogue;
  if (store.foreignMarks.length === 0 && (store.behind ?? []).length === 0 && !aheadOfCatalogue) {
    return [];
  }
  return [
    `CONTROL STORE NOT THE DATA'S: ${store.refused ?? "it is not the store the data was made under"}`,
  ];
}

/**
 * Every sled the leader has records of: in or out of service, and since when; and which
 * live head nodes hold it slow.
 */
export function sledLines(status: ClusterStatus, nowMs: number): string[] {
  const sleds = status.sleds;
  if (sleds === undefined || sleds.length === 0) return [];
  const out = sleds.filter((sled) => sled.state === "out").length;
  const refilling = sleds.filter(
    (sled) => sled.state === "in" && sled.refilling !== undefined,
  ).length;
  // Which head nodes hold each sled slow (SLOW SLEDS below says for how long).
  const slowTo = new Map<string, string[]>();
  for (const { headNode, sleds: held } of slowSledsHeldOf(status)) {
    for (const { sled } of held) slowTo.set(sled, [...(slowTo.get(sled) ?? []), headNode]);
  }
  const rows = sleds.map((sled) => [
    sled.id,
    sled.state === "in" ? (sled.refilling === undefined ? "in" : "REFILLING") : "OUT",
    `since ${formatDuration(nowMs - sled.since)} ago`,
    [
      silenceOf(sled, nowMs) < 1000 ? "" : `silent ${formatDuration(silenceOf(sled, nowMs))}`,
      refillingOf(sled, nowMs),
      slowTo.has(sled.id) ? `SLOW to ${slowTo.get(sled.id)!.join(", ")}` : "",
    ]
      .filter((part) => part !== "")
      .join("; "),
  ]);
  return [
    "",
    `SLEDS (${sleds.length - out} in service, ${out} out${refilling === 0 ? "" : `, ${refilling} refilling`})`,
    ...table([["SLED", "STATE", "", ""], ...rows], "  "),
  ];
}

/**
 * A line per live head node that holds any sled slow (health.ts `slowSledsHeldOf`): which
 * sleds, slow for how long and asked last for how much longer (as of its answer), and
 * the reads it hedged. Nothing when none does, or when status was not probed.
 */
export function slowSledLines(status: Pick<ClusterStatus, "services">): string[] {
  const held = slowSledsHeldOf(status);
  if (held.length === 0) return [];
  return [
    "",
    "SLOW SLEDS (alive but answering late: asked last, reads and chunk writes hedged; not counted by --check)",
    ...held.map(({ headNode, sleds, hedgedReads, hedgedWrites }) => {
      const shown = sleds.map((hold) =>
        hold.slowForMs === undefined || hold.holdLeftMs === undefined
          ? `${hold.sled} slow`
          : `${hold.sled} slow for ${formatDuration(hold.slowForMs)} (asked last ${formatDuration(hold.holdLeftMs)} more${hold.holdMs === undefined ? "" : ` of a ${formatDuration(hold.holdMs)} hold`})`,
      );
      const reads = `${hedgedReads} ${hedgedReads === 1 ? "read" : "reads"}`;
      const writes =
        hedgedWrites === undefined || hedgedWrites === 0
          ? ""
          : ` and ${hedgedWrites} chunk ${hedgedWrites === 1 ? "write" : "writes"}`;
      return `  ${headNode} holds ${shown.join(", ")}; ${reads}${writes} hedged since it started`;
    }),
  ];
}

/**
 * What a sled back on a new disk waits for: in service all along, but the copies the
 * head nodes list there are not verified until every primary has audited it.
 */
function refillingOf(sled: NonNullable<ClusterStatus["sleds"]>[number], nowMs: number): string {
  const refilling = sled.refilling;
  if (refilling === undefined) return "";
  return `new disk ${formatDuration(Math.max(0, nowMs - refilling.sinceMs))} ago: ${refilling.partitions} ${refilling.partitions === 1 ? "partition" : "partitions"} not yet audited, copies listed there unverified`;
}

/**
 * How long a sled has been silent. `silentMs` is the leader's own measure, which a new
 * leader starts at its tenure (sleds.ts): after a leader change it called a sled silent
 * for minutes "silent 1.7s". An out sled's record keeps when it was last heard
 * (`lastSeenMs`, persisted when it was declared out), so its silence is at least that
 * old. An in sled's persisted `lastSeenMs` may be far older than its last heartbeat
 * (only changes are persisted), so it is not used.
 */
function silenceOf(sled: NonNullable<ClusterStatus["sleds"]>[number], nowMs: number): number {
  if (sled.state !== "out") return sled.silentMs;
  return Math.max(sled.silentMs, nowMs - sled.lastSeenMs);
}

const indent = (text: string) => text.replace(/^(?=.)/gm, "  ");

/**
 * Each live sled's capacity, usage and objects, with failed devices named, and the
 * cluster totals; a sled that did not answer says why. Nothing when status was not probed.
 */
export function capacityLines(status: ClusterStatus): string[] {
  const totals = status.capacity;
  const sleds = status.services.filter((service) => service.kind === "sled" && service.healthy);
  if (totals === undefined) return [];
  const header = ["SLED", "CAPACITY", "USED", "FREE", "CHUNKS", "BLOBS", ""];
  const rows = sleds.map((sled) => {
    const capacity = sled.capacity;
    if (capacity === undefined)
      return [sled.id, "-", "-", "-", "-", "-", `no answer: ${sled.capacityError ?? "unknown"}`];
    const failed = capacity.failedDevices;
    const damaged = capacity.damagedObjects ?? 0;
    const problems = [
      ...(failed.length === 0
        ? []
        : [
            `FAILED devices ${failed.map((device) => `${device.device} (${device.path})`).join(", ")}`,
          ]),
      ...(damaged === 0 ? [] : [`DAMAGED ${damaged} objects (found by scrub, not repaired)`]),
    ];
    return [
      sled.id,
      formatBytes(capacity.capacityBytes),
      `${formatBytes(capacity.usedBytes)} (${percent(capacity.usedBytes, capacity.capacityBytes)})`,
      formatBytes(capacity.freeBytes),
      String(capacity.chunks),
      String(capacity.blobs),
      problems.join("; "),
    ];
  });
  const unanswered =
    totals.sledsUnanswered === 0 ? "" : `, ${totals.sledsUnanswered} not answering`;
  const failed = totals.failedDevices === 0 ? "" : `, ${totals.failedDevices} failed devices`;
  return [
    "",
    `CAPACITY (${totals.sleds} sleds${unanswered})`,
    ...table([header, ...rows], "  "),
    `  total ${formatBytes(totals.capacityBytes)}  used ${formatBytes(totals.usedBytes)} (${percent(totals.usedBytes, totals.capacityBytes)})  free ${formatBytes(totals.freeBytes)}  ${totals.chunks} chunks  ${totals.blobs} blobs${failed}`,
  ];
}

function percent(part: number, whole: number): string {
  return whole === 0 ? "0%" : `${((100 * part) / whole).toFixed(1)}%`;
}

export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.max(0, Math.round(ms))}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`;
  if (ms < 3_600_000) return `${Math.floor(ms / 60_000)}m${Math.floor((ms % 60_000) / 1000)}s`;
  return `${Math.floor(ms / 3_600_000)}h${Math.floor((ms % 3_600_000) / 60_000)}m`;
}
