// A full JetStream store (control-store.ts): a write refused with "insufficient resources"
// (API error 10023, what nats-server answers at its max_file_store) fails with an error that
// says the control store is full, logged once per run of them, and is thrown rather than
// retried by the catalogue. The store here is the unit tests' in-memory fake, made to refuse
// writes the way the server does.

import { BallastError, ErrorCode } from "@ballast/protocol";
import { JetStreamApiError } from "@nats-io/jetstream";
import { expect, test } from "vitest";
import { Catalogue, isConflict, keys } from "../src/catalogue.ts";
import {
  isStoreFull,
  jetStreamInsufficientResourcesCode,
  namingStoreFull,
} from "../src/control-store.ts";
import { FakeStore } from "./fake-store.ts";

function insufficientResources(): JetStreamApiError {
  return new JetStreamApiError({
    err_code: jetStreamInsufficientResourcesCode,
    code: 500,
    description: "insufficient resources",
  });
}

/** The fake store, refusing every write as a full JetStream store does while `full`. */
class FullableStore extends FakeStore {
  full = false;
  refusedWrites = 0;

  private refuse(): void {
    if (!this.full) return;
    this.refusedWrites++;
    throw insufficientResources();
  }

  override async create(key: string, value: Uint8Array): Promise<number> {
    this.refuse();
    return super.create(key, value);
  }

  override async update(key: string, value: Uint8Array, revision: number): Promise<number> {
    this.refuse();
    return super.update(key, value, revision);
  }

  override async delete(key: string, options?: { previousSeq?: number }): Promise<void> {
    this.refuse();
    return super.delete(key, options);
  }
}

/** A whole volume record of `v` with incarnation `id`. */
function volumeOf(id: string) {
  return { name: "v", id, sizeBytes: 1, replicaCount: 2, partitionBytes: 1, createdAtMs: 1 };
}

function recordingLogger() {
  const errors: string[] = [];
  return {
    errors,
    error: (...args: unknown[]) => {
      errors.push(String(args[1]));
    },
  };
}

test("error 10023 is recognised, also as the cause of another error; a conflict or timeout is not", () => {
  expect(isStoreFull(insufficientResources())).toBe(true);
  expect(isStoreFull(new Error("wrapped", { cause: insufficientResources() }))).toBe(true);
  expect(isConflict(insufficientResources())).toBe(false);
  expect(isStoreFull(new Error("wrong last sequence: 4"))).toBe(false);
  expect(isStoreFull(Object.assign(new Error("timeout"), { code: "TIMEOUT" }))).toBe(false);
});

test("a catalogue write to a full store fails at once with the named error, logged once a run", async () => {
  const store = new FullableStore();
  store.put(keys.volume("v"), volumeOf("v-1"));
  const logger = recordingLogger();
  const catalogue = new Catalogue(namingStoreFull(store, logger));
  store.full = true;

  const failure = await catalogue.deleteVolume("v").catch((error: unknown) => error);
  expect(failure).toBeInstanceOf(BallastError);
  expect((failure as BallastError).code).toBe(ErrorCode.Unavailable);
  expect((failure as BallastError).message).toMatch(/control store is full.*max_file_store/);
  expect((failure as BallastError).details).toEqual({ controlStoreFull: true });
  expect(store.refusedWrites).toBe(1);
  expect(logger.errors).toHaveLength(1);
  expect(logger.errors[0]).toMatch(/control store is full/);

  // Another refused write in the same run is not logged again...
  await expect(catalogue.deleteVolume("v")).rejects.toThrow(/control store is full/);
  expect(logger.errors).toHaveLength(1);
  // ...but one after a write succeeded again is.
  store.full = false;
  expect((await catalogue.deleteVolume("v"))?.id).toBe("v-1");
  store.put(keys.volume("v"), volumeOf("v-2"));
  store.full = true;
  await expect(catalogue.deleteVolume("v")).rejects.toThrow(/control store is full/);
  expect(logger.errors).toHaveLength(2);
});

test("the wrapper passes other failures through unchanged, and keeps reads and listings", async () => {
  const store = new FakeStore();
  const wrapped = namingStoreFull(store, recordingLogger());
  const revision = await wrapped.create("volume.a", new Uint8Array([1]));
  await expect(wrapped.update("volume.a", new Uint8Array([2]), revision + 5)).rejects.toSatisfy(
    (error: unknown) => isConflict(error) && !(error instanceof BallastError),
  );
  expect((await wrapped.get("volume.a"))?.revision).toBe(revision);
  const listed: string[] = [];
  for await (const key of await wrapped.keys("volume.>")) listed.push(key);
  expect(listed).toEqual(["volume.a"]);
});
