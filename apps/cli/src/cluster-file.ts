// `cluster.json` in the data directory: what `ballast up` started and where, so that
// every other command (in another shell) finds the cluster, and so that a second
// `ballast up` on the same directory brings back the same nodes on the same port.

import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { ServiceKind } from "@ballast/protocol";
import { writeFileDurably } from "@ballast/runtime";

export const clusterFileName = "cluster.json";
const clusterFileFormat = 1;

export interface ServiceRecord {
  kind: ServiceKind;
  id: string;
  pid: number;
  dataDir: string;
  log: string;
}

export interface NatsServerRecord {
  pid: number;
  port: number;
  /** The port routes come in on, in a NATS cluster. */
  routePort?: number;
  config: string;
  log: string;
  storeDir: string;
}

export interface ClusterFile {
  format: number;
  /** Every server's URL, comma-separated. */
  natsUrl: string;
  /** Set when `ballast up` started nats-server itself (no --nats): the first server. */
  natsServer?: NatsServerRecord;
  /** Every nats-server `ballast up` started (several with --nats-cluster). */
  natsServers?: NatsServerRecord[];
  /** Directory of the per-role credentials files (credentials.ts), when made. */
  credentialsDir?: string;
  /** The CA file clients verify the servers with, when NATS runs TLS. */
  natsCa?: string;
  /** The pid of the running launcher, or undefined once it has stopped. */
  launcherPid?: number;
  startedAtMs: number;
  stoppedAtMs?: number;
  services: ServiceRecord[];
}

export function clusterFilePath(dataDir: string): string {
  return join(dataDir, clusterFileName);
}

export async function readClusterFile(dataDir: string): Promise<ClusterFile | undefined> {
  let text: string;
  try {
    text = await readFile(clusterFilePath(dataDir), "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
  let parsed: ClusterFile;
  try {
    parsed = JSON.parse(text) as ClusterFile;
  } catch (error) {
    throw new Error(
      `${clusterFilePath(dataDir)} is not valid JSON (${(error as Error).message}); if no cluster from it is running, delete it`,
      { cause: error },
    );
  }
  if (parsed.format !== clusterFileFormat) {
    throw new Error(
      `${clusterFilePath(dataDir)} has format ${parsed.format}; this build reads ${clusterFileFormat}`,
    );
  }
  return parsed;
}

/**
 * Replaces the file atomically and durably (writeFileDurably: synced before and after the
 * rename), so neither a reader nor a power cut finds half of it.
 */
export async function writeClusterFile(dataDir: string, file: Omit<ClusterFile, "format">) {
  await writeFileDurably(
    clusterFilePath(dataDir),
    `${JSON.stringify({ format: clusterFileFormat, ...file }, null, 2)}\n`,
  );
}
