// Per-cluster NATS credentials: one user with a random password per role (see
// packages/protocol/src/permissions.ts), plus one for the routes between the servers of
// a NATS cluster. They live in `credentials/` under the cluster's data directory, one
// JSON file per role ({"user","password"}, mode 0600, directory 0700), so that a
// service gets only its own file and a client can be handed only client.json. They are
// made once and reused, so a restart keeps every password a client was given: a file is
// rewritten only when its content changes, and then durably (temporary file, fsync, rename),
// and a file that exists but cannot be read as credentials stops `ballast up` with an error
// naming it, rather than being replaced by a new password that every client lacks.

import { randomBytes } from "node:crypto";
import { chmod, mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { type NatsRole, natsRoles } from "@ballast/protocol";
import { type NatsCredentials, writeFileDurably } from "@ballast/runtime";

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
    const stored = await readStoredCredentials(path, name);
    const password = given[name] ?? stored?.password ?? randomPassword();
    const credentials = { user: name, password };
    const text = `${JSON.stringify(credentials)}\n`;
    if (stored?.text !== text) await writeFileDurably(path, text, { mode: 0o600 });
    await chmod(path, 0o600);
    result[name] = credentials;
  }
  return result;
}

/**
 * The credentials stored at `path` and the file's text; undefined if there is no file. A
 * file that exists but is not `{"user": user, "password": …}` (empty after a crash or a full
 * disk, edited, another role's) is an error naming it: replacing it would lock out every
 * client that holds its password.
 */
async function readStoredCredentials(
  path: string,
  user: string,
): Promise<{ text: string; password: string } | undefined> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
  let parsed: Partial<NatsCredentials> | undefined;
  try {
    parsed = JSON.parse(text) as Partial<NatsCredentials>;
  } catch {
    parsed = undefined;
  }
  if (parsed?.user !== user || typeof parsed.password !== "string" || parsed.password === "") {
    throw new Error(
      `the NATS credentials file ${path} is not {"user": "${user}", "password": …} (${text.length === 0 ? "it is empty" : "it does not parse as that"}); it is not replaced, since clients may hold its password: restore it from a copy, or delete it to make a new password for ${user}`,
    );
  }
  return { text, password: parsed.password };
}
