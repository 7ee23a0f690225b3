// The cluster's control state in the JetStream KV bucket `ballast-control`, as JSON so
// an operator can read it with any NATS tool:
//
//   volume.<name>                 {name, sizeBytes, replicaCount, partitionBytes, createdAtMs}
//   partition.<name>.<index>      {volume, partition, partitionStart, partitionBytes,
//                                  epoch, primary, secondaries}
//   leader                        {coordinator, expiresAtMs}   (see leadership.ts)
//
// Every change is a compare-and-set: `create` refuses a key that exists (so two clients
// creating one volume cannot both succeed), and `update` names the revision it read (so
// a decision taken on a stale view is refused, not applied). A volume is created by
// writing its partitions first and its volume record last, so a volume that is listed
// always has all its partitions; a create that dies halfway leaves partition records
// that the next create of that name reuses.

import { BallastError, ErrorCode } from "@ballast/protocol";
import type { KV } from "@nats-io/kv";
import type { PartitionRecord } from "./placement.ts";

export interface VolumeRecord {
  name: string;
  sizeBytes: number;
  replicaCount: number;
  partitionBytes: number;
  createdAtMs: number;
}

export interface Versioned<T> {
  value: T;
  revision: number;
}

const encoder = new TextEncoder();

function encode(value: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(value));
}

export const keys = {
  volume: (name: string) => `volume.${name}`,
  partition: (name: string, partition: number) => `partition.${name}.${partition}`,
  partitionsOf: (name: string) => `partition.${name}.>`,
};

/** True for the KV errors that mean "the revision you named is not the current one". */
function isConflict(error: unknown): boolean {
  const message = String((error as Error)?.message ?? error);
  return /wrong last sequence|key exists|already exists/i.test(message);
}

export class Catalogue {
  constructor(private readonly kv: KV) {}

  async volume(name: string): Promise<Versioned<VolumeRecord> | undefined> {
    return this.read<VolumeRecord>(keys.volume(name));
  }

  async volumes(): Promise<VolumeRecord[]> {
    const names: string[] = [];
    for await (const key of await this.kv.keys("volume.>")) names.push(key.slice("volume.".length));
    const records = await Promise.all(names.sort().map((name) => this.volume(name)));
    return records.filter((record) => record !== undefined).map((record) => record.value);
  }

  async partitions(name: string): Promise<Versioned<PartitionRecord>[]> {
    const found: string[] = [];
    for await (const key of await this.kv.keys(keys.partitionsOf(name))) found.push(key);
    const records = await Promise.all(found.map((key) => this.read<PartitionRecord>(key)));
    return records
      .filter((record) => record !== undefined)
      .sort((a, b) => a.value.partition - b.value.partition);
  }

  async allPartitions(): Promise<Versioned<PartitionRecord>[]> {
    const found: string[] = [];
    for await (const key of await this.kv.keys("partition.>")) found.push(key);
    const records = await Promise.all(found.map((key) => this.read<PartitionRecord>(key)));
    return records.filter((record) => record !== undefined);
  }

  /**
   * Writes partition records (keeping any a dead create left with the same shape), then
   * the volume record with `create`: exactly one concurrent create of a name succeeds.
   */
  async createVolume(
    volume: VolumeRecord,
    partitions: PartitionRecord[],
  ): Promise<PartitionRecord[]> {
    if ((await this.volume(volume.name)) !== undefined) {
      throw new BallastError(ErrorCode.AlreadyExists, `volume ${volume.name} already exists`);
    }
    const stored: PartitionRecord[] = [];
    for (const record of partitions) {
      const key = keys.partition(volume.name, record.partition);
      try {
        await this.kv.create(key, encode(record));
        stored.push(record);
      } catch (error) {
        if (!isConflict(error)) throw error;
        // Another create of this name got here first (or a dead one left it): use it.
        const existing = await this.read<PartitionRecord>(key);
        if (existing === undefined) throw error;
        stored.push(existing.value);
      }
    }
    try {
      await this.kv.create(keys.volume(volume.name), encode(volume));
    } catch (error) {
      if (isConflict(error)) {
        throw new BallastError(ErrorCode.AlreadyExists, `volume ${volume.name} already exists`);
      }
      throw error;
    }
    return stored;
  }

  /** Replaces a partition record if it is still at `revision`; false if it moved on. */
  async updatePartition(record: PartitionRecord, revision: number): Promise<boolean> {
    try {
      await this.kv.update(
        keys.partition(record.volume, record.partition),
        encode(record),
        revision,
      );
      return true;
    } catch (error) {
      if (isConflict(error)) return false;
      throw error;
    }
  }

  /** Deletes the volume record first (so it stops being listed), then its partitions. */
  async deleteVolume(name: string): Promise<boolean> {
    const volume = await this.volume(name);
    if (volume === undefined) return false;
    try {
      await this.kv.delete(keys.volume(name), { previousSeq: volume.revision });
    } catch (error) {
      if (isConflict(error)) return false;
      throw error;
    }
    for (const partition of await this.partitions(name)) {
      await this.kv.delete(keys.partition(name, partition.value.partition));
    }
    return true;
  }

  private async read<T>(key: string): Promise<Versioned<T> | undefined> {
    const entry = await this.kv.get(key);
    if (entry === null || entry.operation !== "PUT") return undefined;
    return { value: entry.json<T>(), revision: entry.revision };
  }
}
