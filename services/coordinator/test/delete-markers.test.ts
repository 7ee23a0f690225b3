// The pure parts of the delete-marker cleanup (delete-markers.ts): when a run is due,
// which markers it removes, what a listing keeps of a marker, that only a ready leader
// runs it, and the control store's create over a marker removed under it. The cleanup
// on a real nats-server is test/integration/delete-markers.test.ts.

import { describe, expect, test, vi } from "vitest";
import {
  createOverRemovedMarker,
  DeleteMarkerCleanup,
  deleteMarkerCleanupDue,
  markersToRemove,
} from "../src/delete-markers.ts";
import { KeyListing } from "../src/kv-keys.ts";
import type { Tenure } from "../src/tenure.ts";

describe("deleteMarkerCleanupDue", () => {
  test("due at once when none has run, then once per interval", () => {
    expect(deleteMarkerCleanupDue(undefined, 5, 600_000)).toBe(true);
    expect(deleteMarkerCleanupDue(5, 5, 600_000)).toBe(false);
    expect(deleteMarkerCleanupDue(5, 600_004, 600_000)).toBe(false);
    expect(deleteMarkerCleanupDue(5, 600_005, 600_000)).toBe(true);
  });
});

describe("markersToRemove", () => {
  const markers = [
    { key: "volume.c", sequence: 30, timestampMs: 9_000 },
    { key: "volume.a", sequence: 10, timestampMs: 1_000 },
    { key: "purge.b", sequence: 20, timestampMs: 5_000 },
  ];

  test("takes only markers at least the age old, oldest first", () => {
    expect(markersToRemove(markers, 10_000, 5_000, 100).map((marker) => marker.key)).toEqual([
      "volume.a",
      "purge.b",
    ]);
    // Never a marker younger than the age, however long ago the last run was.
    expect(markersToRemove(markers, 10_000, 9_001, 100)).toEqual([]);
    expect(markersToRemove(markers, 10_000, 0, 100)).toHaveLength(3);
  });

  test("takes at most the limit a run", () => {
    expect(markersToRemove(markers, 10_000, 0, 2).map((marker) => marker.sequence)).toEqual([
      10, 20,
    ]);
  });
});

test("a listing keeps where each deleted key's last marker is, and none for live keys", () => {
  const listing = new KeyListing(4);
  listing.deliver("volume.a", "DEL", 3, { sequence: 4, timestampMs: 40 });
  listing.deliver("volume.b", undefined, 2, { sequence: 5, timestampMs: 50 });
  listing.deliver("volume.c", "PURGE", 1, { sequence: 6, timestampMs: 60 });
  // Created again after the listing began: live, so no marker.
  listing.deliver("volume.a", undefined, 0, { sequence: 7, timestampMs: 70 });
  expect(listing.deleteMarkers()).toEqual([{ key: "volume.c", sequence: 6, timestampMs: 60 }]);
  expect(listing.keys()).toEqual(["volume.a", "volume.b"]);
});

describe("DeleteMarkerCleanup", () => {
  const logger = { info: () => undefined, warn: () => undefined };

  test("runs only while this coordinator leads a ready tenure, once per interval", async () => {
    const runs: number[] = [];
    const store = {
      removeDeleteMarkers: async (ageMs: number) => {
        runs.push(ageMs);
        return 0;
      },
    };
    let tenure: Partial<Tenure> | undefined;
    const cleanup = new DeleteMarkerCleanup({
      store,
      tenures: { current: () => tenure as Tenure | undefined },
      logger,
      intervalMs: 60_000,
      ageMs: 3_600_000,
    });
    await cleanup.cleanIfDue();
    tenure = { ready: false };
    await cleanup.cleanIfDue();
    expect(runs).toEqual([]);
    tenure = { ready: true };
    await cleanup.cleanIfDue();
    await cleanup.cleanIfDue();
    expect(runs).toEqual([3_600_000]);
  });

  test("a run that fails is logged and the next one tries again", async () => {
    vi.useFakeTimers();
    try {
      const warned: unknown[] = [];
      let fail = true;
      let removed = 0;
      const cleanup = new DeleteMarkerCleanup({
        store: {
          removeDeleteMarkers: async () => {
            if (fail) throw new Error("stream leader moved");
            removed++;
            return 3;
          },
        },
        tenures: { current: () => ({ ready: true }) as Tenure },
        logger: { info: () => undefined, warn: (...args: unknown[]) => warned.push(args) },
        intervalMs: 1000,
      });
      await cleanup.cleanIfDue();
      expect(warned).toHaveLength(1);
      fail = false;
      vi.advanceTimersByTime(1000);
      await cleanup.cleanIfDue();
      expect(removed).toBe(1);
    } finally {
      vi.useRealTimers();
    }
  });
});

describe("createOverRemovedMarker", () => {
  const conflict = () => new Error("wrong last sequence: 7");

  test("a create refused because the marker it expected was removed meanwhile is tried again", async () => {
    let attempts = 0;
    const kv = {
      // The KV's create read marker 7 and wrote expecting it; the marker had gone.
      create: async () => {
        attempts++;
        if (attempts === 1) throw conflict();
        return 12;
      },
      get: async () => null,
    };
    expect(await createOverRemovedMarker(kv as never, "volume.v", new Uint8Array())).toBe(12);
    expect(attempts).toBe(2);
  });

  test("a key that holds a value is refused as before, and other failures pass through", async () => {
    const live = {
      create: async () => {
        throw conflict();
      },
      get: async () => ({ operation: "PUT" }),
    };
    await expect(
      createOverRemovedMarker(live as never, "volume.v", new Uint8Array()),
    ).rejects.toThrow(/wrong last sequence/);
    const down = {
      create: async () => {
        throw new Error("TIMEOUT");
      },
      get: async () => null,
    };
    await expect(
      createOverRemovedMarker(down as never, "volume.v", new Uint8Array()),
    ).rejects.toThrow("TIMEOUT");
  });
});
