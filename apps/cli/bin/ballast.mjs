#!/usr/bin/env node
// The `ballast` command. It runs the CLI from an esbuild bundle of its sources, kept in
// step with them by apps/cli/src/cli-bundle.ts; this file is plain JavaScript, so all it
// knows is where that module's bundle is recorded. When there is none yet (a fresh
// clone), when it finds a source changed, or with BALLAST_CLI_RUNNER=tsx, the launcher
// loads tsx and runs the module's source instead, which builds the bundle (or runs
// main.ts through tsx).
import { readFile } from "node:fs/promises";

const bundleDir = new URL("../../../node_modules/.cache/ballast/cli/", import.meta.url);

/** The recorded launch bundle's launchCli, or undefined when nothing usable is recorded. */
async function recordedLauncher() {
  try {
    const manifest = JSON.parse(await readFile(new URL("manifest.json", bundleDir), "utf8"));
    const name = manifest.bundles.launch;
    if (typeof name !== "string" || !/^launch-[0-9a-f]+\.mjs$/.test(name)) return undefined;
    return (await import(new URL(name, bundleDir).href)).launchCli;
  } catch {
    return undefined;
  }
}

const launchRecorded = await recordedLauncher();
if (launchRecorded === undefined || !(await launchRecorded(false))) {
  const { register } = await import("tsx/esm/api");
  register();
  const { launchCli } = await import("../src/cli-bundle.ts");
  await launchCli(true);
}
