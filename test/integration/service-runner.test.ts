// How LocalCluster runs services, from their bundles or through tsx, checked on the
// command lines of the real processes; a restarted service runs the bundle
// its cluster started with; a runner name the launcher does not know stops the start
// before anything runs; and a stop that kills (the tests' teardown) ends every process,
// NATS too, without the graceful stop's shutdown, which a plain stop still does.

import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { isAlive, LocalCluster, serviceBundleDir, serviceEntry } from "@ballast/cli";
import { afterEach, describe, expect, test } from "vitest";
import {
  startTestCluster,
  type TestCluster,
  temporaryDirectory,
  waitUntilHealthy,
} from "../support/cluster.ts";

let running: TestCluster | undefined;

afterEach(async () => {
  await running?.stop();
  running = undefined;
});

async function commandLine(pid: number): Promise<string[]> {
  const text = await readFile(`/proc/${pid}/cmdline`, "utf8");
  return text.split("\0").filter((part) => part !== "");
}

describe("service runner", () => {
  test("services run from their bundles, and a restart runs the same one", async () => {
    running = await startTestCluster({ coordinators: 1, sleds: 1, runner: "bundle" });
    const { cluster, bus } = running;
    const bundleOf = async (id: string) => {
      const args = await commandLine(cluster.pid(id));
      expect(args).toContain("--enable-source-maps");
      expect(args).not.toContain("--import");
      const file = args.find((arg) => arg.startsWith(serviceBundleDir));
      expect(file).toBeDefined();
      return file!;
    };
    expect(await bundleOf("coordinator-1")).toMatch(/\/coordinator-[0-9a-f]{16}\.mjs$/);
    const sled = await bundleOf("sled-1");
    expect(sled).toMatch(/\/sled-[0-9a-f]{16}\.mjs$/);
    await cluster.kill("sled-1");
    cluster.restart("sled-1");
    expect(await bundleOf("sled-1")).toBe(sled);
    await waitUntilHealthy(bus, ["sled-1"]);
  });

  test("the tsx runner runs main.ts through tsx", async () => {
    running = await startTestCluster({ coordinators: 1, runner: "tsx" });
    const args = await commandLine(running.cluster.pid("coordinator-1"));
    expect(args).toContain("--import");
    expect(args).toContain(serviceEntry("coordinator"));
    expect(args.some((arg) => arg.startsWith(serviceBundleDir))).toBe(false);
  });

  test("a stop with kill ends every process at once; a plain stop shuts each service down", async () => {
    for (const kill of [true, false]) {
      running = await startTestCluster({ coordinators: 1, headNodes: 1, sleds: 1 });
      const { cluster, dataDir } = running;
      const ids = cluster.ids();
      const pids = [...ids.map((id) => cluster.pid(id)), cluster.natsServer!.pid];
      await cluster.stop({ kill });
      for (const pid of pids) expect(isAlive(pid), `pid ${pid}`).toBe(false);
      for (const id of ids) {
        const log = await readFile(join(dataDir, "logs", `${id}.log`), "utf8");
        expect(log.includes('"msg":"shutting down"'), `${id} (kill: ${kill})`).toBe(!kill);
      }
      await running.stop();
      running = undefined;
    }
  });

  test("an unknown BALLAST_SERVICE_RUNNER fails the start before anything runs", async () => {
    const previous = process.env.BALLAST_SERVICE_RUNNER;
    process.env.BALLAST_SERVICE_RUNNER = "bun";
    const directory = await temporaryDirectory();
    try {
      await expect(
        LocalCluster.start({ dataDir: directory.path, coordinators: 1, headNodes: 0, sleds: 0 }),
      ).rejects.toThrow(/BALLAST_SERVICE_RUNNER must be one of bundle, tsx/);
      expect(await readdir(directory.path)).toEqual([]);
    } finally {
      if (previous === undefined) delete process.env.BALLAST_SERVICE_RUNNER;
      else process.env.BALLAST_SERVICE_RUNNER = previous;
      await directory.remove();
    }
  });
});
