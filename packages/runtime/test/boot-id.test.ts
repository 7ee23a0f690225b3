// The kernel's boot id (boot-id.ts): read from /proc where Linux has it, taken from
// BALLAST_TEST_BOOT_ID only in a process with BALLAST_TEST_FAULTS=1, and an unknown id
// never counts as another boot. The environment is read once per process, so the
// override is checked in small child processes.

import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { expect, test } from "vitest";
import { bootIdPath, currentBootId, sameBoot, unknownBootId } from "../src/boot-id.ts";

const module = fileURLToPath(new URL("../src/boot-id.ts", import.meta.url));
const tsx = import.meta.resolve("tsx");

function bootIdOfChild(env: Record<string, string>): string {
  const script = `
    const { currentBootId } = await import(${JSON.stringify(module)});
    process.stdout.write(await currentBootId());
  `;
  return execFileSync(process.execPath, ["--import", tsx, "--input-type=module", "-e", script], {
    env: { ...process.env, BALLAST_TEST_FAULTS: "", BALLAST_TEST_BOOT_ID: "", ...env },
    encoding: "utf8",
  });
}

test("is the kernel's boot id where it can be read, and unknown elsewhere", async () => {
  const expected = existsSync(bootIdPath) ? readFileSync(bootIdPath, "utf8").trim() : unknownBootId;
  expect(await currentBootId()).toBe(expected);
  expect(await currentBootId()).toBe(expected);
});

test("is set by BALLAST_TEST_BOOT_ID only with the test faults on", () => {
  const real = bootIdOfChild({});
  expect(bootIdOfChild({ BALLAST_TEST_BOOT_ID: "after-reboot" })).toBe(real);
  expect(bootIdOfChild({ BALLAST_TEST_FAULTS: "1", BALLAST_TEST_BOOT_ID: "after-reboot" })).toBe(
    "after-reboot",
  );
});

test("an unknown boot on either side is taken for the same boot", () => {
  expect(sameBoot("a", "a")).toBe(true);
  expect(sameBoot("a", "b")).toBe(false);
  expect(sameBoot(unknownBootId, "b")).toBe(true);
  expect(sameBoot("a", unknownBootId)).toBe(true);
});
