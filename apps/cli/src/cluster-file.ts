// `cluster.json` in the data directory: what `ballast up` started and where, so that
// every other command (in another shell) finds the cluster, and so that a second
// `ballast up` on the same directory brings back the same nodes on the same port.

import { readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { ServiceKind } from "@ballast/protocol";

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
  const parsed = JSON.parse(text) as ClusterFile;
  if (parsed.format !== clusterFileFormat) {
    throw new Error(
      `${clusterFilePath(dataDir)} has format ${parsed.format}; this build reads ${clusterFileFormat}`,
    );
  }
  return parsed;
}

/** Replaces the file atomically, so a reader never sees half of it. */
export async function writeClusterFile(dataDir: string, file: Omit<ClusterFile, "format">) {
  const path = clusterFilePath(dataDir);
  const temporary = `${path}.tmp`;
  await writeFile(
    temporary,
    `${JSON.stringify({ format: clusterFileFormat, ...file }, null, 2)}\n`,
  );
  await rename(temporary, path);
}
