// Listing the keys of the control bucket without leaving state on the NATS server.
//
// Why not the KV's own `keys()`: nats.js 3.x lists keys through an ordered push
// consumer that is file-backed, has a 5-minute inactivity threshold and is never
// deleted. The catalogue lists keys on every volume open, describe, sweep, purge and
// snapshot pass, so a 30-minute chaos run left 2,650 such consumers on the
// `KV_ballast-control` stream (43 MB of consumer directories), and every nats-server
// restart took longer as it recovered each of them from disk.
//
// Model: one listing is one pull consumer we create ourselves on the bucket's stream,
// filtered to the listed keys, `last_per_subject`, headers only, no acks, in memory,
// one replica, with a short inactivity threshold; we fetch until the server reports
// nothing pending for it and delete it. Each key's last message is delivered: a PUT is
// a live key, a DEL or PURGE marker (the KV-Operation header, read as nats.js reads it)
// a deleted one, not listed.
// Keys are decoded with the bucket's own key codec, as its `keys()` does.
//
// What a listing returns, when keys change while it runs: the server first delivers the
// last message of every key as of the consumer's creation, then every message written
// after, in order, and the listing reads until nothing is pending. So it returns the
// keys live as of its last message read: every key that was live before the call began
// and not deleted before it ended is returned, once; a key created or deleted during
// the call is returned or not as it stood then. (Should a key's last message vanish
// meanwhile, by the history limit or a purge, its newer messages are among those
// read.) Writes to the listed keys faster than a listing reads could keep it going: past
// `keyListingOverrunMax` messages beyond what was pending at creation it fails instead.
//
// Why not a stream info with `subjects_filter` (one request, no consumer): it counts
// the messages per subject but cannot tell a deleted key, whose last message is its DEL
// marker, from a live one.
//
// Failure model: a create, fetch or delete may fail or time out (NATS reconnecting, the
// stream leader moving). A failed create or fetch fails the listing (the caller's
// request or pass fails and is retried, as for any KV read): a listing is complete or
// fails, never silently short (the KV's `keys()` ends its listing quietly on an idle
// heartbeat or a closed consumer). A fetch that delivers nothing while messages are
// pending, or whose consumer went away ("heartbeats missed"), fails the listing rather
// than wait without end. A failed delete is logged and
// ignored: the consumer has no subscriber, so the server removes it after the
// inactivity threshold; being in memory, it never reaches the disk.

import { randomUUID } from "node:crypto";
import { BallastError, ErrorCode } from "@ballast/protocol";
import type { Logger } from "@ballast/runtime";
import type { Bucket } from "@nats-io/kv";
import {
  keyListingBatchMax,
  keyListingFetchMs,
  keyListingInactiveMs,
  keyListingOverrunMax,
} from "./constants.ts";

/** The header JetStream KV marks deletes and purges with (nats.js `kvOperationHdr`). */
export const kvOperationHeader = "KV-Operation";

/** A listing consumer's name begins with this, so an operator can tell what it is. */
const keyListingConsumerPrefix = "ballast_keys_";

type ConsumerConfig = Parameters<Bucket["jsm"]["consumers"]["add"]>[1];

/** The consumer one listing reads `filterSubject` (a full `$KV.<bucket>.…` subject) with. */
export function keyListingConsumerConfig(
  name: string,
  filterSubject: string,
  inactiveMs = keyListingInactiveMs,
): ConsumerConfig {
  return {
    name,
    filter_subject: filterSubject,
    deliver_policy: "last_per_subject",
    ack_policy: "none",
    headers_only: true,
    mem_storage: true,
    num_replicas: 1,
    max_deliver: 1,
    // Nanoseconds, as the JetStream API takes durations.
    inactive_threshold: inactiveMs * 1_000_000,
  };
}

/** A deleted key's last message: its DEL or PURGE marker, where it is and when written. */
export interface DeleteMarker {
  key: string;
  /** The marker's stream sequence (the key's revision). */
  sequence: number;
  /** When the server stored it, by the server's wall clock. */
  timestampMs: number;
}

/** Where a delivered message sits in the stream, for `KeyListing.deleteMarkers`. */
export interface StoredAt {
  sequence: number;
  timestampMs: number;
}

/**
 * The pure part of a listing: which keys are live after the messages read so far, and
 * whether to read more. `pendingAtCreation` is the consumer's `num_pending` when made.
 */
export class KeyListing {
  /** Each key read, in order of first delivery: whether its last message is a PUT, and where. */
  private readonly live = new Map<string, { live: boolean; at?: StoredAt }>();
  private read = 0;
  private pending: number;

  constructor(
    private readonly pendingAtCreation: number,
    private readonly overrunMax = keyListingOverrunMax,
  ) {
    this.pending = pendingAtCreation;
  }

  /** Nothing more pending: the keys are those live as of the last message read. */
  get done(): boolean {
    return this.pending <= 0;
  }

  /** How many messages to ask for next: no more than are pending, so a fetch need not expire. */
  nextBatch(batchMax: number): number {
    return Math.max(1, Math.min(batchMax, this.pending));
  }

  /**
   * One delivered message: its key, its KV-Operation header, what is pending after it,
   * and where it is stored (for `deleteMarkers`). Throws once writes have outrun the
   * listing by `overrunMax` messages.
   */
  deliver(key: string, operation: string | undefined, pending: number, at?: StoredAt): void {
    this.read++;
    this.pending = pending;
    const live = operation !== "DEL" && operation !== "PURGE";
    this.live.set(key, at === undefined ? { live } : { live, at });
    if (this.pending > 0 && this.read > this.pendingAtCreation + this.overrunMax) {
      throw new BallastError(
        ErrorCode.Unavailable,
        `keys are written faster than they can be listed: ${this.read} messages read, ${this.pending} still pending`,
      );
    }
  }

  keys(): string[] {
    return [...this.live].filter(([, last]) => last.live).map(([key]) => key);
  }

  /** The deleted keys whose marker was delivered with where it is stored. */
  deleteMarkers(): DeleteMarker[] {
    const markers: DeleteMarker[] = [];
    for (const [key, last] of this.live) {
      if (!last.live && last.at !== undefined) markers.push({ key, ...last.at });
    }
    return markers;
  }
}

/** How a listing fetches; tests make it fetch one message at a time. */
export interface KeyListingLimits {
  batchMax: number;
  fetchMs: number;
}

const defaultLimits: KeyListingLimits = {
  batchMax: keyListingBatchMax,
  fetchMs: keyListingFetchMs,
};

/** The keys of `bucket` matching `filter` (KV key syntax, wildcards allowed). */
export async function listKeys(
  bucket: Bucket,
  filter: string,
  logger: Pick<Logger, "warn">,
  limits: KeyListingLimits = defaultLimits,
): Promise<string[]> {
  return (await readLastMessages(bucket, filter, logger, limits)).keys();
}

/** The delete markers of the keys of `bucket` matching `filter` that are deleted now. */
export async function listDeleteMarkers(
  bucket: Bucket,
  filter: string,
  logger: Pick<Logger, "warn">,
  limits: KeyListingLimits = defaultLimits,
): Promise<DeleteMarker[]> {
  return (await readLastMessages(bucket, filter, logger, limits)).deleteMarkers();
}

/** How long one fetch may take in all before the listing fails: twice its expiry, and 1 s. */
export function fetchGuardMs(fetchMs: number): number {
  return 2 * fetchMs + 1000;
}

/** One listing (see the header): every key's last message read into a KeyListing. */
async function readLastMessages(
  bucket: Bucket,
  filter: string,
  logger: Pick<Logger, "warn">,
  { batchMax, fetchMs }: KeyListingLimits,
): Promise<KeyListing> {
  bucket.validateSearchKey(filter);
  const name = `${keyListingConsumerPrefix}${randomUUID().replaceAll("-", "")}`;
  const subject = bucket.fullKeyName(bucket.encodeKey(filter));
  const info = await bucket.jsm.consumers.add(
    bucket.stream,
    keyListingConsumerConfig(name, subject),
  );
  try {
    const listing = new KeyListing(info.num_pending);
    const consumer = bucket.js.consumers.getConsumerFromInfo(info);
    while (!listing.done) {
      const messages = await consumer.fetch({
        max_messages: listing.nextBatch(batchMax),
        expires: fetchMs,
      });
      // nats.js bounds a fetch only by its heartbeats, which it stops watching while
      // disconnected, and on reconnect it retries the consumer's info for as long as the
      // connection lives: without this guard, a listing in flight when NATS goes away
      // waited out the whole outage, holding every caller (passes, fences, describes).
      const guard = setTimeout(
        () =>
          messages.stop(
            new BallastError(
              ErrorCode.Unavailable,
              `listing keys ${filter} of ${bucket.stream}: a fetch did not end within ${fetchGuardMs(fetchMs)} ms`,
            ),
          ),
        fetchGuardMs(fetchMs),
      );
      let delivered = 0;
      try {
        for await (const message of messages) {
          delivered++;
          listing.deliver(
            bucket.decodeKey(message.subject.substring(bucket.prefixLen)),
            message.headers?.get(kvOperationHeader),
            message.info.pending,
            { sequence: message.seq, timestampMs: Number(message.timestampNanos / 1_000_000n) },
          );
          if (listing.done) break;
        }
      } finally {
        clearTimeout(guard);
      }
      if (delivered === 0) {
        throw new BallastError(
          ErrorCode.Unavailable,
          `listing keys ${filter} of ${bucket.stream}: nothing delivered within ${fetchMs} ms with messages pending`,
        );
      }
    }
    return listing;
  } finally {
    try {
      await bucket.jsm.consumers.delete(bucket.stream, name);
    } catch (error) {
      logger.warn(
        { stream: bucket.stream, consumer: name, error: (error as Error).message },
        "could not delete a key-listing consumer; the server removes it once inactive",
      );
    }
  }
}
