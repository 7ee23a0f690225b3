// One process per data directory. Two processes on one directory would both allocate in
// a sled's device files, or both append to a head node's journal and take sessions from
// its one session file: acknowledged writes overwritten with nobody told. The identity
// file (data-dir.ts) cannot prevent that, since both processes are the right node.
//
// The lock is a listening Unix socket in Linux's abstract namespace, named after the
// directory's device and inode numbers (so every path to it, through symlinks or bind
// mounts, names one lock). An abstract socket has no file: the kernel frees its name
// when the last descriptor closes, which happens however the process ends (SIGKILL, a
// crash, a power cut ends everything anyway), so there is no stale lock to clean up and
// no timeout to judge. A second process that binds the name gets EADDRINUSE, connects
// instead, and reads one JSON line in which the holder names itself (pid, kind, node
// id), so that the refusal says who holds the directory.
//
// Limits: abstract names are per network namespace. Processes in two containers with
// their own network namespaces that mount one volume do not see each other's lock (the
// compose file gives every service its own volume). Any local user in the namespace can
// bind a name, so the lock guards against mistakes, not against another user. Where
// there is no abstract namespace (not Linux) no lock is taken: `held` is false and the
// service says so in its log.

import { stat } from "node:fs/promises";
import { createConnection, createServer, type Server } from "node:net";
import { dataDirHolderQueryTimeoutMs, dataDirLockNamePrefix } from "./constants.ts";
import { DataDirError, DataDirInUseError } from "./errors.ts";

/** Who holds a directory, as the holder says it over the lock's socket. */
export interface DataDirHolder {
  pid: number;
  kind: string;
  nodeId: string;
}

export interface DataDirLock {
  /** Whether a lock is held: false where there is no abstract namespace (not Linux). */
  readonly held: boolean;
  /** Gives the directory up; idempotent. The kernel does the same when the process ends. */
  release(): Promise<void>;
}

/** The size of `sun_path` in Linux's `struct sockaddr_un`: the longest abstract name. */
const socketPathBytes = 108;

/**
 * The abstract socket name of the directory with these device and inode numbers; the
 * leading NUL puts it in the abstract namespace (unix(7)). An abstract address is every
 * byte of the length bound, NULs included, and Node versions differ in that length
 * (this one binds the whole `sun_path`, padded with NULs; libuv can bind just the
 * name). Padded here to the whole `sun_path`, the name is one address either way, so
 * two builds on one machine still exclude each other.
 */
export function dataDirLockName(device: bigint, inode: bigint): string {
  const name = `\0${dataDirLockNamePrefix}${device.toString(16)}-${inode.toString(16)}`;
  return name.padEnd(socketPathBytes, "\0");
}

/**
 * Takes the lock of the existing directory `dataDir` for this process, as `holder`.
 * Fails with a DataDirError when another process holds it, naming that process when it
 * answers within dataDirHolderQueryTimeoutMs; touches nothing in the directory.
 */
export async function lockDataDir(
  dataDir: string,
  holder: Omit<DataDirHolder, "pid">,
  platform: NodeJS.Platform = process.platform,
): Promise<DataDirLock> {
  if (platform !== "linux") return { held: false, release: async () => undefined };
  const status = await stat(dataDir, { bigint: true });
  const name = dataDirLockName(status.dev, status.ino);
  const introduction = `${JSON.stringify({ pid: process.pid, ...holder })}\n`;
  const server = createServer((socket) => {
    // An asker's connection keeps nothing alive, and its failure is no concern of ours.
    socket.unref();
    socket.on("error", () => undefined);
    socket.end(introduction);
  });
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen({ path: name }, () => {
        server.off("error", reject);
        resolve();
      });
    });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EADDRINUSE") {
      throw new DataDirError(`cannot lock ${dataDir}: ${(error as Error).message}`, {
        cause: error,
      });
    }
    const holderNow = await askHolder(name);
    throw new DataDirInUseError(inUseMessage(dataDir, holderNow), holderNow);
  }
  // The lock must not keep the process running; an error after listening (a failed
  // accept) leaves the name bound, which is all the lock needs.
  server.unref();
  server.on("error", () => undefined);
  return { held: true, release: once(() => closeServer(server)) };
}

function inUseMessage(dataDir: string, holder: DataDirHolder | undefined): string {
  const who =
    holder === undefined
      ? `another process (it did not say which within ${dataDirHolderQueryTimeoutMs} ms; \`ss -xlp | grep ${dataDirLockNamePrefix}\` shows it)`
      : `${holder.kind} ${holder.nodeId} (pid ${holder.pid})`;
  return `data directory ${dataDir} is in use by ${who}; one process per data directory: stop that one first, or give this one another directory`;
}

/**
 * Asks the holder of lock `name` who it is. Undefined when it does not say within the
 * timeout (stopped by SIGSTOP, too busy), has just let go, or says something else.
 */
export function askHolder(name: string): Promise<DataDirHolder | undefined> {
  return new Promise((resolve) => {
    let text = "";
    const socket = createConnection({ path: name });
    const finish = (holder: DataDirHolder | undefined) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(holder);
    };
    const timer = setTimeout(() => finish(undefined), dataDirHolderQueryTimeoutMs);
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      text += chunk;
      const end = text.indexOf("\n");
      if (end >= 0) finish(parseHolder(text.slice(0, end)));
      else if (text.length > holderLineBytesMax) finish(undefined);
    });
    socket.on("end", () => finish(parseHolder(text)));
    socket.on("error", () => finish(undefined));
  });
}

/** Longer than any introduction (a pid, a kind, a 63-character node id). */
const holderLineBytesMax = 1024;

function parseHolder(line: string): DataDirHolder | undefined {
  try {
    const value = JSON.parse(line) as Partial<DataDirHolder>;
    if (
      Number.isSafeInteger(value.pid) &&
      typeof value.kind === "string" &&
      typeof value.nodeId === "string"
    ) {
      return { pid: value.pid as number, kind: value.kind, nodeId: value.nodeId };
    }
  } catch {
    // Not ours, or cut short: the caller says it could not tell who holds the lock.
  }
  return undefined;
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

function once(action: () => Promise<void>): () => Promise<void> {
  let done: Promise<void> | undefined;
  return () => {
    done ??= action();
    return done;
  };
}
