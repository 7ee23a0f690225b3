// Bundles of TypeScript entry points, built with esbuild and reused while their sources
// are unchanged. The launcher runs services from them (service-bundles.ts): a service
// started through tsx's loader spends most of its start-up in the loader (about 0.9 s
// of CPU for a head node here, against 0.35 s for its bundle).
//
// Never stale. A bundle directory holds a manifest naming, for each entry, the bundle
// built last and every file that build read (esbuild's metafile inputs, plus the files
// beside the sources that decide how they build: package.json files, tsconfig.json,
// esbuild's own package.json, this recipe's source), each with its stat signature
// (inode, size, mtime, ctime). A request whose inputs all still have the recorded
// signatures reuses the bundles without loading esbuild; any other builds afresh. ctime
// cannot be set back by tools that restore mtimes (`cp -p`, `mv`, `touch -d`), so an
// edit always shows. A build whose inputs changed while it ran (a ctime within
// `bundleRacyMarginMs` of its start) is used but not recorded: the next request builds
// again.
//
// Safe under concurrency (vitest workers, several launchers on one checkout). Bundle
// files are named by a hash of their content and written to a temporary name, then
// renamed: a file, once there, never changes, so a process that checked a bundle runs
// exactly it, and a reader never sees half a file. The manifest is replaced the same
// way, and only ever names the files of the build that wrote it, so whichever of two
// concurrent builds writes it last, it is true of what it names. Files no manifest names
// are removed once unused for `bundleKeepMs` (a request that finds bundles fresh touches
// them); a cluster restarting a service after a day without a start could miss its file.
//
// Layout. Output goes inside the repository (node_modules/.cache/…) so that the packages
// left out of the bundle resolve from the root node_modules, as does createRequire in
// telemetry.ts (the OpenTelemetry SDK, loaded only when telemetry is on). Everything a
// bundle imports is in it, the npm packages too, except `unbundledPackages` (native
// add-ons and esbuild itself). A head node's bundle with its packages left out started
// on 0.39 s of CPU here (Node resolving, reading and compiling some 240 package files
// one by one), and with them in on 0.25 s; five services start for every test
// cluster and every restart.

import { createHash, randomBytes } from "node:crypto";
import {
  mkdir,
  readdir,
  readFile,
  rename,
  stat,
  unlink,
  utimes,
  writeFile,
} from "node:fs/promises";
import { isAbsolute, join, relative } from "node:path";
import type { BuildOptions, Metafile, OutputFile, Plugin } from "esbuild";
import { bundleHashLength, bundleKeepMs, bundleRacyMarginMs } from "./constants.ts";

/**
 * Entry points could not be bundled, or the bundles could not be written. Defined here,
 * not beside the CLI's other errors, so that the CLI's launcher bundle (cli-bundle.ts)
 * holds this module without the packages errors.ts imports.
 */
export class BundleError extends Error {
  override readonly name = "BundleError";
}

/** What to bundle, and where. */
export interface BundleRecipe {
  /** Absolute directory that relative paths are taken from; bare imports resolve from here. */
  root: string;
  /** Bundle name to entry file (relative to `root`). */
  entries: Record<string, string>;
  /** Absolute directory of the bundles and their manifest; must be inside `root`. */
  outDir: string;
  /** Files besides the sources whose change must rebuild (relative to `root`). */
  extraInputs: readonly string[];
  /** Packages left out of the bundles (imported from node_modules); `unbundledPackages` unless given. */
  unbundled?: readonly string[];
  /** `bundleRacyMarginMs` unless given (tests change it). */
  racyMarginMs?: number;
}

export interface Bundles {
  /** Absolute path of each entry's bundle. */
  files: Record<string, string>;
  /** Whether esbuild ran for this request (false: the recorded bundles were current). */
  built: boolean;
  /** Whether this build was recorded for later requests (false when reused or racy). */
  recorded: boolean;
}

/**
 * Packages left out of every bundle, imported from node_modules at run time: native
 * add-ons, which load a platform's `.node` file by a path esbuild cannot follow
 * (msgpackr-extract is msgpackr's optional string decoder: bundled, its loader would
 * fail and msgpackr would quietly decode without it), and the bundler itself.
 * service-bundles.test.ts checks that no package in the services' bundles holds a
 * `.node` file, and that a bundle keeps msgpackr's native decoder.
 */
export const unbundledPackages: readonly string[] = [
  "@node-rs/crc32",
  "msgpackr-extract",
  "esbuild",
];

/**
 * A module-level `require` made for the bundle's own location, for the bundled packages
 * that are CommonJS and require a package left out (msgpackr requires msgpackr-extract
 * when `require` is a function, and pino's and nats.js's CommonJS files require Node's
 * built-ins through esbuild's shim, which calls this).
 */
const requireBanner =
  "import{createRequire as __ballastRequire}from'node:module';const require=__ballastRequire(import.meta.url);";

const manifestName = "manifest.json";
const manifestFormat = 1;

interface Manifest {
  format: number;
  /** The recipe the bundles were built for (entries, extra inputs). */
  recipe: string;
  /** Entry name to bundle file name (in the manifest's directory). */
  bundles: Record<string, string>;
  /** Input path (relative to root) to stat signature. */
  inputs: Record<string, string>;
}

const inFlight = new Map<string, Promise<Bundles>>();

/**
 * The bundles of `recipe`, built now if any input changed since the recorded build.
 * Concurrent calls in one process for one directory share one check or build. A failed
 * build throws an error with esbuild's messages.
 */
export function bundles(recipe: BundleRecipe): Promise<Bundles> {
  try {
    checkRecipe(recipe);
  } catch (error) {
    return Promise.reject(error);
  }
  const running = inFlight.get(recipe.outDir);
  if (running !== undefined) return running;
  const done = freshBundles(recipe).finally(() => inFlight.delete(recipe.outDir));
  inFlight.set(recipe.outDir, done);
  return done;
}

/** Marks bundles and their maps as in use (they then outlive cleanup by `bundleKeepMs`). */
export async function touchBundles(files: Iterable<string>): Promise<void> {
  const now = new Date();
  const paths = [...files].flatMap((file) => [file, `${file}.map`]);
  await Promise.all(paths.map((path) => utimes(path, now, now).catch(() => undefined)));
}

function checkRecipe(recipe: BundleRecipe): void {
  if (!isAbsolute(recipe.root) || !isAbsolute(recipe.outDir)) {
    throw new BundleError(`bundle root and output directory must be absolute paths`);
  }
  const inside = relative(recipe.root, recipe.outDir);
  if (inside === "" || inside.startsWith("..") || isAbsolute(inside)) {
    throw new BundleError(
      `bundle output ${recipe.outDir} must be inside ${recipe.root}, or the packages left out of the bundles do not resolve`,
    );
  }
  if (Object.keys(recipe.entries).length === 0) throw new BundleError("no entries to bundle");
  for (const name of Object.keys(recipe.entries)) {
    if (!/^[a-z0-9][a-z0-9-]*$/.test(name)) {
      throw new BundleError(`bundle name must be lowercase letters, digits and '-', got ${name}`);
    }
  }
}

async function freshBundles(recipe: BundleRecipe): Promise<Bundles> {
  const recorded = await currentBundles(recipe);
  if (recorded !== undefined) return { files: recorded, built: false, recorded: false };
  return build(recipe);
}

/**
 * The recorded bundles of `recipe` (absolute paths by entry name), marked as in use, when
 * every input still has its recorded signature; undefined when a build is due. Builds
 * nothing and never loads esbuild: the CLI's launcher asks this from a bundle that may be
 * one of those stale (cli-bundle.ts), and only the current sources may build.
 */
export async function currentBundles(
  recipe: BundleRecipe,
): Promise<Record<string, string> | undefined> {
  checkRecipe(recipe);
  const recorded = await recordedBundles(recipe);
  if (recorded !== undefined) await touchBundles(Object.values(recorded));
  return recorded;
}

function recipeKey(recipe: BundleRecipe): string {
  return JSON.stringify({
    entries: recipe.entries,
    extraInputs: recipe.extraInputs,
    unbundled: recipe.unbundled ?? unbundledPackages,
  });
}

/** The recorded bundles when every input still has its recorded signature, else undefined. */
async function recordedBundles(recipe: BundleRecipe): Promise<Record<string, string> | undefined> {
  let manifest: Manifest;
  try {
    manifest = JSON.parse(await readFile(join(recipe.outDir, manifestName), "utf8")) as Manifest;
  } catch {
    return undefined;
  }
  if (manifest.format !== manifestFormat || manifest.recipe !== recipeKey(recipe)) return undefined;
  const names = Object.keys(recipe.entries);
  if (names.some((name) => typeof manifest.bundles?.[name] !== "string")) return undefined;
  const paths = Object.keys(manifest.inputs ?? {});
  if (paths.length === 0) return undefined;
  const signatures = await Promise.all(paths.map((path) => signature(join(recipe.root, path))));
  if (paths.some((path, index) => signatures[index] !== manifest.inputs[path])) return undefined;
  const files = Object.fromEntries(
    names.map((name) => [name, join(recipe.outDir, manifest.bundles[name]!)]),
  );
  const present = await Promise.all(Object.values(files).map((file) => signature(file)));
  return present.includes(undefined) ? undefined : files;
}

async function signature(path: string): Promise<string | undefined> {
  return (await signed(path))?.signature;
}

/** A file's signature, and its ctime in ms; undefined when it is not there. */
async function signed(path: string): Promise<{ signature: string; ctimeMs: number } | undefined> {
  try {
    const info = await stat(path, { bigint: true });
    return {
      signature: `${info.ino}:${info.size}:${info.mtimeNs}:${info.ctimeNs}`,
      ctimeMs: Number(info.ctimeNs / 1_000_000n),
    };
  } catch {
    return undefined;
  }
}

/** The package a bare import names: `a` of `a/b`, `@s/a` of `@s/a/b`. */
export function packageOf(specifier: string): string {
  const parts = specifier.split("/");
  return (specifier.startsWith("@") ? parts.slice(0, 2) : parts.slice(0, 1)).join("/");
}

/** Keeps the imports of the `unbundled` packages outside the bundle. */
function externalPackages(unbundled: readonly string[]): Plugin {
  return {
    name: "external-packages",
    setup(build) {
      build.onResolve({ filter: /^[^./]/ }, (args) =>
        unbundled.includes(packageOf(args.path)) ? { path: args.path, external: true } : undefined,
      );
    },
  };
}

async function build(recipe: BundleRecipe): Promise<Bundles> {
  const startedMs = Date.now();
  // Loaded only to build: a request that reuses bundles never pays for it.
  const esbuild = await import("esbuild");
  const options: BuildOptions & { write: false; metafile: true } = {
    absWorkingDir: recipe.root,
    entryPoints: recipe.entries,
    outdir: recipe.outDir,
    outExtension: { ".js": ".mjs" },
    bundle: true,
    platform: "node",
    format: "esm",
    target: `node${process.versions.node.split(".")[0]}`,
    // tsx keeps function and class names too; code and logs may print them.
    keepNames: true,
    // The maps are linked below, under each bundle's hashed name.
    sourcemap: "external",
    banner: { js: requireBanner },
    plugins: [externalPackages(recipe.unbundled ?? unbundledPackages)],
    write: false,
    metafile: true,
    logLevel: "silent",
  };
  let outputs: OutputFile[];
  let metafile: Metafile;
  try {
    ({ outputFiles: outputs, metafile } = await esbuild.build(options));
  } catch (error) {
    throw new BundleError(
      `could not bundle ${Object.values(recipe.entries).join(", ")}: ${(error as Error).message}`,
      { cause: error },
    );
  }
  await mkdir(recipe.outDir, { recursive: true });
  const files: Record<string, string> = {};
  for (const name of Object.keys(recipe.entries)) {
    const code = outputs.find((file) => file.path === join(recipe.outDir, `${name}.mjs`));
    const map = outputs.find((file) => file.path === join(recipe.outDir, `${name}.mjs.map`));
    if (code === undefined || map === undefined) {
      throw new BundleError(`esbuild gave no bundle or no source map for ${name}`);
    }
    const hash = createHash("sha256")
      .update(code.contents)
      .update(map.contents)
      .digest("hex")
      .slice(0, bundleHashLength);
    const fileName = `${name}-${hash}.mjs`;
    await writeOnce(join(recipe.outDir, `${fileName}.map`), map.contents);
    await writeOnce(
      join(recipe.outDir, fileName),
      Buffer.concat([code.contents, Buffer.from(`//# sourceMappingURL=${fileName}.map\n`)]),
    );
    files[name] = fileName;
  }
  const inputPaths = [...new Set([...Object.keys(metafile.inputs), ...recipe.extraInputs])].sort();
  const signatures = await Promise.all(inputPaths.map((path) => signed(join(recipe.root, path))));
  // An input missing or changed since shortly before the build began may not be what
  // esbuild read: use the bundles, record nothing.
  const settled = signatures.every(
    (info) =>
      info !== undefined && info.ctimeMs < startedMs - (recipe.racyMarginMs ?? bundleRacyMarginMs),
  );
  if (settled) {
    const inputs = Object.fromEntries(
      inputPaths.map((path, index) => [path, signatures[index]!.signature]),
    );
    const manifest: Manifest = {
      format: manifestFormat,
      recipe: recipeKey(recipe),
      bundles: files,
      inputs,
    };
    await writeAtomically(join(recipe.outDir, manifestName), JSON.stringify(manifest));
    await removeUnused(recipe.outDir, new Set(Object.values(files)));
  }
  return {
    files: Object.fromEntries(
      Object.entries(files).map(([name, fileName]) => [name, join(recipe.outDir, fileName)]),
    ),
    built: true,
    recorded: settled,
  };
}

/** Writes a content-named file unless it is there already (then it holds these bytes). */
async function writeOnce(path: string, contents: Uint8Array): Promise<void> {
  if ((await signature(path)) !== undefined) return;
  await writeAtomically(path, contents);
}

async function writeAtomically(path: string, contents: Uint8Array | string): Promise<void> {
  const temporary = `${path}.${process.pid}-${randomBytes(4).toString("hex")}.tmp`;
  try {
    await writeFile(temporary, contents);
    await rename(temporary, path);
  } catch (error) {
    await unlink(temporary).catch(() => undefined);
    throw new BundleError(`could not write ${path}: ${(error as Error).message}`, { cause: error });
  }
}

/** Removes bundles and leftovers that `keep` does not name and nobody used for a while. */
async function removeUnused(directory: string, keep: Set<string>): Promise<void> {
  const before = Date.now() - bundleKeepMs;
  for (const name of await readdir(directory)) {
    if (name === manifestName) continue;
    const bundle = name.endsWith(".mjs.map") ? name.slice(0, -".map".length) : name;
    if (keep.has(bundle)) continue;
    const path = join(directory, name);
    const info = await stat(path).catch(() => undefined);
    if (info !== undefined && info.mtimeMs < before) await unlink(path).catch(() => undefined);
  }
}
