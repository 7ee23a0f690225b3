// The cluster's control state in the JetStream KV bucket `ballast-control`, as JSON so
// an operator can read it with any NATS tool:
//
//   volume.<name>                 {name, sizeBytes, replicaCount, partitionBytes, createdAtMs}
//   partition.<name>.<index>      {volume, partition, partitionStart, partitionBytes,
//                                  epoch, primary, secondaries}
//   checkpoint.<name>.<index>.<node>  the replica's newest checkpoint on sleds
//                                  {opNum, blobKey, sleds, bytes, createdAtMs}
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

export interface CheckpointPointer {
  opNum: number;
  blobKey: string;
  sleds: string[];
  bytes: number;
  createdAtMs: number;
}

export const keys = {
  volume: (name: string) => `volume.${name}`,
  checkpoint: (name: string, partition: number, node: string) =>
    `checkpoint.${name}.${partition}.${node}`,
  checkpointsOf: (name: string) => `checkpoint.${name}.>`,
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

  /**
   * Records a replica's newest checkpoint; an older one than what is recorded is
   * ignored. Returns the pointer it replaced, whose blob the head node may delete.
   */
  async recordCheckpoint(
    name: string,
    partition: number,
    node: string,
    pointer: CheckpointPointer,
  ): Promise<{ replaced?: CheckpointPointer; recorded: boolean }> {
    const key = keys.checkpoint(name, partition, node);
    for (let attempt = 0; attempt < 5; attempt++) {
      const current = await this.read<CheckpointPointer>(key);
      if (current !== undefined && current.value.opNum > pointer.opNum) return { recorded: false };
      try {
        if (current === undefined) await this.kv.create(key, encode(pointer));
        else await this.kv.update(key, encode(pointer), current.revision);
        return current === undefined
          ? { recorded: true }
          : { replaced: current.value, recorded: true };
      } catch (error) {
        if (!isConflict(error)) throw error;
      }
    }
    return { recorded: false };
  }

  /** Every replica's newest checkpoint of a volume: partition → node → pointer. */
  async checkpoints(name: string): Promise<Map<number, Map<string, CheckpointPointer>>> {
    const found: string[] = [];
    for await (const key of await this.kv.keys(keys.checkpointsOf(name))) found.push(key);
    const result = new Map<number, Map<string, CheckpointPointer>>();
    for (const key of found) {
      const [, , partitionText, node] = key.split(".");
      const entry = await this.read<CheckpointPointer>(key);
      if (entry === undefined || node === undefined) continue;
      const partition = Number(partitionText);
      if (!result.has(partition)) result.set(partition, new Map());
      result.get(partition)!.set(node, entry.value);
    }
    return result;
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
    for await (const key of await this.kv.keys(keys.checkpointsOf(name))) await this.kv.delete(key);
    return true;
  }

  private async read<T>(key: string): Promise<Versioned<T> | undefined> {
    const entry = await this.kv.get(key);
    if (entry === null || entry.operation !== "PUT") return undefined;
    return { value: entry.json<T>(), revision: entry.revision };
  }
}
