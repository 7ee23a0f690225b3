// Access from the environment is checked before any connect: a CA file that cannot be
// read is named at once, not discovered as a TLS failure after the connect timeout.

import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect, test } from "vitest";
import { natsAccessFromEnv } from "../src/index.ts";

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
