// The control store (catalogue.ts `ControlStore`) on the JetStream KV bucket: the KV's
// reads, writes and watch, with keys listed by kv-keys.ts (the KV's own `keys()` left a
// consumer on the server per call), a create that survives a delete marker removed
// under it, and the removal of old delete markers (delete-markers.ts).
//
// A full JetStream store: nats-server's configs (`ballast up`'s and deploy/nats-server.conf)
// cap the store with `max_file_store`, so a write that does not fit is refused at once with
// JetStream API error 10023 ("insufficient resources") instead of hanging on a full disk. Such a
// write fails here with a BallastError (Unavailable) that says the control store is full and
// what to do, and the first of a run of them is logged as an error; the catalogue's loops
// retry only conflicts, so it is thrown, never spun on.

import { BallastError, ErrorCode } from "@ballast/protocol";
import type { Logger } from "@ballast/runtime";
import { Bucket, type KV } from "@nats-io/kv";
import type { ControlStore, StoredEntry } from "./catalogue.ts";
import { createOverRemovedMarker, removeDeleteMarkers } from "./delete-markers.ts";
import { kvOperationHeader, listKeys } from "./kv-keys.ts";

/**
 * JetStream's API error code for "insufficient resources": the stream does not fit within
 * the server's `max_file_store` (or `max_memory_store`), or the server has no room left.
 */
export const jetStreamInsufficientResourcesCode = 10023;

export function controlStoreOf(kv: KV, logger: Pick<Logger, "warn" | "error">): ControlStore {
  if (!(kv instanceof Bucket)) throw new Error("the control store needs a JetStream KV bucket");
  return namingStoreFull(
    {
      get: (key) => kv.get(key),
      getLatest: (key) => getFromLeader(kv, key),
      create: (key, value) => createOverRemovedMarker(kv, key, value),
      update: (key, value, revision) => kv.update(key, value, revision),
      delete: (key, options) => kv.delete(key, options),
      keys: async (filter) => each(await listKeys(kv, filter, logger)),
      watch: (options) => kv.watch(options),
      removeDeleteMarkers: (ageMs) => removeDeleteMarkers(kv, ageMs, logger),
    },
    logger,
  );
}

/**
 * A key's last entry, asked of the stream's leader (the KV's own `get` is a direct get,
 * which any replica may answer, one that is behind among them): null if the key holds
 * no message at all.
 */
export async function getFromLeader(kv: Bucket, key: string): Promise<StoredEntry | null> {
  const stored = await kv.jsm.streams.getMessage(kv.stream, {
    last_by_subj: kv.fullKeyName(kv.encodeKey(key)),
  });
  if (stored === null) return null;
  // As the KV reads an entry's operation: a marker the server wrote when a value aged
  // out is a purge; otherwise the header the KV's own delete and purge write.
  const operation =
    stored.header?.get("Nats-Marker-Reason") === "MaxAge"
      ? "PURGE"
      : stored.header?.get(kvOperationHeader) || "PUT";
  return {
    revision: stored.seq,
    operation: operation === "DEL" || operation === "PURGE" ? operation : "PUT",
    value: stored.data,
  };
}

/** True if `error`, or an error in its cause chain, is JetStream's "insufficient resources". */
export function isStoreFull(error: unknown): boolean {
  for (let at = error, depth = 0; at instanceof Error && depth < 8; depth++) {
    if ((at as { code?: unknown }).code === jetStreamInsufficientResourcesCode) return true;
    at = at.cause;
  }
  return false;
}

/** The error a write refused by a full JetStream store fails with. */
export function controlStoreFullError(error: unknown): BallastError {
  return new BallastError(
    ErrorCode.Unavailable,
    `the control store is full: the NATS JetStream store refused a write with "insufficient resources" (API error ${jetStreamInsufficientResourcesCode}), as it does at its max_file_store limit or on a full disk; free space for it or raise max_file_store in the nats-server config`,
    { cause: error, details: { controlStoreFull: true } },
  );
}

/**
 * `store` with its writes' "insufficient resources" failures turned into
 * `controlStoreFullError`, the first of each run of them (until a write succeeds) logged.
 */
export function namingStoreFull(store: ControlStore, logger: Pick<Logger, "error">): ControlStore {
  let full = false;
  const write = async <T>(operation: () => Promise<T>): Promise<T> => {
    try {
      const result = await operation();
      full = false;
      return result;
    } catch (error) {
      if (!isStoreFull(error)) throw error;
      const named = controlStoreFullError(error);
      if (!full) {
        full = true;
        logger.error({ error: String(error) }, named.message);
      }
      throw named;
    }
  };
  const wrapped: ControlStore = {
    get: (key) => store.get(key),
    create: (key, value) => write(() => store.create(key, value)),
    update: (key, value, revision) => write(() => store.update(key, value, revision)),
    delete: (key, options) => write(() => store.delete(key, options)),
    keys: (filter) => store.keys(filter),
  };
  if (store.getLatest !== undefined) wrapped.getLatest = store.getLatest.bind(store);
  if (store.watch !== undefined) wrapped.watch = store.watch.bind(store);
  if (store.removeDeleteMarkers !== undefined) {
    wrapped.removeDeleteMarkers = store.removeDeleteMarkers.bind(store);
  }
  return wrapped;
}

async function* each<T>(items: readonly T[]): AsyncIterable<T> {
  yield* items;
}
