// A full JetStream store on a real nats-server: `ballast up`'s config caps the store
// (max_file_store), so once the control bucket reaches the cap a write is refused at once, and
// the control store (control-store.ts) fails it with the error that names a full control store
// instead of a timeout. The cap here is tiny (2 MiB) so that the test fills it with a few
// writes; nothing beyond the server's own store directory is written, and it is deleted.

import { readFile } from "node:fs/promises";
import { type RunningNatsServer, startNatsServer } from "@ballast/cli";
import { BallastError, buckets } from "@ballast/protocol";
import { Bucket, Kvm } from "@nats-io/kv";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, expect, test } from "vitest";
import type { ControlStore } from "../../services/coordinator/src/catalogue.ts";
import { controlStoreOf } from "../../services/coordinator/src/control-store.ts";
import { temporaryDirectory } from "../support/cluster.ts";

const storeBytes = 2 * 1024 * 1024;
const valueBytes = 128 * 1024;
/** Writes enough to pass the cap twice over; the test fails if none is refused. */
const writesMax = (2 * storeBytes) / valueBytes;

let nats: RunningNatsServer;
let removeDirectory: () => Promise<void>;
let connection: NatsConnection;
let store: ControlStore;
const errors: unknown[] = [];
const logger = { warn: () => undefined, error: (...args: unknown[]) => errors.push(args) };

beforeAll(async () => {
  const directory = await temporaryDirectory("ballast-store-full-");
  removeDirectory = directory.remove;
  nats = await startNatsServer({ directory: directory.path, fileStoreBytes: storeBytes });
  connection = await connect({ servers: nats.url });
  const kv = await new Kvm(connection).create(buckets.control, { history: 8 });
  if (!(kv instanceof Bucket)) throw new Error("not a bucket");
  store = controlStoreOf(kv, logger);
});
afterAll(async () => {
  await connection?.close();
  await nats?.stop();
  await removeDirectory?.();
});

test("the server's config caps the store with the size it was given", async () => {
  expect(await readFile(nats.configPath, "utf8")).toMatch(
    new RegExp(`^ {2}max_file_store: ${storeBytes}$`, "m"),
  );
});

test("a write past the cap fails at once with the named error, and so does a small one after it", async () => {
  const value = new Uint8Array(valueBytes).fill(7);
  let refused: unknown;
  let written = 0;
  for (; written < writesMax && refused === undefined; written++) {
    refused = await store.create(`volume.v${written}`, value).then(
      () => undefined,
      (error: unknown) => error,
    );
  }
  expect(refused).toBeInstanceOf(BallastError);
  expect((refused as Error).message).toMatch(/control store is full/);
  expect(written).toBeGreaterThan(1);
  const revision = (await store.get("volume.v0"))?.revision ?? 0;
  await expect(store.update("volume.v0", new Uint8Array([1]), revision)).rejects.toThrow(
    /control store is full/,
  );
  expect(errors).toHaveLength(1);
});
