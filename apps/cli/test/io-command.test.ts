// `ballast write|read|import|export` refuse a bad command line with the usage exit code,
// before they look for a cluster (the README: exit 2 for a usage error; the help: offsets
// and lengths are multiples of 512). No cluster runs here: a command line that passed
// its checks would end in "no cluster found" (exit 3) instead.

import { join } from "node:path";
import { afterEach, describe, expect, test, vi } from "vitest";
import { CliError, exitCodes } from "../src/errors.ts";
import { ioCommand } from "../src/io.ts";

const nowhere = ["--data-dir", join("/nonexistent", "ballast-io-command-test")];

async function exitCodeOf(command: Parameters<typeof ioCommand>[0], argv: string[]) {
  try {
    await ioCommand(command, [...argv, ...nowhere]);
  } catch (error) {
    if (error instanceof CliError) return error.exitCode;
    throw error;
  }
  throw new Error(`ballast ${command} ${argv.join(" ")} succeeded without a cluster`);
}

describe("ballast read and write: offsets and lengths in sectors", () => {
  afterEach(() => vi.unstubAllEnvs());

  test("an offset or length that is no multiple of 512 is a usage error", async () => {
    vi.stubEnv("BALLAST_NATS", "");
    expect(await exitCodeOf("read", ["v", "--length", "4KiB", "--offset", "100"])).toBe(
      exitCodes.usage,
    );
    expect(await exitCodeOf("read", ["v", "--length", "1000"])).toBe(exitCodes.usage);
    expect(await exitCodeOf("write", ["v", "--offset", "513", "--file", "x"])).toBe(
      exitCodes.usage,
    );
    expect(await exitCodeOf("export", ["v", "out.img", "--offset", "1"])).toBe(exitCodes.usage);
  });

  test("whole sectors pass, and then the missing cluster is what stops the command", async () => {
    vi.stubEnv("BALLAST_NATS", "");
    expect(await exitCodeOf("read", ["v", "--length", "4KiB", "--offset", "1MiB"])).toBe(
      exitCodes.unreachable,
    );
    expect(await exitCodeOf("write", ["v", "--offset", "512", "--file", "x"])).toBe(
      exitCodes.unreachable,
    );
  });
});
