// `ballast nbd` checks its own flags before it looks for a cluster, so that a bad value
// is a usage error naming the flag typed (the gateway would name its own, --nbd-…).

import { expect, test } from "vitest";
import { CliError, exitCodes } from "../src/errors.ts";
import { nbdCommand } from "../src/nbd.ts";

test("--exports that names no volume is a usage error naming --exports, before any cluster is sought", async () => {
  for (const [value, says] of [
    ["Vol", 'not volume names: "Vol"'],
    ["vol@daily", 'not volume names: "vol@daily"'],
    [",", "must name at least one volume"],
  ] as const) {
    // No cluster: a command that went on would fail finding one, not with this.
    const refused = await nbdCommand(["--exports", value, "--data-dir", "/nonexistent"]).catch(
      (error: unknown) => error,
    );
    expect(refused, value).toBeInstanceOf(CliError);
    expect((refused as CliError).exitCode).toBe(exitCodes.usage);
    expect((refused as CliError).message).toMatch(/^--exports /);
    expect((refused as CliError).message).toContain(says);
  }
});
