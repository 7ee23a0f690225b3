// Bundles installed under fixed names, as the Docker image runs them: every service and
// the CLI is linked from one directory, and each runs from its link with node alone.

import { execFile } from "node:child_process";
import { mkdtemp, readlink, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { serviceKinds } from "@ballast/protocol";
import { constants as runtimeConstants } from "@ballast/runtime";
import { afterEach, expect, test } from "vitest";
import { cliBundleDir } from "../src/cli-bundle.ts";
import { installBundles } from "../src/install-bundles.ts";
import { serviceBundleDir } from "../src/service-bundles.ts";

const run = promisify(execFile);
let directory: string | undefined;

afterEach(async () => {
  if (directory !== undefined) await rm(directory, { recursive: true, force: true });
  directory = undefined;
});

test("every service and the CLI run from their links", async () => {
  directory = await mkdtemp(join(tmpdir(), "ballast-installed-"));
  const links = await installBundles(directory);
  expect(Object.keys(links).sort()).toEqual([...serviceKinds, "cli"].sort());
  for (const [name, link] of Object.entries(links)) {
    expect(link).toBe(join(directory, `${name}.mjs`));
    const target = join(directory, await readlink(link));
    expect(target.startsWith(name === "cli" ? cliBundleDir : serviceBundleDir)).toBe(true);
  }
  const node = (args: string[]) =>
    run(process.execPath, ["--enable-source-maps", ...args], { cwd: directory });
  expect((await node([links.cli!, "version"])).stdout.trim()).toBe(runtimeConstants.ballastVersion);
  const helps = await Promise.all(serviceKinds.map((kind) => node([links[kind]!, "--help"])));
  for (const [index, kind] of serviceKinds.entries()) {
    expect(helps[index]!.stdout).toContain(`ballast ${kind}`);
  }
  // Installing again replaces the links.
  expect(await installBundles(directory)).toEqual(links);
});
