// `ballast status --check` on real processes, as a health probe would run it: a
// two-replica volume on three head nodes is at full strength (exit 0); a member killed
// with SIGKILL makes its partition degraded and then rebuilding on the spare (exit 5,
// with the health line saying so); once the spare has caught up and been promoted, the
// partition is back at full strength (exit 0 again). A sled killed while still in
// service makes it exit 5 too (its copies count but cannot be read), until it is back;
// the leader's ballast_cluster_sleds_unreachable gauge says the same.
// Every wait is bounded.

import { afterAll, beforeAll, expect, test } from "vitest";
import { exitCodes } from "../../apps/cli/src/errors.ts";
import { runCli } from "../support/cli.ts";
import { startTestCluster, type TestCluster, waitFor } from "../support/cluster.ts";
import { VolumeModel } from "../support/volume-io.ts";

let cluster: TestCluster;
let io: VolumeModel;

beforeAll(async () => {
  cluster = await startTestCluster({
    headNodes: 3,
    sleds: 3,
    metrics: true,
    env: { BALLAST_CHECKPOINT_INTERVAL_MS: "500" },
  });
  io = new VolumeModel(cluster.bus, "hc");
});
afterAll(() => cluster?.stop());

const check = () => runCli(["status", "--check", "--nats", cluster.cluster.natsUrl]);

/** Runs `status --check` until its exit code is `code`; returns that run. */
function checkUntil(code: number, what: string, timeoutMs: number) {
  return waitFor(
    what,
    async () => {
      const result = await check();
      return result.code === code ? result : undefined;
    },
    timeoutMs,
    250,
  );
}

/** Scrapes the coordinator's metrics until gauge `name` reads `value`. */
function leaderGaugeUntil(name: string, value: number) {
  const url = cluster.cluster.metricsUrl(cluster.cluster.ids("coordinator")[0]!)!;
  const line = new RegExp(`^${name}(\\{[^}]*\\})? ${value}$`, "m");
  return waitFor(
    `${name} to read ${value}`,
    async () => (line.test(await (await fetch(url)).text()) ? true : undefined),
    30_000,
    250,
  );
}

test("status --check: 0 at full strength, 5 while a killed member is missing or rebuilding, 0 once rebuilt", async () => {
  const created = await runCli([
    "volume",
    "create",
    "hc",
    "--size",
    "8MiB",
    "--partition-size",
    "8MiB",
    "--replicas",
    "2",
    "--nats",
    cluster.cluster.natsUrl,
  ]);
  expect(created.stderr).toBe("");
  expect(created.code).toBe(0);
  for (let block = 0; block < 64; block++) await io.writeBlock(block, 1 + block);
  await io.flush();

  const healthy = await check();
  expect(healthy.stderr).toBe("");
  expect(healthy.code).toBe(exitCodes.ok);
  expect(healthy.stdout).toContain("health: full strength (1 partitions)");

  // Wait for a checkpoint on sleds, so that the spare rebuilds from one.
  await waitFor("a checkpoint of the primary in the catalogue", async () => {
    const state = (await io.describe()).partitions[0]!;
    return state.checkpoints.some((checkpoint) => checkpoint.node === state.primary)
      ? true
      : undefined;
  });
  const before = (await io.describe()).partitions[0]!;
  const victim = before.secondaries[0]!;
  const spare = cluster.cluster
    .ids("headnode")
    .find((id) => id !== before.primary && id !== victim)!;
  await cluster.cluster.kill(victim, "SIGKILL");

  // Degraded (the member dead or dropped) or already rebuilding on the spare: either way
  // not at full strength, and the health line says which.
  const weak = await checkUntil(exitCodes.notFullStrength, "status --check to exit 5", 30_000);
  expect(weak.stdout).toMatch(/health: (DEGRADED|REBUILDING): partition 0: 1 of 2 members/);
  expect(weak.stderr).toMatch(/ballast: volume hc health: (DEGRADED|REBUILDING)/);

  const rebuilt = await checkUntil(exitCodes.ok, "status --check to exit 0 again", 90_000);
  expect(rebuilt.stderr).toBe("");
  expect(rebuilt.stdout).toContain("health: full strength (1 partitions)");
  const after = (await io.describe()).partitions[0]!;
  expect([after.primary, ...after.secondaries].sort()).toEqual([before.primary, spare].sort());
  expect(after.learners).toEqual([]);
  expect(after.joining ?? []).toEqual([]);
  await io.expectAllWritten();
});

test("status --check: 5 while a sled holding copies is dead but still in service, 0 once it is back", async () => {
  // The volume's chunks are flushed (the first test): some have a copy on every sled.
  const sled = cluster.cluster.ids("sled")[0]!;
  await cluster.cluster.kill(sled, "SIGKILL");
  // Its copies still count (it is not declared out for a minute), but none can be read:
  // the old check called this full strength and every chunk whole.
  const atRisk = await checkUntil(exitCodes.notFullStrength, "status --check to exit 5", 30_000);
  expect(atRisk.stdout).toContain(
    `but ${sled} is not alive: copies there cannot be read until it returns or is declared out`,
  );
  expect(atRisk.stderr).toContain(
    `ballast: volume hc health: DEGRADED: copies on ${sled} cannot be read`,
  );
  // The leader's metrics say it too, for an operator who watches only Prometheus.
  await leaderGaugeUntil("ballast_cluster_sleds_unreachable", 1);
  cluster.cluster.restart(sled);
  const back = await checkUntil(
    exitCodes.ok,
    "status --check to exit 0 with the sled back",
    60_000,
  );
  expect(back.stdout).toContain("health: full strength (1 partitions)");
  expect(back.stdout).toContain("every chunk has 2 copies on sleds in service;");
  await leaderGaugeUntil("ballast_cluster_sleds_unreachable", 0);
  await io.expectAllWritten();
});

test("status --check exits 3 when no coordinator answers", async () => {
  // The coordinator is killed: NATS still answers, the control plane does not.
  await cluster.cluster.kill(cluster.cluster.ids("coordinator")[0]!, "SIGKILL");
  const result = await check();
  expect(result.code).toBe(exitCodes.unreachable);
  expect(result.stderr).toContain("no coordinator answered");
});
