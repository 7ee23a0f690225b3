// `ballast up` and `ballast status` as a new user runs them: real CLI processes, a real
// nats-server, real services. Ctrl-C (SIGINT to the launcher) must leave no process
// behind, and a second `up` on the same data directory must bring back the same cluster.

import { chmod, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { type ClusterFile, type ClusterStatus, freePort } from "@ballast/cli";
import { constants as runtimeConstants } from "@ballast/runtime";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { isRunning, runCli, startCli } from "../support/cli.ts";
import { temporaryDirectory, waitFor } from "../support/cluster.ts";

// The real defaults of `ballast up`, but small sled devices, so as not to fill the disk.
const smallSleds = { BALLAST_SLED_DEVICE_BYTES: String(64 * 1024 * 1024) };
let dataDir: string;
let removeDirectory: () => Promise<void>;
const launched: ReturnType<typeof startCli>[] = [];

beforeAll(async () => {
  const directory = await temporaryDirectory();
  dataDir = directory.path;
  removeDirectory = directory.remove;
  nbdPort = String(await freePort());
});

afterAll(async () => {
  for (const run of launched) {
    if (run.child.exitCode === null) run.child.kill("SIGTERM");
    await run.exited;
  }
  await removeDirectory();
});

const expectedIds = [
  "coordinator-1",
  "gateway-1",
  "head-1",
  "head-2",
  "head-3",
  "sled-1",
  "sled-2",
  "sled-3",
];
let nbdPort = "";

async function statusJson(): Promise<ClusterStatus | undefined> {
  const result = await runCli(["status", "--json", "--data-dir", dataDir]);
  if (result.code !== 0) return undefined;
  return JSON.parse(result.stdout) as ClusterStatus;
}

async function waitForFullHealth(): Promise<ClusterStatus> {
  // The bound: every service healthy within 15 s of `up`.
  return waitFor(
    "all eight services healthy in `ballast status --json`",
    async () => {
      const status = await statusJson();
      const healthy = status?.services.filter((service) => service.healthy).map((s) => s.id);
      return healthy !== undefined && expectedIds.every((id) => healthy.includes(id))
        ? status
        : undefined;
    },
    15_000,
    250,
  );
}

async function readCluster(): Promise<ClusterFile> {
  return JSON.parse(await readFile(join(dataDir, "cluster.json"), "utf8")) as ClusterFile;
}

async function identityCreatedAt(id: string): Promise<number> {
  const identity = JSON.parse(await readFile(join(dataDir, id, "identity.json"), "utf8"));
  return identity.createdAtMs as number;
}

describe("ballast up and status", () => {
  const firstRun: { status?: ClusterStatus; cluster?: ClusterFile; created?: number[] } = {};

  test("status before any cluster exists says how to start one", async () => {
    const result = await runCli(["status", "--data-dir", dataDir]);
    expect(result.code).toBe(3);
    expect(result.stderr).toMatch(
      /no cluster found: pass --nats URL, set BALLAST_NATS, or start one/,
    );
  });

  test("up starts every service and status --json shows them healthy", async () => {
    const run = startCli(["up", "--data-dir", dataDir, "--nbd-port", nbdPort], smallSleds);
    launched.push(run);
    const status = await waitForFullHealth();
    expect(status.services.map((service) => service.id).sort()).toEqual(expectedIds);
    for (const service of status.services) {
      expect(service).toMatchObject({ healthy: true, version: "0.1.0" });
      expect(isRunning(service.pid)).toBe(true);
      // Started with the node flags every service needs (runtime constants.ts).
      const commandLine = (await readFile(`/proc/${service.pid}/cmdline`, "utf8")).split("\0");
      expect(commandLine.slice(1, 1 + runtimeConstants.serviceNodeFlags.length)).toEqual([
        ...runtimeConstants.serviceNodeFlags,
      ]);
      // …and glibc's malloc settings, the launcher having none of its own. /proc shows
      // the variable as glibc left it after parsing it (2.36 cuts it at its first ':').
      if (process.env.GLIBC_TUNABLES === undefined) {
        const environment = (await readFile(`/proc/${service.pid}/environ`, "utf8")).split("\0");
        const tunables = environment.find((entry) => entry.startsWith("GLIBC_TUNABLES="));
        expect(tunables).toBeDefined();
        expect(
          `GLIBC_TUNABLES=${runtimeConstants.serviceMallocTunables}`.startsWith(tunables!),
        ).toBe(true);
        expect(tunables!.length).toBeGreaterThan("GLIBC_TUNABLES=glibc.malloc.".length);
      }
      // The coordinator probed each service; its own report agrees on who it is.
      expect(service.info).toMatchObject({
        nodeId: service.id,
        kind: service.kind,
        pid: service.pid,
      });
    }
    expect(status.volumes).toEqual([]);
    const cluster = await readCluster();
    expect(cluster.launcherPid).toBe(run.child.pid);
    expect(cluster.natsUrl).toMatch(/^nats:\/\/127\.0\.0\.1:\d+$/);
    expect(isRunning(cluster.natsServer!.pid)).toBe(true);
    // Every service's metrics endpoint is printed, and answers.
    const metricsUrls = await waitFor("a metrics URL per service in up's output", () => {
      const urls = [...run.output.text.matchAll(/metrics (http:\/\/127\.0\.0\.1:\d+\/metrics)/g)];
      return urls.length === expectedIds.length ? urls.map((match) => match[1]!) : undefined;
    });
    for (const url of metricsUrls) {
      const response = await fetch(url);
      expect(response.status).toBe(200);
      expect(await response.text()).toContain("target_info");
    }
    firstRun.status = status;
    firstRun.cluster = cluster;
    firstRun.created = await Promise.all(expectedIds.map(identityCreatedAt));
  });

  test("the human status lists every service and the environment finds the cluster too", async () => {
    const cluster = firstRun.cluster!;
    const result = await runCli(["status", "--data-dir", "/nonexistent"], {
      BALLAST_NATS: cluster.natsUrl,
      // An explicit URL needs credentials too: the client's, as handed out.
      BALLAST_NATS_CREDS: join(dataDir, "credentials", "client.json"),
    });
    expect(result.code).toBe(0);
    expect(result.stdout).toContain("SERVICES (8 of 8 healthy)");
    for (const id of expectedIds)
      expect(result.stdout).toMatch(new RegExp(`${id}\\s+\\d+\\s+healthy`));
  });

  test("the local user runs every volume command with the files up wrote, admin ones too", async () => {
    // From cluster.json alone: the client's file for create and describe, the
    // operator's for delete (the admin subject refuses the client's).
    const created = await runCli([
      "volume",
      "create",
      "quick",
      "--size",
      "8MiB",
      "--data-dir",
      dataDir,
    ]);
    expect(created.code, created.stderr).toBe(0);
    const described = await runCli(["volume", "describe", "quick", "--data-dir", dataDir]);
    expect(described.code, described.stderr).toBe(0);
    const deleted = await runCli(["volume", "delete", "quick", "--data-dir", dataDir]);
    expect(deleted.code, deleted.stderr).toBe(0);
    expect(deleted.stdout).toContain("deleted volume quick");
  });

  test("a second up on a running data directory is refused", async () => {
    const result = await runCli(["up", "--data-dir", dataDir, "--nbd-port", nbdPort]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/a cluster is already running from .* \(launcher pid \d+\)/);
  });

  test("Ctrl-C stops every child and leaves no process behind", async () => {
    const run = launched[0]!;
    const pids = [
      ...firstRun.status!.services.map((service) => service.pid),
      firstRun.cluster!.natsServer!.pid,
    ];
    run.child.kill("SIGINT");
    expect(await run.exited).toBe(0);
    expect(run.output.text).toContain("stopped; no Ballast process is left running.");
    expect(pids.filter(isRunning)).toEqual([]);
    const cluster = await readCluster();
    expect(cluster.launcherPid).toBeUndefined();
    expect(cluster.stoppedAtMs).toBeGreaterThan(cluster.startedAtMs);
  });

  test("up again on the same data directory brings back the same cluster", async () => {
    const run = startCli(["up", "--data-dir", dataDir, "--nbd-port", nbdPort], smallSleds);
    launched.push(run);
    const status = await waitForFullHealth();
    const cluster = await readCluster();
    // Same NATS port (it was free), same nodes, and no data directory formatted again.
    expect(cluster.natsServer!.port).toBe(firstRun.cluster!.natsServer!.port);
    expect(status.services.map((service) => service.id).sort()).toEqual(expectedIds);
    expect(await Promise.all(expectedIds.map(identityCreatedAt))).toEqual(firstRun.created);
    run.child.kill("SIGTERM");
    expect(await run.exited).toBe(0);
    const pids = [...status.services.map((service) => service.pid), cluster.natsServer!.pid];
    expect(pids.filter(isRunning)).toEqual([]);
  });
});

describe("ballast command errors", () => {
  test("an unknown command or flag is a usage error", async () => {
    const unknownCommand = await runCli(["frobnicate"]);
    expect(unknownCommand.code).toBe(2);
    expect(unknownCommand.stderr).toContain('unknown command "frobnicate"');
    const unknownFlag = await runCli(["up", "--headnodes", "0"]);
    expect(unknownFlag.code).toBe(2);
    expect(unknownFlag.stderr).toContain("--headnodes must be a whole number from 1 to 32");
  });

  test("a value a service would refuse is a usage error before anything starts", async () => {
    // No nats-server to find: a launcher that went ahead would end in exit 4, not 2.
    const directory = await temporaryDirectory();
    const result = await runCli(["up", "--data-dir", directory.path, "--log-level", "verbose"], {
      BALLAST_NATS_SERVER: "/nonexistent/nats-server",
    });
    await directory.remove();
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("--log-level: must be one of");
  });

  test("a missing nats-server is named with how to install it", async () => {
    const directory = await temporaryDirectory();
    const result = await runCli(["up", "--data-dir", directory.path], {
      BALLAST_NATS_SERVER: "/nonexistent/nats-server",
    });
    await directory.remove();
    expect(result.code).toBe(4);
    expect(result.stderr).toContain("apt-get install nats-server");
  });

  test("up makes its data directory 0700, and leaves an existing one's mode but warns when others can read it", async () => {
    // Stopped at the missing nats-server: the directories are made before it is looked for.
    const directory = await temporaryDirectory();
    const missingNats = { BALLAST_NATS_SERVER: "/nonexistent/nats-server" };
    const modeOf = async (path: string) => ((await stat(path)).mode & 0o777).toString(8);
    try {
      const fresh = join(directory.path, "new", ".ballast");
      const first = await runCli(["up", "--data-dir", fresh], missingNats);
      expect(first.code).toBe(4);
      expect(await modeOf(join(directory.path, "new"))).toBe("700");
      expect(await modeOf(fresh)).toBe("700");
      expect(await modeOf(join(fresh, "logs"))).toBe("700");
      expect(first.stdout).not.toContain("open to other users");

      // One an older build made (0755): its mode stays, and up says how to close it.
      await chmod(directory.path, 0o755);
      const second = await runCli(["up", "--data-dir", directory.path], missingNats);
      expect(second.code).toBe(4);
      expect(second.stdout).toContain(
        `! ${directory.path} is open to other users (mode 755), who can read volume data from its files: chmod 700 ${directory.path}`,
      );
      expect(await modeOf(directory.path)).toBe("755");
    } finally {
      await directory.remove();
    }
  });

  test("status against a NATS URL where nothing listens is unreachable, not a hang", async () => {
    // The command's wait for NATS, shortened from its 10 s: the bound is what is tested.
    const result = await runCli(["status", "--nats", "nats://127.0.0.1:1"], {
      BALLAST_NATS_CONNECT_TIMEOUT_MS: "1000",
    });
    expect(result.code).toBe(3);
    expect(result.stderr).toContain("cannot reach NATS at nats://127.0.0.1:1 (from --nats)");
    const bad = await runCli(["status", "--nats", "nats://127.0.0.1:1"], {
      BALLAST_NATS_CONNECT_TIMEOUT_MS: "soon",
    });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("BALLAST_NATS_CONNECT_TIMEOUT_MS must be a whole number");
  });
});
