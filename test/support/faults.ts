// Support for fault tests on real processes: a steady NBD write load (libnbd, through
// the gateway) whose every acknowledgement is timed, a prober that reads one partition
// straight from its primary and records every read that fails, a watcher that describes
// a volume over and over and records malformed descriptions, and waits for a volume to
// be back at full strength. Times are wall-clock ms on this machine (Date.now()).

import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import {
  BallastError,
  decodeValue,
  ErrorCode,
  encodeMessage,
  type Message,
  type ResultOf,
  subjects,
} from "@ballast/protocol";
import type { Bus } from "@ballast/runtime";
import { createInbox } from "@nats-io/transport-node";
import { waitFor } from "./cluster.ts";

export type VolumeState = ResultOf<"volume.describe.v1">;

/** The Python that has libnbd's bindings (Debian's python3-libnbd). */
export const libnbdPython = "/usr/bin/python3";
const loadScript = fileURLToPath(new URL("./nbd-load.py", import.meta.url));

/** True when python3-libnbd is installed, so the NBD load can run. */
export function hasLibnbd(): boolean {
  try {
    execFileSync(libnbdPython, ["-c", "import nbd"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

export function describeVolume(bus: Bus, name: string): Promise<VolumeState> {
  return bus.request(
    subjects.coordinator.build(),
    { type: "volume.describe.v1", name },
    { deadlineMs: 3000 },
  );
}

/** The gateway's NBD URL for a volume. */
export async function gatewayUrl(bus: Bus, gateway: string, volume: string): Promise<string> {
  const address = await waitFor("the gateway's NBD address", async () => {
    const result = await bus.request(subjects.node.build("gateway", gateway), {
      type: "node.info.v1",
    });
    return typeof result.details.nbd === "string" ? (result.details.nbd as string) : undefined;
  });
  return `${address}/${volume}`;
}

/** Waits until every partition has `replicaCount` voters and no learner or joining member. */
export function waitForFullStrength(
  bus: Bus,
  volume: string,
  replicaCount: number,
  timeoutMs: number,
): Promise<VolumeState> {
  return waitFor(
    `${volume} back at full strength (${replicaCount} voters, no learners, per partition)`,
    async () => {
      const state = await describeVolume(bus, volume);
      const full = state.partitions.every((partition) => {
        return (
          1 + partition.secondaries.length === replicaCount &&
          partition.learners.length === 0 &&
          (partition.joining ?? []).length === 0
        );
      });
      return full ? state : undefined;
    },
    timeoutMs,
    250,
  );
}

export interface TimedRequest {
  kind: "write" | "read";
  start: number;
  end: number;
  ok: boolean;
  error?: string;
}

export interface LoadVerify {
  slots: number;
  mismatches: unknown[];
  errors: string[];
}

/**
 * A steady 4 KiB write load through an NBD server, on a ring of `slots` blocks at
 * `offset`, each write read back: every request is timed; `stop()` ends it and reads
 * every slot back.
 */
export class NbdLoad {
  readonly writes: TimedRequest[] = [];
  readonly reads: TimedRequest[] = [];
  private readonly child: ChildProcess;
  private readonly exited: Promise<number | null>;
  private verified: LoadVerify | undefined;
  private stderr = "";
  private readonly ready: Promise<void>;

  constructor(url: string, offset: number, slots: number) {
    this.child = spawn(libnbdPython, [loadScript, url, String(offset), String(slots)], {
      stdio: ["pipe", "pipe", "pipe"],
    });
    this.exited = new Promise((resolve) => this.child.once("close", resolve));
    let readyResolve: () => void = () => undefined;
    this.ready = new Promise((resolve) => {
      readyResolve = resolve;
    });
    let pending = "";
    this.child.stdout?.on("data", (chunk: Buffer) => {
      pending += chunk.toString("utf8");
      for (let newline = pending.indexOf("\n"); newline >= 0; newline = pending.indexOf("\n")) {
        const line = pending.slice(0, newline);
        pending = pending.slice(newline + 1);
        const record = JSON.parse(line);
        if (record.kind === "write") this.writes.push(record);
        else if (record.kind === "read") this.reads.push(record);
        else if (record.kind === "verify") this.verified = record;
        else if (record.kind === "ready") readyResolve();
      }
    });
    this.child.stderr?.on("data", (chunk: Buffer) => {
      this.stderr += chunk.toString("utf8");
    });
  }

  /** Resolves once connected and the first write is acknowledged. */
  async started(): Promise<void> {
    await Promise.race([
      this.ready,
      this.exited.then((code) => {
        throw new Error(`the NBD load exited (${code}) before it started: ${this.stderr}`);
      }),
    ]);
    await waitFor("the NBD load's first write", () =>
      this.writes.some((write) => write.ok) ? true : undefined,
    );
  }

  /** Every write and read that failed (an NBD error, or a read of other bytes). */
  failures(): TimedRequest[] {
    return [...this.writes, ...this.reads].filter((request) => !request.ok);
  }

  /** The first write acknowledged at or after `atMs`, if any. */
  firstAckAfter(atMs: number): TimedRequest | undefined {
    return this.writes.find((write) => write.ok && write.end >= atMs);
  }

  /** Ends the load; resolves with its read-back of every slot. */
  async stop(): Promise<LoadVerify> {
    this.child.stdin?.end("stop\n");
    const code = await Promise.race([
      this.exited,
      new Promise<"hung">((resolve) => setTimeout(() => resolve("hung"), 60_000)),
    ]);
    if (code === "hung") {
      this.child.kill("SIGKILL");
      throw new Error("the NBD load did not stop within 60 s");
    }
    if (this.verified === undefined) {
      throw new Error(`the NBD load ended (${code}) without verifying: ${this.stderr}`);
    }
    return this.verified;
  }

  /** Kills the load if it still runs (for afterAll after a failed test). */
  kill(): void {
    if (this.child.exitCode === null) this.child.kill("SIGKILL");
  }
}

/**
 * The write outage a fault at `faultAtMs` caused: from the fault to the first write
 * acknowledged later than `settleMs` after it. A reply already on its way when the
 * primary stopped arrives within that margin; anything acknowledged after it was
 * acknowledged by a primary that still ran (a failover takes longer than the margin).
 */
export function writeOutageMs(load: NbdLoad, faultAtMs: number, settleMs = 250) {
  const resumed = load.firstAckAfter(faultAtMs + settleMs);
  return resumed === undefined ? undefined : resumed.end - faultAtMs;
}

export interface FailedRead {
  atMs: number;
  code: string;
  message: string;
}

/**
 * Reads one block of one partition straight from its primary, over and over, and
 * records every read that fails. A WrongEpoch or NotPrimary answer (the partition's
 * membership changed: the client learns the new epoch and retries) is retried within
 * the probe for up to 3 s (the catalogue moves to a new epoch before the head nodes
 * hear of it); any other failure, or no answer within `deadlineMs`, is a failed read.
 */
export class ReadProbe {
  readonly failed: FailedRead[] = [];
  reads = 0;
  private stopped = false;
  private readonly running: Promise<void>;

  constructor(
    private readonly bus: Bus,
    private readonly volume: string,
    private readonly partition: number,
    private readonly offset: number,
    private readonly expected: number,
    private readonly deadlineMs = 2000,
  ) {
    this.running = this.run();
  }

  private async run(): Promise<void> {
    let epoch = (await describeVolume(this.bus, this.volume)).partitions[this.partition]!.epoch;
    while (!this.stopped) {
      const atMs = Date.now();
      const retryUntilMs = atMs + 3000;
      for (;;) {
        try {
          const result = await this.bus.request(
            subjects.volume.build(this.volume, this.partition),
            {
              type: "volume.read.v1",
              volume: this.volume,
              partition: this.partition,
              epoch,
              reads: [{ offset: this.offset, length: 4096 }],
            },
            { deadlineMs: this.deadlineMs },
          );
          const data = result.data[0]!;
          if (!data.every((byte) => byte === this.expected)) {
            this.failed.push({ atMs, code: "WrongData", message: `read ${[...new Set(data)]}` });
          }
          this.reads += 1;
          break;
        } catch (error) {
          const code = error instanceof BallastError ? error.code : "Error";
          const membershipChanged = code === ErrorCode.WrongEpoch || code === ErrorCode.NotPrimary;
          if (membershipChanged && Date.now() < retryUntilMs) {
            try {
              epoch = (await describeVolume(this.bus, this.volume)).partitions[this.partition]!
                .epoch;
            } catch {
              // the coordinator is busy: try the read again with what we have
            }
            await new Promise((resolve) => setTimeout(resolve, 50));
            continue;
          }
          this.failed.push({ atMs, code, message: (error as Error).message });
          try {
            epoch = (await describeVolume(this.bus, this.volume)).partitions[this.partition]!.epoch;
          } catch {
            // as above
          }
          break;
        }
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.running;
  }
}

/**
 * Describes a volume over and over (as a client following a failover does) and records
 * every description that is malformed: a partition listed twice or missing.
 */
export class DescribeWatcher {
  readonly malformed: string[] = [];
  describes = 0;
  private stopped = false;
  private readonly running: Promise<void>;

  constructor(
    private readonly bus: Bus,
    private readonly volume: string,
    private readonly partitions: number,
  ) {
    this.running = this.run();
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      try {
        const state = await describeVolume(this.bus, this.volume);
        const indexes = state.partitions.map((partition) => partition.partition);
        const expected = Array.from({ length: this.partitions }, (_, index) => index);
        if (JSON.stringify(indexes) !== JSON.stringify(expected)) {
          this.malformed.push(`partitions ${JSON.stringify(indexes)}`);
        }
        this.describes += 1;
      } catch {
        // a coordinator busy or changing leader is not what this watches
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.running;
  }
}

/**
 * Runs one block request against a partition at its current epoch, describing again and
 * retrying while the answer is retryable (a failover in progress), for up to
 * `retryMs`; then the last error is thrown. Shorter than VolumeModel's 30 s, so that a
 * partition that never comes up fails a test in good time.
 */
export async function onPartition<T>(
  bus: Bus,
  volume: string,
  partition: number,
  attempt: (epoch: number) => Promise<T>,
  retryMs = 20_000,
): Promise<T> {
  const deadline = Date.now() + retryMs;
  for (;;) {
    try {
      const state = await describeVolume(bus, volume);
      return await attempt(state.partitions[partition]!.epoch);
    } catch (error) {
      if (!(error instanceof BallastError) || !error.retryable || Date.now() > deadline) {
        throw error;
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

/** Writes `count` 4 KiB blocks from volume offset `offset`, each filled with `fill`. */
export function writeBlocks(
  bus: Bus,
  volume: string,
  partition: number,
  offset: number,
  count: number,
  fill: number,
  retryMs?: number,
): Promise<unknown> {
  return onPartition(
    bus,
    volume,
    partition,
    (epoch) =>
      bus.request(
        subjects.volume.build(volume, partition),
        {
          type: "volume.write.v1",
          volume,
          partition,
          epoch,
          writes: Array.from({ length: count }, (_, index) => ({
            offset: offset + index * 4096,
            data: new Uint8Array(4096).fill(fill),
          })),
        },
        { deadlineMs: 3000 },
      ),
    retryMs,
  );
}

/** Reads `length` bytes at volume offset `offset` of one partition. */
export async function readBytes(
  bus: Bus,
  volume: string,
  partition: number,
  offset: number,
  length: number,
  retryMs?: number,
): Promise<Uint8Array> {
  return onPartition(
    bus,
    volume,
    partition,
    async (epoch) => {
      const result = await bus.request(
        subjects.volume.build(volume, partition),
        {
          type: "volume.read.v1",
          volume,
          partition,
          epoch,
          reads: [{ offset, length }],
        },
        { deadlineMs: 3000 },
      );
      return result.data[0]!;
    },
    retryMs,
  );
}

/** The distinct byte values in `data`, sorted: [0] for zeros, [fill] for one pattern. */
export function bytesIn(data: Uint8Array): number[] {
  return [...new Set(data)].sort((a, b) => a - b);
}

/**
 * Sends a request and gathers every reply that comes within `windowMs`: more than one
 * process may be subscribed to a partition's subject (a deposed primary woken from a
 * pause), and a client takes whichever answers first.
 */
export async function everyReply(bus: Bus, subject: string, message: Message, windowMs: number) {
  const connection = bus.connection;
  const inbox = createInbox();
  const replies: { ok: boolean; error?: { code: string; message: string } }[] = [];
  const subscription = connection.subscribe(inbox);
  const gathering = (async () => {
    for await (const reply of subscription) {
      replies.push(decodeValue(reply.data) as (typeof replies)[number]);
    }
  })();
  connection.publish(subject, encodeMessage(message), { reply: inbox });
  await new Promise((resolve) => setTimeout(resolve, windowMs));
  subscription.unsubscribe();
  await gathering;
  return replies;
}
