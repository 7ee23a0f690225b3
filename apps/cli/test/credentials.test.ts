// The NATS credentials files `ballast up` keeps (credentials.ts), on real files in a temporary
// directory: made once, never rewritten when unchanged, replaced durably when changed, and a
// file that exists but cannot be read (empty after a crash or a full disk) stops the start
// instead of being replaced by a new password that every client lacks.

import { mkdtemp, readdir, readFile, rm, stat, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, expect, test } from "vitest";
import { credentialsFile, ensureCredentials } from "../src/credentials.ts";

let dataDir: string;
beforeEach(async () => {
  dataDir = await mkdtemp(join(tmpdir(), "ballast-credentials-"));
});
afterEach(() => rm(dataDir, { recursive: true, force: true }));

test("an empty credentials file stops the start, names the file, and is left as it is", async () => {
  const first = await ensureCredentials(dataDir);
  const path = credentialsFile(dataDir, "client");
  await writeFile(path, "");
  await expect(ensureCredentials(dataDir)).rejects.toThrow(
    new RegExp(`${path}.*it is empty.*not replaced`),
  );
  expect(await readFile(path, "utf8")).toBe("");
  // Another role's file is untouched too.
  expect(JSON.parse(await readFile(credentialsFile(dataDir, "coordinator"), "utf8")).password).toBe(
    first.coordinator.password,
  );
});

test("a credentials file of another user, or torn mid-way, is refused the same way", async () => {
  await ensureCredentials(dataDir);
  const path = credentialsFile(dataDir, "sled");
  await writeFile(path, '{"user":"client","password":"x"}\n');
  await expect(ensureCredentials(dataDir)).rejects.toThrow(/sled\.json.*does not parse as that/);
  await writeFile(path, '{"user":"sled","pass');
  await expect(ensureCredentials(dataDir)).rejects.toThrow(/sled\.json.*does not parse as that/);
});

test("a start that changes nothing writes no credentials file", async () => {
  const first = await ensureCredentials(dataDir);
  const path = credentialsFile(dataDir, "client");
  const past = new Date("2020-01-01T00:00:00Z");
  await utimes(path, past, past);
  expect(await ensureCredentials(dataDir)).toEqual(first);
  expect((await stat(path)).mtimeMs).toBe(past.getTime());
});

test("a changed password replaces the file by rename, mode 0600, with no temporary left", async () => {
  await ensureCredentials(dataDir);
  const path = credentialsFile(dataDir, "client");
  const before = await stat(path);
  const given = await ensureCredentials(dataDir, { client: "a-given-password" });
  expect(given.client.password).toBe("a-given-password");
  const after = await stat(path);
  expect(after.ino).not.toBe(before.ino);
  expect((after.mode & 0o777).toString(8)).toBe("600");
  expect(JSON.parse(await readFile(path, "utf8"))).toEqual({
    user: "client",
    password: "a-given-password",
  });
  expect(
    (await readdir(join(dataDir, "credentials"))).filter((name) => name.endsWith(".tmp")),
  ).toEqual([]);
});
