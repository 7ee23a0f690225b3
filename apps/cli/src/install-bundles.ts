// Bundles for an installation whose files never change: the Docker image, whose /app the
// user `node` cannot write. It builds the services' and the CLI's bundles once, at image
// build time, and links each under a fixed name in one directory
// (`<dir>/coordinator.mjs`, ..., `<dir>/cli.mjs`), which the image runs directly with
// `node --enable-source-maps`.
//
// The containers do not check the manifests as `ballast up` and bin/ballast.mjs do: a
// signature holds inode and ctime, which an image's files do not keep once its layers
// are unpacked elsewhere, so every check there would ask for a build it cannot write.
// Nothing there changes the sources, so nothing is lost.
//
//   node --import tsx apps/cli/src/install-bundles.ts /app/bundles

import { mkdir, rename, symlink, unlink } from "node:fs/promises";
import { join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { bundles } from "./bundles.ts";
import { cliBundleRecipe } from "./cli-bundle.ts";
import { serviceBundleRecipe } from "./service-bundles.ts";

/**
 * Builds every bundle and links `<directory>/<name>.mjs` to it (replacing a link that was
 * there); returns the links by name. Bundles are removed once no manifest names them and
 * nothing used them for a day (bundles.ts): links into a checkout whose sources change
 * go stale, which is why this is for installations only.
 */
export async function installBundles(into: string): Promise<Record<string, string>> {
  const directory = resolve(into);
  const services = await bundles(serviceBundleRecipe);
  const cli = await bundles(cliBundleRecipe);
  const targets = { ...services.files, cli: cli.files.cli! };
  await mkdir(directory, { recursive: true });
  const links: Record<string, string> = {};
  for (const [name, target] of Object.entries(targets)) {
    const link = join(directory, `${name}.mjs`);
    const temporary = `${link}.${process.pid}.tmp`;
    await unlink(temporary).catch(() => undefined);
    await symlink(relative(directory, target), temporary);
    await rename(temporary, link);
    links[name] = link;
  }
  return links;
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const [directory, ...extra] = process.argv.slice(2);
  if (directory === undefined || extra.length > 0) {
    process.stderr.write("usage: node --import tsx apps/cli/src/install-bundles.ts DIRECTORY\n");
    process.exitCode = 2;
  } else {
    try {
      for (const [name, link] of Object.entries(await installBundles(directory))) {
        process.stdout.write(`${name}: ${link}\n`);
      }
    } catch (error) {
      process.stderr.write(`install-bundles: ${(error as Error).message}\n`);
      process.exitCode = 1;
    }
  }
}
