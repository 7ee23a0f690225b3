// `ballast up` on a data directory whose launcher died (SIGKILL, a crash) and left its
// services running: real processes, a real nats-server. The new `up` must stop every
// service the old cluster file names, then the nats-server, and only then start its own,
// which get their data directories (one process per directory, data-dir-lock.ts) and
// become healthy. Before, it started new services beside the old ones: each pair on one
// data directory.
//
// The services that outlive their launcher are started here without the tie to a
// parent (BALLAST_PARENT_PID), the state a launcher leaves when its services do not
// notice it die in time: a pid reused, a long start or stop under way.

import { spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { type ClusterFile, writeClusterFile } from "@ballast/cli";
import { afterAll, beforeAll, expect, test } from "vitest";
import { isRunning, startCli } from "../support/cli.ts";
import { startTestCluster, type TestCluster, testEnv, waitFor } from "../support/cluster.ts";

let left: TestCluster;
const launched: ReturnType<typeof startCli>[] = [];

beforeAll(async () => {
  left = await startTestCluster({ sleds: 1, headNodes: 1 });
});

afterAll(async () => {
  for (const run of launched) {
    if (run.child.exitCode === null) run.child.kill("SIGTERM");
    await run.exited;
  }
  await left?.stop();
});

/** The pid of a process that has exited: what a dead launcher's pid looks like. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ["-e", ""], { stdio: "ignore" });
  await new Promise((resolve) => child.once("exit", resolve));
  return child.pid!;
}

test("up after a dead launcher stops the services it left, then runs its own", async () => {
  const { cluster, dataDir } = left;
  const nats = cluster.natsServer!;
  const natsRecord = {
    pid: nats.pid,
    port: nats.port,
    config: nats.configPath,
    log: nats.logPath,
    storeDir: nats.storeDir,
  };
  const oldServices = cluster.records();
  await writeClusterFile(dataDir, {
    natsUrl: cluster.natsUrl,
    natsServer: natsRecord,
    natsServers: [natsRecord],
    launcherPid: await deadPid(),
    startedAtMs: Date.now(),
    services: oldServices,
  });

  const run = startCli(
    ["up", "--data-dir", dataDir, "--headnodes", "1", "--sleds", "1", "--gateways", "0"],
    testEnv,
  );
  launched.push(run);
  const outcome = await waitFor(
    "up to be ready, or to say a service failed",
    () =>
      /ready in|not every service is healthy|exited with/.exec(run.output.text)?.[0] ??
      (run.child.exitCode === null ? undefined : `exit ${run.child.exitCode}`),
    60_000,
    250,
  );
  expect(outcome, run.output.text).toBe("ready in");
  for (const service of oldServices) {
    expect(run.output.text).toContain(
      `stopped ${service.id} pid ${service.pid} left by an earlier run`,
    );
    expect(isRunning(service.pid)).toBe(false);
  }
  expect(run.output.text).toContain(`stopped nats-server pid ${nats.pid} left by an earlier run`);
  const now = JSON.parse(await readFile(`${dataDir}/cluster.json`, "utf8")) as ClusterFile;
  expect(now.launcherPid).toBe(run.child.pid);
  expect(now.services.map((service) => service.id).sort()).toEqual(
    oldServices.map((service) => service.id).sort(),
  );
  for (const service of now.services) {
    expect(oldServices.map((old) => old.pid)).not.toContain(service.pid);
    expect(isRunning(service.pid)).toBe(true);
  }

  run.child.kill("SIGTERM");
  expect(await run.exited).toBe(0);
  const pids = [...now.services.map((service) => service.pid), now.natsServer!.pid];
  expect(pids.filter(isRunning)).toEqual([]);
});
