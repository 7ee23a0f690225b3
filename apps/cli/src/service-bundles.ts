// How the launcher runs a service's code: from an esbuild bundle of its main.ts (the
// default), or through tsx's loader as before (BALLAST_SERVICE_RUNNER=tsx). A bundled
// service starts on about a third of the CPU (docs/architecture.md, "Running
// TypeScript"); bundles.ts keeps them in step with the sources.
//
// A failed build fails the cluster's start with esbuild's messages rather than falling
// back to tsx: the sources then do not compile (tsx would fail too, one service log at
// a time), or the cache directory cannot be written, and either should be seen, not
// hidden behind a slower start. BALLAST_SERVICE_RUNNER=tsx is the way around the second.

import { fileURLToPath } from "node:url";
import { type ServiceKind, serviceKinds } from "@ballast/protocol";
import { constants as runtimeConstants } from "@ballast/runtime";
import { type BundleRecipe, bundles } from "./bundles.ts";
import { BundleError } from "./errors.ts";

export const serviceRunners = ["bundle", "tsx"] as const;
export type ServiceRunner = (typeof serviceRunners)[number];

/** The variable that picks the runner; unset or empty means "bundle". */
export const serviceRunnerVariable = "BALLAST_SERVICE_RUNNER";

export const repositoryRoot = fileURLToPath(new URL("../../../", import.meta.url));
const tsxLoader = import.meta.resolve("tsx");

/** Where the services' bundles are kept (inside the repository: see bundles.ts). */
export const serviceBundleDir = fileURLToPath(
  new URL("../../../node_modules/.cache/ballast/services/", import.meta.url),
);

/** A service's main module, run as it is by tsx and bundled otherwise. */
export function serviceEntry(kind: ServiceKind): string {
  return fileURLToPath(new URL(`../../../services/${kind}/src/main.ts`, import.meta.url));
}

/**
 * Every workspace package.json (they map @ballast/* to sources), the root one, the
 * TypeScript settings esbuild reads, esbuild's version, and this recipe's own modules.
 */
const extraInputs = [
  "package.json",
  "tsconfig.json",
  "node_modules/esbuild/package.json",
  "apps/cli/src/bundles.ts",
  "apps/cli/src/service-bundles.ts",
  "apps/cli/package.json",
  ...["btree", "client", "nbd", "protocol", "runtime"].map(
    (name) => `packages/${name}/package.json`,
  ),
  ...serviceKinds.map((kind) => `services/${kind}/package.json`),
];

export const serviceBundleRecipe: BundleRecipe = {
  root: repositoryRoot,
  entries: Object.fromEntries(
    serviceKinds.map((kind) => [kind, `services/${kind}/src/main.ts`]),
  ) as Record<ServiceKind, string>,
  outDir: serviceBundleDir,
  extraInputs,
};

export function serviceRunner(env: NodeJS.ProcessEnv = process.env): ServiceRunner {
  const value = env[serviceRunnerVariable]?.trim() ?? "";
  if (value === "") return "bundle";
  if ((serviceRunners as readonly string[]).includes(value)) return value as ServiceRunner;
  throw new Error(
    `${serviceRunnerVariable} must be one of ${serviceRunners.join(", ")} (or unset), got ${JSON.stringify(value)}`,
  );
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
