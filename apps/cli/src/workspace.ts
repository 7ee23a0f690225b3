// What the bundle recipes of the services (service-bundles.ts) and of the CLI itself
// (cli-bundle.ts) share: where the repository is, the files besides the sources that
// decide how they build, and the variables that pick bundle or tsx. Node's built-ins
// only, so that the CLI's launcher bundle stays small.
//
// The repository is found through package resolution, not from this module's own
// location: the same code runs from apps/cli/src under tsx and from a bundle under
// node_modules/.cache, at another depth. "@ballast/cli" resolves (through the root
// node_modules link, with symlinks followed) to apps/cli/src/index.ts from either place.

import { fileURLToPath } from "node:url";

export const repositoryRoot = fileURLToPath(
  new URL("../../../", import.meta.resolve("@ballast/cli")),
);

/** The directory of one recipe's bundles, inside the repository (see bundles.ts). */
export function bundleCacheDir(name: string): string {
  return `${repositoryRoot}node_modules/.cache/ballast/${name}/`;
}

/** The workspace packages, by directory (a test checks the list against the checkout). */
const workspacePackages = [
  ...["btree", "client", "nbd", "protocol", "runtime"].map((name) => `packages/${name}`),
  ...["coordinator", "gateway", "headnode", "sled"].map((name) => `services/${name}`),
  "apps/cli",
];

/**
 * Inputs of every recipe besides the sources esbuild reads: every workspace package.json
 * (they map @ballast/* to sources), the root one, the TypeScript settings esbuild reads,
 * esbuild's version, and the bundling code itself. Each recipe adds its own module.
 */
export const workspaceInputs: readonly string[] = [
  "package.json",
  "tsconfig.json",
  "node_modules/esbuild/package.json",
  "apps/cli/src/bundles.ts",
  "apps/cli/src/workspace.ts",
  ...workspacePackages.map((directory) => `${directory}/package.json`),
];

/** How code runs: from a bundle, or through tsx's loader. */
export const runners = ["bundle", "tsx"] as const;
export type Runner = (typeof runners)[number];

/** The runner `variable` names in `env`; unset or empty means "bundle". */
export function runnerOf(variable: string, env: NodeJS.ProcessEnv): Runner {
  const value = env[variable]?.trim() ?? "";
  if (value === "") return "bundle";
  if ((runners as readonly string[]).includes(value)) return value as Runner;
  throw new Error(
    `${variable} must be one of ${runners.join(", ")} (or unset), got ${JSON.stringify(value)}`,
  );
}
