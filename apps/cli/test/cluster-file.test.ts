// cluster.json (cluster-file.ts) on real files: written whole by a durable replace, and a
// file that is not JSON (torn by a power cut before this was durable, or edited) is an
// error that names the file rather than a bare SyntaxError.

import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, expect, test } from "vitest";
import { clusterFileName, readClusterFile, writeClusterFile } from "../src/cluster-file.ts";

let dataDir: string;
beforeEach(async () => {
  dataDir = await mkdtemp(join(tmpdir(), "ballast-cluster-file-"));
});
afterEach(() => rm(dataDir, { recursive: true, force: true }));

test("a torn cluster.json is an error naming the file", async () => {
  await writeFile(join(dataDir, clusterFileName), '{"format": 1, "nats');
  await expect(readClusterFile(dataDir)).rejects.toThrow(
    new RegExp(`${join(dataDir, clusterFileName)} is not valid JSON`),
  );
});

test("a written cluster.json reads back, and no temporary file is left", async () => {
  const file = { natsUrl: "nats://127.0.0.1:4222", services: [] } as unknown as Parameters<
    typeof writeClusterFile
  >[1];
  await writeClusterFile(dataDir, file);
  expect(await readClusterFile(dataDir)).toMatchObject({ format: 1, ...file });
  expect(await readdir(dataDir)).toEqual([clusterFileName]);
});
