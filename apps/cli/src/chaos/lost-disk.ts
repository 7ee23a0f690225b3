// The chaos fault `lose-head-disk` (nemesis.ts): which head node may lose its data
// directory, and whether the cluster has got over a lost one. Two pure functions and
// the reads that feed them.
//
// Model (services/headnode/src/simulation/failover.ts, `anotherCopyOfAll` and
// `onLostDisk`, does the same in the simulator): a head node killed, its data directory
// deleted and started again at once under its old id is back on a new, empty disk (a
// new `diskId` in identity.json). Every replica it held is gone. That is data loss
// unless each partition it was a voter of (primary or secondary) has another voter,
// alive and not itself on a lost disk, holding every acknowledged write: so a head node
// is a target only if that holds for all its partitions, and one disk is lost at a time.
//
// Recovery is not the status saying "full strength": right after the restart the node
// heartbeats again and the partitions still name it, so the status may call them full
// before the coordinator has heard the new disk id. The fault is over when, besides,
// no partition record names a member on a disk that member no longer has: the
// coordinator counted the node out and rebuilt it (or left it out). The records are
// read from the coordinator's control bucket (the only place the disks are kept: a
// describe does not show them), and each head node's disk from its identity.json.
//
// Failure model: every read may fail (NATS down, a directory deleted under it); a
// failed read never says "rebuilt".

import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { buckets, decodeControlRecord } from "@ballast/protocol";
import type { Bus } from "@ballast/runtime";
import { Kvm } from "@nats-io/kv";
import type { LocalCluster } from "../local-cluster.ts";

/** The part of a volume's describe the target choice looks at. */
export interface VotersView {
  partitions: readonly { primary: string; secondaries: readonly string[] }[];
}

/**
 * The head nodes that may lose their disk now: alive, not on a lost disk already, and
 * such that every partition they are a voter of has another voter that is alive and
 * not on a lost disk. Learners and joiners are not counted as copies (they may not hold
 * every acknowledged write yet); a head node that is only a learner may lose its disk.
 */
export function headsThatMayLoseDisk(
  volumes: readonly VotersView[],
  heads: readonly string[],
  alive: ReadonlySet<string>,
  onLostDisk: ReadonlySet<string> = new Set(),
): string[] {
  const copy = (node: string) => alive.has(node) && !onLostDisk.has(node);
  return heads.filter(
    (head) =>
      copy(head) &&
      volumes.every((volume) =>
        volume.partitions.every((partition) => {
          const voters = [partition.primary, ...partition.secondaries];
          return !voters.includes(head) || voters.some((other) => other !== head && copy(other));
        }),
      ),
  );
}

/** A partition record as the coordinator keeps it (services/coordinator/src/decisions.ts). */
export interface RecordedPartition {
  volume: string;
  partition: number;
  primary: string;
  secondaries: readonly string[];
  learners?: readonly string[];
  joining?: readonly string[];
  /** The data directory each member joined on, by node; absent for members without one. */
  disks?: Readonly<Record<string, string>>;
}

export interface LostDiskMember {
  volume: string;
  partition: number;
  node: string;
  /** The disk the record has for the member. */
  recorded: string;
  /** The node's disk now; undefined while it has none (its directory not yet made). */
  current: string | undefined;
}

/**
 * Members of the records that are recorded on a disk their node no longer has. Only
 * the nodes in `disks` are checked (the head nodes); a member without a recorded disk
 * is not checked (the coordinator checks it only once it has one, too).
 */
export function membersOnLostDisks(
  records: readonly RecordedPartition[],
  disks: ReadonlyMap<string, string | undefined>,
): LostDiskMember[] {
  const lost: LostDiskMember[] = [];
  for (const record of records) {
    const members = new Set([
      record.primary,
      ...record.secondaries,
      ...(record.learners ?? []),
      ...(record.joining ?? []),
    ]);
    for (const node of members) {
      const recorded = record.disks?.[node];
      if (recorded === undefined || !disks.has(node)) continue;
      const current = disks.get(node);
      if (current !== recorded) {
        lost.push({ volume: record.volume, partition: record.partition, node, recorded, current });
      }
    }
  }
  return lost;
}

/** A service's data directory: the service's own, never the cluster's (logs stay). */
export function serviceDataDir(cluster: Pick<LocalCluster, "records">, id: string): string {
  const record = cluster.records().find((entry) => entry.id === id);
  if (record === undefined) throw new Error(`no service ${id} in this cluster`);
  return record.dataDir;
}

/** The disk id in a data directory's identity.json; undefined if there is none (yet). */
export async function readDiskId(dataDir: string): Promise<string | undefined> {
  try {
    const identity = JSON.parse(await readFile(join(dataDir, "identity.json"), "utf8")) as {
      diskId?: unknown;
    };
    return typeof identity.diskId === "string" ? identity.diskId : undefined;
  } catch {
    return undefined;
  }
}

/** Each head node's disk now, from its identity.json. */
export async function headDisks(
  cluster: Pick<LocalCluster, "records">,
): Promise<Map<string, string | undefined>> {
  const disks = new Map<string, string | undefined>();
  for (const record of cluster.records()) {
    if (record.kind === "headnode") disks.set(record.id, await readDiskId(record.dataDir));
  }
  return disks;
}

/**
 * The partition records of `volumes` (name and partition count), read from the control
 * bucket by key: one get each, no key listing (a listing makes a consumer each time).
 * The key format is the coordinator's (services/coordinator/src/catalogue.ts, `keys`).
 */
export async function readPartitionRecords(
  bus: Bus,
  volumes: readonly { name: string; partitions: number }[],
): Promise<RecordedPartition[]> {
  const kv = await new Kvm(bus.connection).open(buckets.control);
  const records: RecordedPartition[] = [];
  for (const volume of volumes) {
    for (let partition = 0; partition < volume.partitions; partition++) {
      const key = `partition.${volume.name}.${partition}`;
      const entry = await kv.get(key);
      if (entry === null || entry.operation !== "PUT") {
        throw new Error(`no record of partition ${volume.name}/${partition}`);
      }
      records.push(decodeControlRecord("partition", key, entry.value));
    }
  }
  return records;
}

/** Members on lost disks now, over the given volumes; throws if anything cannot be read. */
export async function lostDiskMembersNow(
  bus: Bus,
  cluster: Pick<LocalCluster, "records">,
  volumes: readonly { name: string; partitions: number }[],
): Promise<LostDiskMember[]> {
  return membersOnLostDisks(await readPartitionRecords(bus, volumes), await headDisks(cluster));
}

export function formatLostDiskMember(member: LostDiskMember): string {
  return `${member.node} in ${member.volume}/${member.partition} on disk ${member.recorded.slice(0, 8)} (now ${member.current?.slice(0, 8) ?? "none"})`;
}
