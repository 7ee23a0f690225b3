// `ballast volume` refuses a bad command line with the usage exit code, before it looks
// for a cluster (the README: exit 2 for a usage error). No cluster runs here: a command
// line that passed its checks would end in "no cluster found" (exit 3) instead.

import { join } from "node:path";
import { limits } from "@ballast/protocol";
import { afterEach, describe, expect, test, vi } from "vitest";
import { CliError, exitCodes } from "../src/errors.ts";
import {
  answerDeadlineOf,
  createAnswerMsPerPartition,
  replicaCountOf,
  volumeCommand,
} from "../src/volume.ts";

const nowhere = ["--data-dir", join("/nonexistent", "ballast-volume-command-test")];

async function exitCodeOf(argv: string[]): Promise<number> {
  try {
    await volumeCommand([...argv, ...nowhere]);
  } catch (error) {
    if (error instanceof CliError) return error.exitCode;
    throw error;
  }
  throw new Error(`ballast volume ${argv.join(" ")} succeeded without a cluster`);
}

describe("ballast volume --replicas", () => {
  afterEach(() => vi.unstubAllEnvs());

  test.each([["4"], ["1"], ["two"], ["2.5"], [""]])(
    "--replicas %j is a usage error for create and clone",
    async (value) => {
      vi.stubEnv("BALLAST_NATS", "");
      expect(await exitCodeOf(["create", "v", "--size", "1GiB", "--replicas", value])).toBe(
        exitCodes.usage,
      );
      expect(await exitCodeOf(["clone", "v@s", "c", "--replicas", value])).toBe(exitCodes.usage);
    },
  );

  test("2 and 3 pass, and then the missing cluster is what stops the command", async () => {
    vi.stubEnv("BALLAST_NATS", "");
    for (const value of ["2", "3"]) {
      expect(await exitCodeOf(["create", "v", "--size", "1GiB", "--replicas", value])).toBe(
        exitCodes.unreachable,
      );
    }
    expect(replicaCountOf(undefined)).toEqual({});
    expect(replicaCountOf("3")).toEqual({ replicaCount: 3 });
    expect(() => replicaCountOf("4")).toThrow(/--replicas must be a whole number from 2 to 3/);
  });
});

describe("how long ballast volume waits for the answer", () => {
  const mebibyte = 1024 * 1024;

  test("a create waits longer the more partitions it makes", () => {
    const small = answerDeadlineOf({ type: "volume.create.v1", sizeBytes: 8 * mebibyte });
    const big = answerDeadlineOf({
      type: "volume.create.v1",
      sizeBytes: 2 ** 50,
      partitionBytes: 64 * 1024 * mebibyte,
    });
    // 16,384 partitions: the volume that outlasted a fixed wait.
    expect(big - small).toBe((16_384 - 1) * createAnswerMsPerPartition);
    expect(answerDeadlineOf({ type: "volume.describe.v1" })).toBe(
      small - createAnswerMsPerPartition,
    );
  });

  test("never longer than for the most partitions a volume may have", () => {
    const most = answerDeadlineOf({
      type: "volume.create.v1",
      sizeBytes: limits.partitionsPerVolumeMax * mebibyte,
      partitionBytes: mebibyte,
    });
    expect(
      answerDeadlineOf({ type: "volume.create.v1", sizeBytes: 2 ** 50, partitionBytes: 512 }),
    ).toBe(most);
  });
});
