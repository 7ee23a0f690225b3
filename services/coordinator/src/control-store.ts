// The control store (catalogue.ts `ControlStore`) on the JetStream KV bucket: the KV's
// reads, writes and watch, with keys listed by kv-keys.ts (the KV's own `keys()` left a
// consumer on the server per call), a create that survives a delete marker removed
// under it, and the removal of old delete markers (delete-markers.ts).

import type { Logger } from "@ballast/runtime";
import { Bucket, type KV } from "@nats-io/kv";
import type { ControlStore } from "./catalogue.ts";
import { createOverRemovedMarker, removeDeleteMarkers } from "./delete-markers.ts";
import { listKeys } from "./kv-keys.ts";

export function controlStoreOf(kv: KV, logger: Pick<Logger, "warn">): ControlStore {
  if (!(kv instanceof Bucket)) throw new Error("the control store needs a JetStream KV bucket");
  return {
    get: (key) => kv.get(key),
    create: (key, value) => createOverRemovedMarker(kv, key, value),
    update: (key, value, revision) => kv.update(key, value, revision),
    delete: (key, options) => kv.delete(key, options),
    keys: async (filter) => each(await listKeys(kv, filter, logger)),
    watch: (options) => kv.watch(options),
    removeDeleteMarkers: (ageMs) => removeDeleteMarkers(kv, ageMs, logger),
  };
}

async function* each<T>(items: readonly T[]): AsyncIterable<T> {
  yield* items;
}
