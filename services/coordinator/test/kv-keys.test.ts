// The pure part of key listing (kv-keys.ts): which keys are live after the messages a
// listing consumer delivered, when the listing is done, and the consumer it asks for.
// The listing against a real nats-server is test/integration/kv-keys.test.ts.

import { ErrorCode } from "@ballast/protocol";
import { describe, expect, test } from "vitest";
import { keyListingInactiveMs } from "../src/constants.ts";
import { fetchGuardMs, KeyListing, keyListingConsumerConfig, listKeys } from "../src/kv-keys.ts";

describe("KeyListing", () => {
  test("a listing of nothing pending is done before any fetch", () => {
    const listing = new KeyListing(0);
    expect(listing.done).toBe(true);
    expect(listing.keys()).toEqual([]);
  });

  test("keeps keys whose last message is a PUT, once each, in delivery order", () => {
    const listing = new KeyListing(4);
    listing.deliver("volume.b", undefined, 3);
    listing.deliver("volume.gone", "DEL", 2);
    listing.deliver("volume.purged", "PURGE", 1);
    expect(listing.done).toBe(false);
    listing.deliver("volume.a", "PUT", 0);
    expect(listing.done).toBe(true);
    expect(listing.keys()).toEqual(["volume.b", "volume.a"]);
  });

  test("a key deleted or created again while listed ends as its last message says", () => {
    const listing = new KeyListing(2);
    listing.deliver("partition.v.0", undefined, 1);
    // Written after the consumer was made: delivered after every key's last message.
    listing.deliver("partition.v.1", "DEL", 2);
    listing.deliver("partition.v.0", "DEL", 1);
    expect(listing.done).toBe(false);
    listing.deliver("partition.v.1", undefined, 0);
    expect(listing.done).toBe(true);
    expect(listing.keys()).toEqual(["partition.v.1"]);
  });

  test("reads what is written meanwhile, and fails once writes outrun it", () => {
    const listing = new KeyListing(2, 3);
    listing.deliver("checkpoint.v.0.n", undefined, 1);
    listing.deliver("checkpoint.v.1.n", undefined, 3);
    listing.deliver("checkpoint.v.2.n", undefined, 3);
    listing.deliver("checkpoint.v.3.n", undefined, 3);
    listing.deliver("checkpoint.v.4.n", undefined, 3);
    expect(() => listing.deliver("checkpoint.v.5.n", undefined, 3)).toThrow(
      expect.objectContaining({ code: ErrorCode.Unavailable }),
    );
    const caughtUp = new KeyListing(2, 3);
    for (let index = 0; index < 5; index++) caughtUp.deliver(`c.${index}`, undefined, 1);
    caughtUp.deliver("c.5", undefined, 0);
    expect(caughtUp.done).toBe(true);
    expect(caughtUp.keys()).toHaveLength(6);
  });

  test("asks for at most the batch size and never more than is pending", () => {
    const listing = new KeyListing(1000);
    expect(listing.nextBatch(256)).toBe(256);
    listing.deliver("sled.a", undefined, 2);
    expect(listing.nextBatch(256)).toBe(2);
  });
});

test("the listing consumer is in memory, unacknowledged, headers only, and expires", () => {
  expect(keyListingConsumerConfig("ballast_keys_x", "$KV.ballast-control.volume.>")).toEqual({
    name: "ballast_keys_x",
    filter_subject: "$KV.ballast-control.volume.>",
    deliver_policy: "last_per_subject",
    ack_policy: "none",
    headers_only: true,
    mem_storage: true,
    num_replicas: 1,
    max_deliver: 1,
    inactive_threshold: keyListingInactiveMs * 1_000_000,
  });
});

describe("a listing whose fetch never ends", () => {
  // A fake bucket (named so): the consumer's fetch yields nothing and never ends until it
  // is stopped, as nats.js's does while NATS is away (it watches no heartbeat while
  // disconnected, and retries the consumer's info on reconnect for as long as the
  // connection lives).
  function hangingBucket() {
    const deleted: string[] = [];
    let stoppedWith: Error | undefined;
    const bucket = {
      stream: "KV_fake",
      prefixLen: 0,
      validateSearchKey: () => undefined,
      encodeKey: (key: string) => key,
      decodeKey: (key: string) => key,
      fullKeyName: (key: string) => `$KV.fake.${key}`,
      jsm: {
        consumers: {
          add: async (_stream: string, config: { name: string }) => ({
            name: config.name,
            num_pending: 3,
          }),
          delete: async (_stream: string, name: string) => {
            deleted.push(name);
            return true;
          },
        },
      },
      js: {
        consumers: {
          getConsumerFromInfo: () => ({
            fetch: async () => {
              let wake: (() => void) | undefined;
              return {
                stop(error?: Error) {
                  stoppedWith = error;
                  wake?.();
                },
                async *[Symbol.asyncIterator]() {
                  await new Promise<void>((resolve) => {
                    wake = resolve;
                  });
                  if (stoppedWith !== undefined) throw stoppedWith;
                },
              };
            },
          }),
        },
      },
    };
    return { bucket, deleted, stopped: () => stoppedWith };
  }

  test("fails Unavailable after its guard, and removes its consumer", async () => {
    const { bucket, deleted, stopped } = hangingBucket();
    const fetchMs = 20;
    const startedMs = Date.now();
    const listing = listKeys(
      bucket as never,
      "volume.>",
      { warn: () => undefined },
      {
        batchMax: 8,
        fetchMs,
      },
    );
    await expect(listing).rejects.toMatchObject({ code: ErrorCode.Unavailable });
    expect(Date.now() - startedMs).toBeGreaterThanOrEqual(fetchGuardMs(fetchMs) - 5);
    expect(stopped()).toBeInstanceOf(Error);
    expect(deleted).toHaveLength(1);
  });
});
