// How the `ballast` command runs its own code: from an esbuild bundle of main.ts (the
// default), or through tsx's loader as before (BALLAST_CLI_RUNNER=tsx). Through tsx a
// command spent about 0.85 s of CPU before doing anything; from its bundle about a third
// of that (docs/architecture.md, "Running TypeScript").
//
// The bundles are built and checked by bundles.ts, as the services' are, with one more
// step, because bin/ballast.mjs is plain JavaScript and cannot load bundles.ts without
// tsx. The recipe has two entries: this module ("launch", small: Node's built-ins and
// bundles.ts) and main.ts ("cli"). bin/ballast.mjs reads the manifest for the launch
// bundle and calls its launchCli(false): that asks currentBundles whether every input is
// unchanged and, if so, imports the cli bundle. Otherwise it returns false and builds
// nothing: it may itself be stale, and a stale bundles.ts must not record a build. The
// launcher then loads tsx and calls this module's current source with launchCli(true),
// which builds (a fresh clone's first command does this) and imports the new bundle.
// The launch bundle checked is the one the manifest it checks names, or one whose
// manifest format it reads the same way: a manifest it cannot read is not current.
//
// A failed build is the command's error, with esbuild's messages (exit code 1), not a
// silent fall back to tsx: the sources then do not compile, or the cache directory
// cannot be written; BALLAST_CLI_RUNNER=tsx is the way around the second.

import { pathToFileURL } from "node:url";
import { BundleError, type BundleRecipe, bundles, currentBundles } from "./bundles.ts";
import { exitCodes } from "./exit-codes.ts";
import {
  bundleCacheDir,
  type Runner,
  repositoryRoot,
  runnerOf,
  workspaceInputs,
} from "./workspace.ts";

/** The variable that picks how the command runs; unset or empty means "bundle". */
export const cliRunnerVariable = "BALLAST_CLI_RUNNER";

/** Where the CLI's bundles are kept; bin/ballast.mjs names the same directory. */
export const cliBundleDir = bundleCacheDir("cli");

/** The CLI's main module, run as it is by tsx and bundled otherwise. */
export const cliEntry = `${repositoryRoot}apps/cli/src/main.ts`;

export const cliBundleRecipe: BundleRecipe = {
  root: repositoryRoot,
  entries: { launch: "apps/cli/src/cli-bundle.ts", cli: "apps/cli/src/main.ts" },
  outDir: cliBundleDir,
  extraInputs: workspaceInputs,
};

export function cliRunner(env: NodeJS.ProcessEnv = process.env): Runner {
  return runnerOf(cliRunnerVariable, env);
}

/** What to run: the cli bundle's file, main.ts through tsx, or nothing yet (a build is due). */
export type CliToRun = { runner: "bundle"; file: string } | { runner: "tsx"; file: string };

/**
 * What the command runs as `env` says. With `build` false it never builds: undefined
 * means the current sources must build (or tsx must be loaded) first.
 */
export async function cliToRun(
  build: boolean,
  env: NodeJS.ProcessEnv = process.env,
): Promise<CliToRun | undefined> {
  if (cliRunner(env) === "tsx") return build ? { runner: "tsx", file: cliEntry } : undefined;
  if (!build) {
    const current = await currentBundles(cliBundleRecipe);
    return current === undefined ? undefined : { runner: "bundle", file: current.cli! };
  }
  try {
    return { runner: "bundle", file: (await bundles(cliBundleRecipe)).files.cli! };
  } catch (error) {
    throw new BundleError(
      `${(error as Error).message} (${cliRunnerVariable}=tsx runs the command through tsx, without a bundle)`,
      { cause: error },
    );
  }
}

/**
 * Runs the command (main.ts reads process.argv); false when it did not, because the
 * current sources must build first (`build` false) or tsx must be loaded. Tsx is loaded
 * by the caller (bin/ballast.mjs) before it calls with `build` true.
 */
export async function launchCli(build: boolean): Promise<boolean> {
  let chosen: CliToRun | undefined;
  try {
    chosen = await cliToRun(build);
  } catch (error) {
    process.stderr.write(`ballast: ${(error as Error).message}\n`);
    process.exitCode = exitCodes.failed;
    return true;
  }
  if (chosen === undefined) return false;
  // Stack traces of unexpected failures name the .ts files, as under tsx.
  if (chosen.runner === "bundle") process.setSourceMapsEnabled(true);
  await import(pathToFileURL(chosen.file).href);
  return true;
}
