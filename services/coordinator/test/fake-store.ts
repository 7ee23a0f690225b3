// An in-memory ControlStore with the JetStream KV semantics the coordinator relies on:
// one revision sequence for the bucket, `create` refused on a live key, `update` and
// `delete` refused unless they name the current revision. `listTwice` makes the key
// listing return chosen keys twice, as a real listing does for a key updated while it is
// listed.

import { type ControlStore, keys, type StoredEntry } from "../src/catalogue.ts";
import type { PartitionRecord } from "../src/decisions.ts";

interface Stored {
  value: Uint8Array;
  revision: number;
  operation: "PUT" | "DEL";
}

const decoder = new TextDecoder();
const encoder = new TextEncoder();

function matches(filter: string, key: string): boolean {
  const want = filter.split(".");
  const have = key.split(".");
  for (let index = 0; index < want.length; index++) {
    if (want[index] === ">") return have.length > index;
    if (index >= have.length) return false;
    if (want[index] !== "*" && want[index] !== have[index]) return false;
  }
  return want.length === have.length;
}

export class FakeStore implements ControlStore {
  private readonly entries = new Map<string, Stored>();
  private revision = 0;
  readonly listTwice = new Set<string>();

  /** Writes a value as JSON without any check, as a test's setup. */
  put(key: string, value: unknown): number {
    this.revision++;
    this.entries.set(key, {
      value: encoder.encode(JSON.stringify(value)),
      revision: this.revision,
      operation: "PUT",
    });
    return this.revision;
  }

  /** The value of a live key, parsed. */
  value<T>(key: string): T | undefined {
    const entry = this.entries.get(key);
    return entry?.operation === "PUT" ? (JSON.parse(decoder.decode(entry.value)) as T) : undefined;
  }

  async get(key: string): Promise<StoredEntry | null> {
    const entry = this.entries.get(key);
    if (entry === undefined) return null;
    return {
      revision: entry.revision,
      operation: entry.operation,
      value: entry.value,
    };
  }

  async create(key: string, value: Uint8Array): Promise<number> {
    if (this.entries.get(key)?.operation === "PUT")
      throw new Error("wrong last sequence: key exists");
    this.revision++;
    this.entries.set(key, { value, revision: this.revision, operation: "PUT" });
    return this.revision;
  }

  async update(key: string, value: Uint8Array, revision: number): Promise<number> {
    const current = this.entries.get(key);
    if (current?.revision !== revision) {
      throw new Error(`wrong last sequence: ${current?.revision ?? 0}`);
    }
    this.revision++;
    this.entries.set(key, { value, revision: this.revision, operation: "PUT" });
    return this.revision;
  }

  async delete(key: string, options: { previousSeq?: number } = {}): Promise<void> {
    const current = this.entries.get(key);
    if (options.previousSeq !== undefined && current?.revision !== options.previousSeq) {
      throw new Error(`wrong last sequence: ${current?.revision ?? 0}`);
    }
    this.revision++;
    this.entries.set(key, { value: new Uint8Array(), revision: this.revision, operation: "DEL" });
  }

  /**
   * Removes every delete marker, each with its key: the key then holds no message at
   * all, as the leader's cleanup of old markers leaves it (delete-markers.ts).
   */
  removeMarkers(): number {
    let removed = 0;
    for (const [key, entry] of [...this.entries]) {
      if (entry.operation !== "DEL") continue;
      this.entries.delete(key);
      removed++;
    }
    return removed;
  }

  async keys(filter: string): Promise<AsyncIterable<string>> {
    const found: string[] = [];
    for (const [key, entry] of this.entries) {
      if (entry.operation !== "PUT" || !matches(filter, key)) continue;
      found.push(key);
      if (this.listTwice.has(key)) found.push(key);
    }
    return (async function* () {
      yield* found;
    })();
  }
}

/**
 * A whole partition record for a test's setup: `fields` over defaults (records are
 * decoded by their schema, so a setup may not leave fields out).
 */
export function partitionFixture(
  fields: Partial<PartitionRecord> & Pick<PartitionRecord, "volume" | "partition">,
): PartitionRecord {
  return {
    partitionStart: 0,
    partitionBytes: 1024 * 1024,
    epoch: 1,
    primary: "head-1",
    secondaries: ["head-2"],
    ...fields,
  };
}

/**
 * Puts a one-partition volume `name` (incarnation `volumeId`, replicas "a" and "b" in
 * epoch 1, unless `members` says otherwise) into `store`: the fixture the sweep's tests
 * start from. Returns the partition record.
 */
export function putOnePartitionVolume(
  store: FakeStore,
  name: string,
  volumeId: string,
  members: Partial<PartitionRecord> = {},
): PartitionRecord {
  store.put(keys.volume(name), {
    name,
    id: volumeId,
    sizeBytes: 1,
    replicaCount: 2,
    partitionBytes: 1,
    createdAtMs: 1,
  });
  const record: PartitionRecord = {
    volume: name,
    volumeId,
    partition: 0,
    partitionStart: 0,
    partitionBytes: 1,
    epoch: 1,
    primary: "a",
    secondaries: ["b"],
    ...members,
  };
  store.put(keys.partition(name, 0), record);
  return record;
}
