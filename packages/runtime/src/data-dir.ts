// A service's data directory belongs to one node: the first start writes an identity
// file, and every later start checks it, so that two nodes can never share a directory
// and a directory is never adopted by a node of another kind.

import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { ServiceKind } from "@ballast/protocol";
import { DataDirError } from "./errors.ts";

export const identityFileName = "identity.json";
const identityFormat = 1;

export interface Identity {
  format: number;
  kind: ServiceKind;
  nodeId: string;
  createdAtMs: number;
}

/** Creates the directory and its identity on first use; refuses a directory of another node. */
export async function claimDataDir(
  dataDir: string,
  kind: ServiceKind,
  nodeId: string,
): Promise<Identity> {
  await mkdir(dataDir, { recursive: true });
  const path = join(dataDir, identityFileName);
  let text: string | undefined;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
  if (text === undefined) {
    const identity: Identity = { format: identityFormat, kind, nodeId, createdAtMs: Date.now() };
    const temporary = `${path}.tmp`;
    await writeFile(temporary, `${JSON.stringify(identity, null, 2)}\n`);
    await rename(temporary, path);
    return identity;
  }
  let identity: Identity;
  try {
    identity = JSON.parse(text) as Identity;
  } catch {
    throw new DataDirError(`cannot use ${dataDir}: ${path} is not valid JSON`);
  }
  if (identity.format !== identityFormat) {
    throw new DataDirError(
      `cannot use ${dataDir}: its identity format is ${identity.format}, this build reads ${identityFormat}`,
    );
  }
  if (identity.kind !== kind || identity.nodeId !== nodeId) {
    throw new DataDirError(
      `cannot use ${dataDir} for ${kind} ${nodeId}: it belongs to ${identity.kind} ${identity.nodeId}`,
    );
  }
  return identity;
}
