// Bundles of a small project in a temporary directory, run with real node processes: the
// workspace package and a third-party one are bundled, and a package the recipe leaves
// out is imported from node_modules at run time; a request
// with unchanged sources reuses the recorded bundles; any change to a source (the same
// size, even with its mtime set back) gives a new bundle that runs the new code; a build
// whose inputs changed just before it is used but not recorded; a broken source fails
// with esbuild's message; bundles no manifest names are removed once unused for a day.

import { execFileSync } from "node:child_process";
import { mkdir, readdir, readFile, rm, stat, symlink, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { type BundleRecipe, bundles } from "../src/bundles.ts";
import { bundleKeepMs } from "../src/constants.ts";
import { BundleError } from "../src/errors.ts";

/**
 * Files of the project: an entry, a module beside it, a workspace package, a third-party
 * package and one the recipe leaves out (as a native add-on would be).
 */
const projectFiles: Record<string, string> = {
  "package.json": JSON.stringify({ name: "project", type: "module" }),
  "src/main.ts": [
    'import { greeting } from "./greeting.ts";',
    'import { shout } from "@ballast/words";',
    'import { exclaim } from "third-party";',
    'import { ask } from "left-out/ask";',
    "const text: string = ask(exclaim(shout(greeting)));",
    "console.log(text);",
  ].join("\n"),
  "src/greeting.ts": 'export const greeting = "hello";\n',
  "packages/words/package.json": JSON.stringify({
    name: "@ballast/words",
    type: "module",
    exports: { ".": "./src/index.ts" },
  }),
  "packages/words/src/index.ts":
    "export function shout(text: string): string { return text.toUpperCase(); }\n",
  "node_modules/third-party/package.json": JSON.stringify({
    name: "third-party",
    type: "module",
    exports: "./index.js",
  }),
  "node_modules/third-party/index.js": 'export function exclaim(text) { return text + "!"; }\n',
  "node_modules/left-out/package.json": JSON.stringify({
    name: "left-out",
    type: "module",
    exports: { "./ask": "./ask.js" },
  }),
  "node_modules/left-out/ask.js": 'export function ask(text) { return text + "?"; }\n',
};

/** A margin the test can wait out quickly (file times come from a coarse clock). */
const testRacyMarginMs = 50;

let root: string;
let recipe: BundleRecipe;

beforeEach(async () => {
  root = join(tmpdir(), `ballast-bundles-${process.pid}-${Date.now()}`);
  for (const [path, text] of Object.entries(projectFiles)) {
    await mkdir(join(root, path, ".."), { recursive: true });
    await writeFile(join(root, path), text);
  }
  await mkdir(join(root, "node_modules/@ballast"), { recursive: true });
  await symlink(join(root, "packages/words"), join(root, "node_modules/@ballast/words"));
  recipe = {
    root,
    entries: { hello: "src/main.ts" },
    outDir: join(root, "node_modules/.cache/bundles"),
    extraInputs: ["package.json", "packages/words/package.json"],
    unbundled: ["left-out"],
    racyMarginMs: testRacyMarginMs,
  };
  // Past the margin: the first build is recorded.
  await sleep(testRacyMarginMs * 2);
});

afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

function run(file: string): string {
  return execFileSync(process.execPath, [file], { encoding: "utf8" }).trim();
}

describe("bundles", () => {
  test("bundle the workspace and third-party packages, import the one left out, and run", async () => {
    const first = await bundles(recipe);
    expect(first).toMatchObject({ built: true, recorded: true });
    const file = first.files.hello!;
    expect(run(file)).toBe("HELLO!?");
    const code = await readFile(file, "utf8");
    expect(code).toContain("toUpperCase");
    expect(code).toMatch(/\w+ \+ "!"/);
    expect(code).not.toMatch(/from\s*"third-party"/);
    expect(code).toMatch(/from\s*"left-out\/ask"/);
    expect(code).not.toMatch(/\w+ \+ "\?"/);
    expect(code).toContain(`//# sourceMappingURL=${file.slice(file.lastIndexOf("/") + 1)}.map`);
    expect((await stat(`${file}.map`)).size).toBeGreaterThan(0);
  });

  test("reuse the recorded bundle while no input changed", async () => {
    const first = await bundles(recipe);
    const again = await bundles(recipe);
    expect(again).toEqual({ files: first.files, built: false, recorded: false });
  });

  test("a changed source gives a new bundle, even of the same size with its mtime set back", async () => {
    const path = join(root, "src/greeting.ts");
    // A whole second, which utimes can set back exactly.
    const mtime = Math.floor(Date.now() / 1000) - 3600;
    await utimes(path, mtime, mtime);
    await sleep(testRacyMarginMs * 2);
    const first = await bundles(recipe);
    expect(first.recorded).toBe(true);
    const before = await stat(path, { bigint: true });
    await writeFile(path, 'export const greeting = "jello";\n');
    await utimes(path, mtime, mtime);
    const after = await stat(path, { bigint: true });
    expect([after.size, after.mtimeNs]).toEqual([before.size, before.mtimeNs]);
    const second = await bundles(recipe);
    expect(second.built).toBe(true);
    expect(second.files.hello).not.toBe(first.files.hello);
    expect(run(second.files.hello!)).toBe("JELLO!?");
    // The old file is still there, unchanged, for whoever checked it before.
    expect(run(first.files.hello!)).toBe("HELLO!?");
  });

  test("a change to a workspace package's source or package.json rebuilds", async () => {
    await bundles(recipe);
    await writeFile(
      join(root, "packages/words/src/index.ts"),
      "export function shout(text: string): string { return text + text; }\n",
    );
    await sleep(testRacyMarginMs * 2);
    const changed = await bundles(recipe);
    expect(changed).toMatchObject({ built: true, recorded: true });
    expect(run(changed.files.hello!)).toBe("hellohello!?");
    const manifest = join(root, "packages/words/package.json");
    await utimes(manifest, new Date(), new Date());
    expect((await bundles(recipe)).built).toBe(true);
  });

  test("a build whose inputs changed just before it is used but not recorded", async () => {
    const racy = { ...recipe, racyMarginMs: 60_000 };
    const first = await bundles(racy);
    expect(first).toMatchObject({ built: true, recorded: false });
    expect(run(first.files.hello!)).toBe("HELLO!?");
    expect((await bundles(racy)).built).toBe(true);
  });

  test("concurrent requests in one process share one build", async () => {
    const [one, two] = await Promise.all([bundles(recipe), bundles(recipe)]);
    expect(one).toBe(two);
  });

  test("a source that does not compile fails with esbuild's message", async () => {
    await writeFile(join(root, "src/greeting.ts"), "export const greeting = ;\n");
    const failure = await bundles(recipe).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(BundleError);
    expect((failure as Error).message).toMatch(/could not bundle src\/main\.ts: .*greeting\.ts/s);
  });

  test("an output directory outside the root is refused", async () => {
    await expect(bundles({ ...recipe, outDir: join(tmpdir(), "elsewhere") })).rejects.toThrow(
      /must be inside/,
    );
  });

  test("bundles no manifest names are removed once unused for a day", async () => {
    const first = await bundles(recipe);
    const old = new Date(Date.now() - bundleKeepMs - 60_000);
    const stale = join(recipe.outDir, "hello-0123456789abcdef.mjs");
    await writeFile(stale, "");
    await writeFile(`${stale}.map`, "");
    await utimes(stale, old, old);
    await utimes(`${stale}.map`, old, old);
    // In use: not named by the next manifest, but touched within the day.
    const previous = first.files.hello!;
    await writeFile(join(root, "src/greeting.ts"), 'export const greeting = "bye";\n');
    await sleep(testRacyMarginMs * 2);
    const second = await bundles(recipe);
    expect(second.recorded).toBe(true);
    const left = await readdir(recipe.outDir);
    expect(left).not.toContain("hello-0123456789abcdef.mjs");
    expect(left).not.toContain("hello-0123456789abcdef.mjs.map");
    expect(left).toContain(previous.slice(previous.lastIndexOf("/") + 1));
    expect(left).toContain(second.files.hello!.slice(second.files.hello!.lastIndexOf("/") + 1));
  });
});
