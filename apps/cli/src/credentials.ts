// Per-cluster NATS credentials: one user with a random password per role (see
// packages/protocol/src/permissions.ts), plus one for the routes between the servers of
// a NATS cluster. They live in `credentials/` under the cluster's data directory, one
// JSON file per role ({"user","password"}, mode 0600, directory 0700), so that a
// service gets only its own file and a client can be handed only client.json. They are
// made once and reused, so a restart keeps every password a client was given.

import { randomBytes } from "node:crypto";
import { chmod, mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { type NatsRole, natsRoles } from "@ballast/protocol";
import type { NatsCredentials } from "@ballast/runtime";

export const credentialsDirName = "credentials";
/** The user the servers of a NATS cluster authenticate their routes with. */
export const routeUser = "route";
/** 24 random bytes: far beyond guessing, and URL-safe in hex (it goes into route URLs). */
const passwordBytes = 24;

export type CredentialName = NatsRole | typeof routeUser;

export function credentialsDir(dataDir: string): string {
  return join(dataDir, credentialsDirName);
}

export function credentialsFile(dataDir: string, name: CredentialName): string {
  return join(credentialsDir(dataDir), `${name}.json`);
}

export function randomPassword(): string {
  return randomBytes(passwordBytes).toString("hex");
}

/**
 * Every role's credentials for the cluster in `dataDir`: read back if made before, else
 * made now (or taken from `given`, which tests use to share one set across clusters).
 */
export async function ensureCredentials(
  dataDir: string,
  given: Partial<Record<CredentialName, string>> = {},
): Promise<Record<CredentialName, NatsCredentials>> {
  const directory = credentialsDir(dataDir);
  await mkdir(directory, { recursive: true, mode: 0o700 });
  await chmod(directory, 0o700);
  const result = {} as Record<CredentialName, NatsCredentials>;
  for (const name of [...natsRoles, routeUser] as CredentialName[]) {
    const path = credentialsFile(dataDir, name);
    const password = given[name] ?? (await readPassword(path, name)) ?? randomPassword();
    const credentials = { user: name, password };
    await writeFile(path, `${JSON.stringify(credentials)}\n`, { mode: 0o600 });
    await chmod(path, 0o600);
    result[name] = credentials;
  }
  return result;
}

async function readPassword(path: string, user: string): Promise<string | undefined> {
  try {
    const parsed = JSON.parse(await readFile(path, "utf8")) as Partial<NatsCredentials>;
    return parsed.user === user && typeof parsed.password === "string" && parsed.password !== ""
      ? parsed.password
      : undefined;
  } catch {
    return undefined;
  }
}
