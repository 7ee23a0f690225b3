// The client's only contact with the bus: one batch becomes one volume.* request, and a
// volume is described through the coordinator. Messages are built from the protocol's
// types, so the compiler keeps them in step with the wire; replies arrive validated by
// the bus's codec, and the one thing the codec cannot know — that a read answered one
// buffer of the right size per range asked — is checked here, the edge where the reply
// meets its request.
//
// Failure model: the bus throws a BallastError for every remote failure and for NATS
// faults (no responder → Unavailable, deadline → Timeout); those pass through untouched
// for the retry logic to judge, except a describe's Internal, which is retryable there
// (see describeVolume). A read reply of the wrong shape is a server bug and
// becomes an UnexpectedReplyError, which no retry would fix.

import {
  BallastError,
  ErrorCode,
  isAssembledByLink,
  isBallastError,
  type MutationFence,
  subjects,
} from "@ballast/protocol";
import type { Bus } from "@ballast/runtime";
import type { Entry, RequestKind } from "./batch.ts";
import { UnexpectedReplyError } from "./errors.ts";
import type { VolumeState } from "./layout.ts";

/** The narrow part of the runtime's Bus the client needs (so tests can pass a fake). */
export interface RequestBus {
  request: Bus["request"];
  /** Links for volume requests (a real Bus has it; a test's fake need not). */
  enableLinks?: Bus["enableLinks"];
}

/** Where a request goes: a partition of a volume, in the epoch the client believes current. */
export interface PartitionAddress {
  readonly volume: string;
  readonly partition: number;
  readonly epoch: number;
  /** The incarnation the client opened, when the description named one. */
  readonly volumeId?: string;
  /** Reads go to this snapshot of the partition (its id) rather than its current data. */
  readonly snapshot?: string;
  /** Reads also ask for the never-mapped parts of each range (a clone's reads). */
  readonly unmapped?: boolean;
  /** Mutations carry this attempt's ordering fence (fence.ts); reads and flushes none. */
  readonly fence?: MutationFence;
}

/**
 * Sends `entries` (all of `kind`, all in the addressed partition) as one request and
 * settles nothing: on success a read's buffers are filled, and the caller resolves the
 * entries; on failure the error is thrown for the caller to judge.
 */
/** The entries' ranges (a function, not a closure made per batch: see scheduler.ts, BatchTask). */
function rangesOf(entries: readonly Entry[]): { offset: number; length: number }[] {
  return entries.map((entry) => ({ offset: entry.offset, length: entry.length }));
}

export async function sendBatch(
  bus: RequestBus,
  subject: string,
  kind: RequestKind,
  addressed: PartitionAddress,
  entries: readonly Entry[],
  deadlineMs: number,
): Promise<void> {
  const options = { deadlineMs };
  // Only reads name a snapshot (a snapshot volume sends nothing else, see volume.ts),
  // and only mutations carry a fence.
  const { snapshot, unmapped, fence, ...address } = addressed;
  const fenced = fence === undefined ? {} : { fence };
  switch (kind) {
    case "write":
      await bus.request<"volume.write.v1">(
        subject,
        {
          type: "volume.write.v1",
          ...address,
          writes: entries.map((entry) => ({ offset: entry.offset, data: entry.buffer })),
          ...fenced,
        },
        options,
      );
      return;
    case "read": {
      const result = await bus.request<"volume.read.v1">(
        subject,
        {
          type: "volume.read.v1",
          ...address,
          reads: rangesOf(entries),
          ...(snapshot === undefined ? {} : { snapshot }),
          ...(unmapped === true ? { unmapped } : {}),
        },
        options,
      );
      copyReadReply(subject, entries, result.data);
      if (unmapped === true) recordUnmapped(subject, entries, result.unmapped);
      return;
    }
    case "trim":
      await bus.request<"volume.trim.v1">(
        subject,
        { type: "volume.trim.v1", ...address, ranges: rangesOf(entries), ...fenced },
        options,
      );
      return;
    case "write-zeroes":
      await bus.request<"volume.write-zeroes.v1">(
        subject,
        { type: "volume.write-zeroes.v1", ...address, ranges: rangesOf(entries), ...fenced },
        options,
      );
      return;
    case "flush":
      await bus.request<"volume.flush.v1">(
        subject,
        { type: "volume.flush.v1", ...address },
        options,
      );
      return;
    default: {
      const unreachable: never = kind;
      throw new Error(`no request for entries of kind ${String(unreachable)}`);
    }
  }
}

/**
 * Hands each returned buffer to its entry. An entry with a buffer of its own (the
 * caller's) gets a copy in its part of it. An entry without one (a read the volume made
 * no buffer for: volume.ts) gets the reply's own bytes when they lie in memory no one
 * else writes into or reuses: a buffer a link decoder assembled one reply frame into
 * (`isAssembledByLink`), as every reply too large for one socket read is. Any other
 * reply buffer may be a view of the transport's (a socket's read, a NATS message),
 * which an entry must not outlive: those are copied into their part of one buffer made
 * here for all such entries of the batch. One allocation per batch, not one per 4 KiB
 * read: a fresh zero-filled buffer per read was the largest own item of the gateway's
 * profile at 4 KiB random reads. At 1 MiB reads through the gateway the copy was 18 %
 * of its busy time, hence the views.
 */
function copyReadReply(
  subject: string,
  entries: readonly Entry[],
  data: readonly Uint8Array[],
): void {
  if (data.length !== entries.length) {
    throw new UnexpectedReplyError(
      subject,
      `a read of ${entries.length} ranges answered ${data.length} buffers`,
    );
  }
  let copiedBytes = 0;
  for (let index = 0; index < entries.length; index += 1) {
    const entry = entries[index]!;
    const bytes = data[index]!;
    if (bytes.byteLength !== entry.length) {
      throw new UnexpectedReplyError(
        subject,
        `the read of ${entry.length} bytes at offset ${entry.offset} answered ${bytes.byteLength} bytes`,
      );
    }
    if (entry.buffer.byteLength !== entry.length && !isAssembledByLink(bytes)) {
      copiedBytes += entry.length;
    }
  }
  // Copy only once every buffer passed, so that a bad reply leaves no caller's buffer
  // half filled by it.
  // Not zero-filled: the parts cover it exactly, and each is written whole below. The
  // parts, and the views kept, are plain Uint8Arrays, as a read with a buffer of its
  // own answers.
  const received = copiedBytes === 0 ? undefined : Buffer.allocUnsafeSlow(copiedBytes);
  let at = 0;
  for (let index = 0; index < entries.length; index += 1) {
    const entry = entries[index]!;
    const bytes = data[index]!;
    if (entry.buffer.byteLength === entry.length) {
      entry.buffer.set(bytes);
    } else if (isAssembledByLink(bytes)) {
      entry.received = new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    } else {
      const part = new Uint8Array(received!.buffer, received!.byteOffset + at, entry.length);
      part.set(bytes);
      at += entry.length;
      entry.received = part;
    }
  }
}

/**
 * Keeps each entry's never-mapped parts from a reply that was asked for them. A reply
 * without them (a head node that does not know the flag) would read a clone's
 * unwritten bytes as zeros instead of its parent's: refused as a bad reply.
 */
function recordUnmapped(
  subject: string,
  entries: readonly Entry[],
  unmapped: readonly { offset: number; length: number }[][] | undefined,
): void {
  if (unmapped === undefined || unmapped.length !== entries.length) {
    throw new UnexpectedReplyError(
      subject,
      `a read of ${entries.length} ranges of a clone answered ${unmapped?.length ?? "no"} lists of unmapped ranges`,
    );
  }
  for (const [index, entry] of entries.entries()) {
    const end = entry.offset + entry.length;
    for (const range of unmapped[index]!) {
      if (range.offset < entry.offset || range.offset + range.length > end) {
        throw new UnexpectedReplyError(
          subject,
          `the read of ${entry.length} bytes at offset ${entry.offset} answered an unmapped range [${range.offset}, ${range.offset + range.length}) outside it`,
        );
      }
    }
  }
  for (const [index, entry] of entries.entries()) entry.unmapped = unmapped[index]!;
}

/**
 * Asks the coordinator for a volume's state. An Internal failure of the describe comes
 * back as Unavailable (the original as its cause): a describe only reads the catalogue,
 * and the coordinator answers Internal when its catalogue store fails under it, which
 * happens while the store or the coordinator's leadership is moving. Retrying is the
 * right answer to that, and a lasting fault still ends in the retry budget's Timeout,
 * which carries it.
 */
export async function describeVolume(
  bus: RequestBus,
  name: string,
  deadlineMs: number,
): Promise<VolumeState> {
  const subject = subjects.coordinator.build();
  try {
    return await describeVolumeWhole(bus, name, { deadlineMs });
  } catch (error) {
    if (!isBallastError(error, ErrorCode.Internal)) throw error;
    throw new BallastError(
      ErrorCode.Unavailable,
      `the coordinator failed to describe volume ${JSON.stringify(name)} (Internal: ${error.message}); retry`,
      { cause: error, details: { subject, volume: name } },
    );
  }
}

/**
 * A volume's whole state: every page of its partitions (an answer lists at most
 * `describePartitionsMax`; `partitionsNext` says where the next starts), each page
 * asked with its own `deadlineMs`. The volume's own fields are the last page's (a grow
 * between pages shows in its later pages). A volume deleted and created again between
 * pages is another incarnation: that is refused as Unavailable, to retry.
 */
export async function describeVolumeWhole(
  bus: RequestBus,
  name: string,
  options: { deadlineMs: number; stored?: boolean },
): Promise<VolumeState> {
  const subject = subjects.coordinator.build();
  const ask = (partitionsFrom: number | undefined) =>
    bus.request<"volume.describe.v1">(
      subject,
      {
        type: "volume.describe.v1",
        name,
        ...(options.stored === true ? { stored: true } : {}),
        ...(partitionsFrom === undefined ? {} : { partitionsFrom }),
      },
      { deadlineMs: options.deadlineMs },
    );
  const first = await ask(undefined);
  if (first.partitionsNext === undefined) return first;
  const partitions = [...first.partitions];
  let page = first;
  while (page.partitionsNext !== undefined) {
    const from = page.partitionsNext;
    page = await ask(from);
    if (page.id !== first.id) {
      throw new BallastError(
        ErrorCode.Unavailable,
        `volume ${JSON.stringify(name)} was deleted and created again while it was described (incarnation ${first.id} then ${page.id}); retry`,
        { details: { subject, volume: name } },
      );
    }
    if (page.partitions.length === 0 && page.partitionsNext !== undefined) {
      throw new UnexpectedReplyError(subject, `an empty page of partitions named a next page`);
    }
    if (page.partitions.some((partition) => partition.partition < from)) {
      throw new UnexpectedReplyError(subject, `a page from partition ${from} listed one before it`);
    }
    partitions.push(...page.partitions);
  }
  const { partitionsNext: _next, ...last } = page;
  return { ...last, partitions };
}
