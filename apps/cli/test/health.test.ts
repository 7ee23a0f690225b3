// The health summary of `ballast status` and the decision of `ballast status --check`,
// as pure functions of the status JSON.

import { describe, expect, test } from "vitest";
import { clusterHealth, healthLine, isFullStrength, volumeHealth } from "../src/health.ts";
import { type ClusterStatus, formatStatus } from "../src/status.ts";
import type { VolumeState } from "../src/volume.ts";

type Partition = VolumeState["partitions"][number];

function partition(index: number, fields: Partial<Partition> = {}): Partition {
  return {
    partition: index,
    partitionStart: index * 4096,
    partitionBytes: 4096,
    epoch: 1,
    primary: "head-1",
    secondaries: ["head-2"],
    inSync: ["head-1", "head-2"],
    learners: [],
    joining: [],
    rebuilds: [],
    checkpoints: [],
    ...fields,
  };
}

function volume(partitions: Partition[], replicaCount = 2, name = "vol"): VolumeState {
  return {
    name,
    sizeBytes: 4096 * partitions.length,
    replicaCount,
    partitionBytes: 4096,
    createdAtMs: 1,
    partitions,
  };
}

function service(
  id: string,
  healthy: boolean,
  kind: ClusterStatus["services"][number]["kind"] = "headnode",
): ClusterStatus["services"][number] {
  return {
    kind,
    id,
    pid: 1,
    healthy,
    startedAtMs: 1,
    lastHeartbeatAtMs: 1,
    lastHeartbeatAgeMs: 1,
    version: "0.1.0",
  };
}

function status(volumes: VolumeState[], dead: string[] = []): ClusterStatus {
  const ids = ["head-1", "head-2", "head-3"];
  return {
    nats: "nats://127.0.0.1:4222",
    coordinator: "coordinator-1",
    generatedAtMs: 1,
    services: ids.map((id) => service(id, !dead.includes(id))),
    volumes,
  };
}

const none = new Set<string>();

describe("volume health", () => {
  test("every member voting and nothing rebuilding is full strength", () => {
    const health = volumeHealth(volume([partition(0), partition(1)]), none);
    expect(health.state).toBe("full");
    expect(healthLine(health)).toBe("health: full strength (2 partitions)");
    expect(isFullStrength(status([volume([partition(0)])]))).toBe(true);
    expect(isFullStrength(status([]))).toBe(true);
  });

  test("fewer voting members than replicas is degraded, naming the partition", () => {
    const health = volumeHealth(volume([partition(0), partition(1, { secondaries: [] })]), none);
    expect(health.state).toBe("degraded");
    expect(healthLine(health)).toBe("health: DEGRADED: partition 1: 1 of 2 members");
    expect(isFullStrength(status([volume([partition(0, { secondaries: [] })])]))).toBe(false);
  });

  test("a member whose service is dead counts as missing, and is named", () => {
    // Before the coordinator replaces it, the partition still names the dead member.
    const state = status([volume([partition(0)])], ["head-2"]);
    const [health] = clusterHealth(state);
    expect(health!.state).toBe("degraded");
    expect(healthLine(health!)).toBe("health: DEGRADED: partition 0: 1 of 2 members, head-2 down");
    expect(isFullStrength(state)).toBe(false);
    // A dead node that is no member of the partition does not weaken it.
    expect(isFullStrength(status([volume([partition(0)])], ["head-3"]))).toBe(true);
  });

  test("a learner is rebuilding, with the progress the primary reported", () => {
    const rebuilding = partition(0, {
      secondaries: [],
      learners: ["head-3"],
      rebuilds: [{ node: "head-3", matchOpNum: 812, targetOpNum: 1024 }],
    });
    const health = volumeHealth(volume([rebuilding]), none);
    expect(health.state).toBe("rebuilding");
    expect(healthLine(health)).toBe(
      "health: REBUILDING: partition 0: 1 of 2 members, rebuilding head-3 op 812 of 1024",
    );
    // No report yet: the learner is named without progress.
    const unreported = volumeHealth(
      volume([partition(0, { secondaries: [], learners: ["head-3"] })]),
      none,
    );
    expect(healthLine(unreported)).toBe(
      "health: REBUILDING: partition 0: 1 of 2 members, rebuilding head-3",
    );
    expect(isFullStrength(status([volume([rebuilding])]))).toBe(false);
  });

  test("a joiner is not yet full strength, even with every secondary in place", () => {
    // Three replicas: a joiner counts for commit but is not yet a secondary.
    const joining = partition(0, { secondaries: ["head-2"], joining: ["head-3"] });
    const health = volumeHealth(volume([joining], 3), none);
    expect(health.state).toBe("rebuilding");
    expect(healthLine(health)).toBe(
      "health: REBUILDING: partition 0: 2 of 3 members, joining head-3",
    );
    expect(isFullStrength(status([volume([joining], 3)]))).toBe(false);
    // A two-replica partition with a stale joiner listed is still not at full strength.
    expect(isFullStrength(status([volume([partition(0, { joining: ["head-3"] })])]))).toBe(false);
  });

  test("degraded outranks rebuilding; one weak volume fails the check for all", () => {
    const health = volumeHealth(
      volume([
        partition(0, { secondaries: [], learners: ["head-3"] }),
        partition(1, { secondaries: [] }),
      ]),
      none,
    );
    expect(health.state).toBe("degraded");
    expect(healthLine(health)).toBe(
      "health: DEGRADED: partition 0: 1 of 2 members, rebuilding head-3; partition 1: 1 of 2 members",
    );
    const mixed = status([
      volume([partition(0)], 2, "good"),
      volume([partition(0, { secondaries: [] })], 2, "weak"),
    ]);
    expect(clusterHealth(mixed).map((entry) => entry.state)).toEqual(["full", "degraded"]);
    expect(isFullStrength(mixed)).toBe(false);
  });

  test("the human status view has the health line under each volume", () => {
    const text = formatStatus(status([volume([partition(0)])], ["head-2"]), 1);
    expect(text).toContain(
      "  vol  4KiB  2 replicas  1 partitions of 4KiB\n    health: DEGRADED: partition 0: 1 of 2 members, head-2 down\n    partition 0",
    );
  });

  test("a member the status does not list at all counts as down, and is shown", () => {
    // A coordinator that restarted after head-2 died has never heard it: the status
    // lists no service head-2, and the partition still names it.
    const state = status([volume([partition(0)])]);
    state.services = state.services.filter((entry) => entry.id !== "head-2");
    const [health] = clusterHealth(state);
    expect(healthLine(health!)).toBe("health: DEGRADED: partition 0: 1 of 2 members, head-2 down");
    expect(isFullStrength(state)).toBe(false);
    const text = formatStatus(state, 1);
    expect(text).toMatch(/headnode +head-2 +- +UNKNOWN +never +- +not heard by this coordinator/);
    expect(text).toContain("SERVICES (2 of 3 healthy)");
  });

  test("a partition whose every voting member is down is unavailable, not degraded", () => {
    const lone = partition(0, { secondaries: [] });
    const state = status([volume([lone])], ["head-1"]);
    const [health] = clusterHealth(state);
    expect(health!.state).toBe("unavailable");
    expect(healthLine(health!)).toBe(
      "health: UNAVAILABLE: partition 0: 0 of 2 members, head-1 down",
    );
    expect(isFullStrength(state)).toBe(false);
  });

  test("chunks short of copies make a volume degraded, and fail the check", () => {
    const short = {
      ...volume([partition(0)]),
      reported: { partitions: 1, partitionsReported: 1, chunksShortOfCopies: 3 },
    };
    const state = status([short]);
    const [health] = clusterHealth(state);
    expect(health!.state).toBe("degraded");
    expect(healthLine(health!)).toBe("health: DEGRADED: 3 chunks short of copies");
    expect(isFullStrength(state)).toBe(false);
    const whole = { ...short, reported: { ...short.reported, chunksShortOfCopies: 0 } };
    expect(isFullStrength(status([whole]))).toBe(true);
  });

  test("a sled in service that is not alive puts every volume's copies at risk", () => {
    // sled-1 died moments ago: still in service (its copies count), but none can be read.
    const reported = { partitions: 1, partitionsReported: 1, chunksShortOfCopies: 0 };
    const shown = { ...volume([partition(0)]), reported };
    const state = status([shown]);
    state.services.push(service("sled-1", false, "sled"), service("sled-2", true, "sled"));
    state.sleds = ["sled-1", "sled-2"].map((id) => ({
      id,
      state: "in" as const,
      since: 1,
      firstSeenMs: 1,
      lastSeenMs: 1,
      silentMs: 0,
    }));
    const [health] = clusterHealth(state);
    expect(healthLine(health!)).toBe(
      "health: DEGRADED: copies on sled-1 cannot be read (a sled in service but not alive)",
    );
    expect(isFullStrength(state)).toBe(false);
    const text = formatStatus(state, 1);
    expect(text).toContain(
      "every chunk has 2 copies on sleds in service, but sled-1 is not alive: copies there cannot be read until it returns or is declared out",
    );
    expect(text).not.toContain("health: full strength");
    // Declared out, its chunks copied again elsewhere: at full strength with one sled less.
    state.sleds[0]!.state = "out";
    expect(isFullStrength(state)).toBe(true);
    // A record in service that no live service answers for (never heard since a restart).
    state.sleds[0]!.state = "in";
    state.services = state.services.filter((entry) => entry.id !== "sled-1");
    expect(isFullStrength(state)).toBe(false);
  });

  test("a sled in service back on a new disk degrades the volumes whose primaries have not audited it", () => {
    // sled-1 restarted on a wiped directory: alive and in service, every chunk reported
    // with 2 copies, but the copies listed there are not verified until the audit.
    const reported = { partitions: 1, partitionsReported: 1, chunksShortOfCopies: 0 };
    const shown = [volume([partition(0)]), volume([partition(0)], 2, "other")];
    const state = status(shown.map((entry) => ({ ...entry, reported })));
    state.services.push(service("sled-1", true, "sled"), service("sled-2", true, "sled"));
    state.sleds = ["sled-1", "sled-2"].map((id) => ({
      id,
      state: "in" as const,
      since: 1,
      firstSeenMs: 1,
      lastSeenMs: 1,
      silentMs: 0,
    }));
    state.sleds[0]!.refilling = { sinceMs: 1, partitions: 1, volumes: ["vol"] };
    const [vol, other] = clusterHealth(state);
    expect(healthLine(vol!)).toBe(
      "health: DEGRADED: copies on sled-1 not yet verified (back on a new disk; its audit is under way)",
    );
    expect(other!.state).toBe("full");
    expect(isFullStrength(state)).toBe(false);
    const text = formatStatus(state, 1);
    expect(text).toContain(
      "every chunk has 2 copies on sleds in service, but sled-1 is back on a new disk: copies listed there are unverified until every primary has audited it",
    );
    expect(text).toMatch(/SLEDS \(2 in service, 0 out, 1 refilling\)/);
    expect(text).toMatch(
      /sled-1\s+REFILLING\s+since .* ago\s+new disk .* ago: 1 partition not yet audited/,
    );
    // Out meanwhile: its copies count for nothing already (the out is what status says).
    state.sleds[0]!.state = "out";
    expect(clusterHealth(state)[0]!.copies?.refillingSleds ?? []).toEqual([]);
    // Audited by every primary: the leader drops the mark, and the check passes.
    state.sleds[0]!.state = "in";
    delete state.sleds[0]!.refilling;
    expect(isFullStrength(state)).toBe(true);
  });

  test("a failed member counts as missing although its service is alive, and is named", () => {
    // A lone primary whose journal failed: head-1 is healthy, its replica serves nothing.
    const failed = partition(0, { secondaries: [], failed: ["head-1"] });
    const [health] = clusterHealth(status([volume([failed])]));
    expect(health!.state).toBe("unavailable");
    expect(healthLine(health!)).toBe(
      "health: UNAVAILABLE: partition 0: 0 of 2 members, head-1 failed",
    );
    // A failed secondary beside a live primary: degraded, the secondary named.
    const secondary = partition(0, { failed: ["head-2"] });
    expect(healthLine(volumeHealth(volume([secondary]), none))).toBe(
      "health: DEGRADED: partition 0: 1 of 2 members, head-2 failed",
    );
    const text = formatStatus(status([volume([failed])]), 1);
    expect(text).toContain("secondaries (none: degraded)  FAILED head-1\n");
  });

  test("a partition the coordinator judges unavailable is unavailable, members alive or not", () => {
    const judged = partition(0, { unavailable: true });
    const health = volumeHealth(volume([judged]), none);
    expect(health.state).toBe("unavailable");
    expect(healthLine(health)).toBe(
      "health: UNAVAILABLE: partition 0: 2 of 2 members, no member can serve it (the coordinator's log says why)",
    );
    expect(isFullStrength(status([volume([judged])]))).toBe(false);
    expect(formatStatus(status([volume([judged])]), 1)).toContain(
      "    UNAVAILABLE: no member can serve it (the coordinator's log says why)\n",
    );
  });

  test("objects a scrub found damaged on a live sled, not yet repaired, fail the check", () => {
    const reported = { partitions: 1, partitionsReported: 1, chunksShortOfCopies: 0 };
    const shown = { ...volume([partition(0)]), reported };
    const state = status([shown]);
    const sled = service("sled-1", true, "sled");
    sled.capacity = {
      capacityBytes: 1,
      usedBytes: 1,
      freeBytes: 0,
      chunks: 3,
      blobs: 0,
      devices: 1,
      failedDevices: [],
      damagedObjects: 2,
    };
    state.services.push(sled);
    state.capacity = {
      sleds: 1,
      sledsUnanswered: 0,
      capacityBytes: 1,
      usedBytes: 1,
      freeBytes: 0,
      chunks: 3,
      blobs: 0,
      failedDevices: 0,
    };
    const [health] = clusterHealth(state);
    expect(healthLine(health!)).toBe(
      "health: DEGRADED: 2 damaged objects on sled-1 (found by scrub, not repaired)",
    );
    expect(isFullStrength(state)).toBe(false);
    expect(formatStatus(state, 1)).toContain("DAMAGED 2 objects (found by scrub, not repaired)");
    sled.capacity.damagedObjects = 0;
    expect(isFullStrength(state)).toBe(true);
  });
});
