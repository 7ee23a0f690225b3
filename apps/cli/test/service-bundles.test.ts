// The services' bundles, built from this repository's real sources: each runs under node
// from where it is kept (its third-party packages resolve from the root node_modules);
// a change to any workspace source a service imports, even one that leaves the bytes
// as they were, is seen at the next request; the recipes (the CLI's too) watch every
// workspace package.json; and the runner variable takes only the names it knows. Their
// npm packages are bundled too, except native add-ons: no bundled package holds a
// `.node` file, and a module bundled as the services' are keeps msgpackr's native
// string decoder (msgpackr-extract), which bundled would have failed to load, silently.

import { execFile } from "node:child_process";
import { mkdir, readdir, readFile, rm, stat, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { serviceKinds } from "@ballast/protocol";
import { describe, expect, test } from "vitest";
import { bundles, packageOf, unbundledPackages } from "../src/bundles.ts";
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

  test("no bundled npm package holds a native add-on; the ones left out are not bundled", async () => {
    await bundles(serviceBundleRecipe);
    const manifest = JSON.parse(
      await readFile(join(serviceBundleDir, "manifest.json"), "utf8"),
    ) as { inputs: Record<string, string> };
    const packages = new Set(
      Object.keys(manifest.inputs)
        .filter((path) => path.startsWith("node_modules/") && !path.endsWith("/package.json"))
        .map((path) => packageOf(path.slice("node_modules/".length))),
    );
    // zod, pino and nats.js at least: the bundles hold npm packages, not only ours.
    expect(packages.size).toBeGreaterThan(10);
    for (const name of packages) {
      expect(unbundledPackages, name).not.toContain(name);
      const files = await readdir(join(repositoryRoot, "node_modules", name), {
        recursive: true,
      });
      expect(
        files.filter((file) => file.endsWith(".node")),
        `${name} holds a native add-on: add it to unbundledPackages`,
      ).toEqual([]);
    }
  });

  test("a module bundled as the services' are keeps msgpackr's native decoder", async () => {
    const directory = join(
      repositoryRoot,
      "node_modules/.cache",
      `ballast-msgpackr-${process.pid}`,
    );
    await mkdir(directory, { recursive: true });
    try {
      await writeFile(
        join(directory, "probe.ts"),
        'import { isNativeAccelerationEnabled } from "msgpackr";\nconsole.log(isNativeAccelerationEnabled);\n',
      );
      const entry = `${directory.slice(repositoryRoot.length)}/probe.ts`;
      const built = await bundles({
        root: repositoryRoot,
        entries: { probe: entry },
        outDir: join(directory, "out"),
        extraInputs: [],
      });
      const { stdout } = await run(process.execPath, [built.files.probe!]);
      expect(stdout.trim()).toBe("true");
    } finally {
      await rm(directory, { recursive: true, force: true });
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
