// The services' bundles, built from this repository's real sources: each runs under node
// from where it is kept (its third-party packages resolve from the root node_modules);
// a change to any workspace source a service imports, even one that leaves the bytes
// as they were, is seen at the next request; the recipes (the CLI's too) watch every
// workspace package.json; and the runner variable takes only the names it knows.

import { execFile } from "node:child_process";
import { readdir, stat, utimes } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { serviceKinds } from "@ballast/protocol";
import { describe, expect, test } from "vitest";
import { bundles } from "../src/bundles.ts";
import { cliBundleRecipe } from "../src/cli-bundle.ts";
import {
  repositoryRoot,
  serviceBundleDir,
  serviceBundleRecipe,
  serviceCommands,
  serviceEntry,
  serviceRunner,
} from "../src/service-bundles.ts";

const run = promisify(execFile);

describe("service bundles", () => {
  test("every kind runs from its bundle", async () => {
    const commands = await serviceCommands("bundle");
    const helps = await Promise.all(
      serviceKinds.map((kind) => run(process.execPath, [...commands[kind], "--help"])),
    );
    for (const [index, kind] of serviceKinds.entries()) {
      const args = commands[kind];
      const file = args.at(-1)!;
      expect(file.startsWith(serviceBundleDir)).toBe(true);
      expect(file).toMatch(new RegExp(`/${kind}-[0-9a-f]{16}\\.mjs$`));
      expect(args).toContain("--enable-source-maps");
      expect(helps[index]!.stdout).toContain(`ballast ${kind}`);
    }
  });

  test("a touched workspace source, its bytes unchanged, is bundled again", async () => {
    await bundles(serviceBundleRecipe);
    // A module of the sled's; only its ctime changes. Not one the CLI's bundle holds, so
    // that cli-bundle.test.ts, which may run beside this, finds its bundle as it left it.
    const path = join(repositoryRoot, "services/sled/src/main.ts");
    const before = await stat(path);
    await utimes(path, before.atime, before.mtime);
    const again = await bundles(serviceBundleRecipe);
    expect(again.built).toBe(true);
  });

  test("the services' and the CLI's recipes watch every workspace package.json", async () => {
    for (const group of ["packages", "services", "apps"]) {
      for (const name of await readdir(join(repositoryRoot, group))) {
        expect(serviceBundleRecipe.extraInputs).toContain(`${group}/${name}/package.json`);
        expect(cliBundleRecipe.extraInputs).toContain(`${group}/${name}/package.json`);
      }
    }
  });

  test("the tsx runner imports tsx's loader and runs main.ts", async () => {
    const commands = await serviceCommands("tsx");
    for (const kind of serviceKinds) {
      const args = commands[kind];
      expect(args.slice(-3, -1)).toEqual(["--import", import.meta.resolve("tsx")]);
      expect(args.at(-1)).toBe(serviceEntry(kind));
    }
  });

  test("BALLAST_SERVICE_RUNNER is bundle, tsx, or unset", () => {
    expect(serviceRunner({})).toBe("bundle");
    expect(serviceRunner({ BALLAST_SERVICE_RUNNER: "" })).toBe("bundle");
    expect(serviceRunner({ BALLAST_SERVICE_RUNNER: "tsx" })).toBe("tsx");
    expect(serviceRunner({ BALLAST_SERVICE_RUNNER: " bundle " })).toBe("bundle");
    expect(() => serviceRunner({ BALLAST_SERVICE_RUNNER: "esbuild" })).toThrow(
      'BALLAST_SERVICE_RUNNER must be one of bundle, tsx (or unset), got "esbuild"',
    );
  });
});
