// Access from the environment is checked before any connect: a CA file that cannot be
// read is named at once, not discovered as a TLS failure after the connect timeout. A
// credentials file that is not JSON is named without a word of what it holds.

import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BallastError } from "@ballast/protocol";
import { expect, test } from "vitest";
import { natsAccessFromEnv, readCredentialsFile } from "../src/index.ts";

test("BALLAST_NATS_CA must name a readable file", async () => {
  const directory = await mkdtemp(join(tmpdir(), "ballast-ca-"));
  try {
    const missing = join(directory, "missing.pem");
    expect(() => natsAccessFromEnv({ BALLAST_NATS_CA: missing })).toThrow(
      `cannot read the NATS CA file ${missing}: ENOENT: no such file or directory, open '${missing}'`,
    );
    expect(() => natsAccessFromEnv({ BALLAST_NATS_CA: directory })).toThrow(
      `cannot read the NATS CA file ${directory}: EISDIR`,
    );
    const ca = join(directory, "ca.pem");
    await writeFile(ca, "-----BEGIN CERTIFICATE-----\n");
    expect(natsAccessFromEnv({ BALLAST_NATS_CA: ca })).toEqual({ caFile: ca });
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
});

test("a damaged credentials file is named with the fault's position, never its contents", async () => {
  const directory = await mkdtemp(join(tmpdir(), "ballast-creds-"));
  try {
    const path = join(directory, "client.json");
    const secret = "hunter2-secret";
    // Each is a file an operator could leave half-edited; V8's messages for the first
    // two quote the text around the fault, password included.
    const damaged: [text: string, says: string][] = [
      [`{"user": "client", "password": ${secret}}`, "it is not valid JSON"],
      [`password=${secret}`, "it is not valid JSON"],
      [`{"user": "client", "password": "${secret}`, "it is not valid JSON (at position 46)"],
      [`{"user": "client", "password": "${secret}",}`, "it is not valid JSON (at position 48)"],
      [`{"user": "client", "password": `, "it is not valid JSON (it ends early)"],
      ["\n", "it is not valid JSON (the file is empty)"],
    ];
    for (const [text, says] of damaged) {
      await writeFile(path, text);
      let thrown: unknown;
      try {
        readCredentialsFile(path);
      } catch (error) {
        thrown = error;
      }
      expect(thrown).toBeInstanceOf(BallastError);
      const error = thrown as BallastError;
      expect(error.message).toBe(`cannot read NATS credentials from ${path}: ${says}`);
      // Nor does a chained cause carry V8's quote into a log.
      expect(error.cause).toBeUndefined();
      expect(error.message).not.toContain("hunter");
      expect(() => natsAccessFromEnv({ BALLAST_NATS_CREDS: path })).toThrow(
        `from ${path}: ${says}`,
      );
    }
    const missing = join(directory, "missing.json");
    expect(() => readCredentialsFile(missing)).toThrow(
      `cannot read NATS credentials from ${missing}: ENOENT`,
    );
    await writeFile(path, `{"user": "client", "password": "${secret}"}`);
    expect(readCredentialsFile(path)).toEqual({ user: "client", password: secret });
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
});
