// A service's info reports its uptime on the monotonic clock. Unit test on a fake bus
// (named as such below) and vitest's fake Date: only the wall clock is moved.
//
// Uptime was the wall clock now less the wall clock at start: a clock stepped back
// (NTP, an operator) made it negative, the schema of `node.info.v1` refused the reply,
// and whatever asked (the status probe, a snapshot rollback asking a gateway whether
// it has the volume open) failed.

import { resultSchemas } from "@ballast/protocol";
import { afterEach, expect, test, vi } from "vitest";
import type { Bus } from "../src/bus.ts";
import { createLogger } from "../src/logger.ts";
import { Service } from "../src/service.ts";

afterEach(() => {
  vi.useRealTimers();
});

test("uptime stays a whole number of milliseconds at or above zero when the wall clock steps back", () => {
  vi.useFakeTimers({ toFake: ["Date"] });
  vi.setSystemTime(new Date("2026-11-30T12:00:00Z"));
  // A fake of the bus: info() asks it only for its links' figures.
  const bus = { connection: {}, linkStats: () => ({ scopes: [] }) } as unknown as Bus;
  const service = new Service({
    kind: "sled",
    nodeId: "sled-1",
    bus,
    tracer: undefined,
    logger: createLogger({ service: "sled", nodeId: "sled-1", level: "silent" }),
    heartbeatIntervalMs: 1000,
  });
  vi.setSystemTime(new Date("2026-11-30T11:00:00Z"));
  const info = service.info();
  expect(info.uptimeMs).toBeGreaterThanOrEqual(0);
  expect(Number.isSafeInteger(info.uptimeMs)).toBe(true);
  expect(resultSchemas["node.info.v1"].safeParse(info).success).toBe(true);
});
