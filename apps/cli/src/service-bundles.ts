// How the launcher runs a service's code: from an esbuild bundle of its main.ts (the
// default), or through tsx's loader as before (BALLAST_SERVICE_RUNNER=tsx). A bundled
// service starts on about a third of the CPU (docs/architecture.md, "Running
// TypeScript"); bundles.ts keeps them in step with the sources.
//
// A failed build fails the cluster's start with esbuild's messages rather than falling
// back to tsx: the sources then do not compile (tsx would fail too, one service log at
// a time), or the cache directory cannot be written, and either should be seen, not
// hidden behind a slower start. BALLAST_SERVICE_RUNNER=tsx is the way around the second.

import { type ServiceKind, serviceKinds } from "@ballast/protocol";
import { constants as runtimeConstants } from "@ballast/runtime";
import { BundleError, type BundleRecipe, bundles } from "./bundles.ts";
import {
  bundleCacheDir,
  type Runner,
  repositoryRoot,
  runnerOf,
  runners,
  workspaceInputs,
} from "./workspace.ts";

export { repositoryRoot } from "./workspace.ts";

export const serviceRunners = runners;
export type ServiceRunner = Runner;

/** The variable that picks the runner; unset or empty means "bundle". */
export const serviceRunnerVariable = "BALLAST_SERVICE_RUNNER";

const tsxLoader = import.meta.resolve("tsx");

/** Where the services' bundles are kept (inside the repository: see bundles.ts). */
export const serviceBundleDir = bundleCacheDir("services");

/** A service's main module, run as it is by tsx and bundled otherwise. */
export function serviceEntry(kind: ServiceKind): string {
  return `${repositoryRoot}services/${kind}/src/main.ts`;
}

export const serviceBundleRecipe: BundleRecipe = {
  root: repositoryRoot,
  entries: Object.fromEntries(
    serviceKinds.map((kind) => [kind, `services/${kind}/src/main.ts`]),
  ) as Record<ServiceKind, string>,
  outDir: serviceBundleDir,
  extraInputs: [...workspaceInputs, "apps/cli/src/service-bundles.ts"],
};

export function serviceRunner(env: NodeJS.ProcessEnv = process.env): ServiceRunner {
  return runnerOf(serviceRunnerVariable, env);
}

/** Node's arguments that run a service of each kind (its own options follow them). */
export type ServiceCommands = Record<ServiceKind, readonly string[]>;

/**
 * How to start each kind of service with `runner`; for "bundle", the bundles are built
 * now when a source changed since the last build.
 *
 * --enable-source-maps: stack traces in service logs name .ts files and lines, as under
 * tsx, for about 30 ms more CPU per start (the maps are read at load).
 */
export async function serviceCommands(
  runner: ServiceRunner = serviceRunner(),
): Promise<ServiceCommands> {
  const flags = runtimeConstants.serviceNodeFlags;
  if (runner === "tsx") {
    return byKind((kind) => [...flags, "--import", tsxLoader, serviceEntry(kind)]);
  }
  let built: Record<string, string>;
  try {
    built = (await bundles(serviceBundleRecipe)).files;
  } catch (error) {
    throw new BundleError(
      `${(error as Error).message} (${serviceRunnerVariable}=tsx runs the services through tsx, without bundles)`,
      { cause: error },
    );
  }
  return byKind((kind) => [...flags, "--enable-source-maps", built[kind]!]);
}

function byKind(command: (kind: ServiceKind) => readonly string[]): ServiceCommands {
  const commands = {} as Record<ServiceKind, readonly string[]>;
  for (const kind of serviceKinds) commands[kind] = command(kind);
  return commands;
}
