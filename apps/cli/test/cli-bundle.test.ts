// The `ballast` command run from its bundle, with the real launcher (bin/ballast.mjs) as
// separate node processes on this repository's sources: a recorded bundle is checked and
// run; with no manifest (a fresh clone) several commands started at once each build and
// run; a touched CLI source makes the recorded launcher build nothing and the current
// source build afresh; BALLAST_CLI_RUNNER=tsx runs main.ts through tsx, and a name it
// does not know is a clear error.

import { execFile } from "node:child_process";
import { readFile, rm, stat, utimes } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, test } from "vitest";
import { bundles } from "../src/bundles.ts";
import { cliBundleDir, cliBundleRecipe, cliEntry, cliToRun } from "../src/cli-bundle.ts";
import { repositoryRoot } from "../src/workspace.ts";

const run = promisify(execFile);
const ballastBin = fileURLToPath(new URL("../bin/ballast.mjs", import.meta.url));
const version = JSON.parse(
  await readFile(join(repositoryRoot, "apps/cli/package.json"), "utf8"),
).version;

function ballast(args: string[], env: NodeJS.ProcessEnv = {}) {
  return run(process.execPath, [ballastBin, ...args], { env: { ...process.env, ...env } });
}

async function manifest(): Promise<{ bundles: Record<string, string>; inputs: object }> {
  return JSON.parse(await readFile(join(cliBundleDir, "manifest.json"), "utf8"));
}

describe("the CLI's bundle", () => {
  test("a recorded bundle is checked (and so marked as in use) and run", async () => {
    const built = await bundles(cliBundleRecipe);
    const file = built.files.cli!;
    const hourAgo = new Date(Date.now() - 3_600_000);
    await utimes(file, hourAgo, hourAgo);
    const { stdout } = await ballast(["version"]);
    expect(stdout.trim()).toBe(version);
    // currentBundles touched it: the launcher read the manifest, and the check ran.
    expect((await stat(file)).mtimeMs).toBeGreaterThan(hourAgo.getTime() + 60_000);
    expect(await cliToRun(false, {})).toEqual({ runner: "bundle", file });
  });

  test("with no manifest, commands started at once each build, and run", async () => {
    await rm(join(cliBundleDir, "manifest.json"), { force: true });
    expect(await cliToRun(false, {})).toBeUndefined();
    const runs = await Promise.all([1, 2, 3].map(() => ballast(["version"])));
    for (const { stdout } of runs) expect(stdout.trim()).toBe(version);
    // Whichever wrote the manifest last, it names bundles that are there and current.
    const { bundles: named } = await manifest();
    expect(Object.keys(named).sort()).toEqual(["cli", "launch"]);
    for (const name of Object.values(named)) await stat(join(cliBundleDir, name));
    expect(await cliToRun(false, {})).toEqual({
      runner: "bundle",
      file: join(cliBundleDir, named.cli!),
    });
  });

  test("a touched CLI source: the recorded launcher builds nothing, the source builds", async () => {
    await bundles(cliBundleRecipe);
    // A module only the CLI holds (not the services, whose tests may run beside this);
    // its bytes and mtime stay, its ctime changes.
    const source = "apps/cli/src/table.ts";
    expect(Object.keys((await manifest()).inputs)).toContain(source);
    const path = join(repositoryRoot, source);
    const before = await stat(path);
    await utimes(path, before.atime, before.mtime);
    expect(await cliToRun(false, {})).toBeUndefined();
    const chosen = await cliToRun(true, {});
    expect(chosen?.runner).toBe("bundle");
    expect(chosen?.file.startsWith(cliBundleDir)).toBe(true);
    const { stdout } = await ballast(["version"]);
    expect(stdout.trim()).toBe(version);
  });

  test("BALLAST_CLI_RUNNER=tsx runs main.ts through tsx; an unknown runner is an error", async () => {
    const tsx = { BALLAST_CLI_RUNNER: "tsx" };
    expect(await cliToRun(false, tsx)).toBeUndefined();
    expect(await cliToRun(true, tsx)).toEqual({ runner: "tsx", file: cliEntry });
    expect((await ballast(["version"], tsx)).stdout.trim()).toBe(version);
    const failed = await ballast(["version"], { BALLAST_CLI_RUNNER: "bun" }).catch(
      (error: { code: number; stdout: string; stderr: string }) => error,
    );
    expect(failed).toMatchObject({
      code: 1,
      stdout: "",
      stderr: 'ballast: BALLAST_CLI_RUNNER must be one of bundle, tsx (or unset), got "bun"\n',
    });
  });
});
