// connectNats's first-connection deadline against a port nothing listens on (loopback,
// no NATS server: every attempt is refused at once).

import { createServer } from "node:net";
import { afterEach, expect, test, vi } from "vitest";
import { connectNats } from "../src/bus.ts";
import { createLogger } from "../src/logger.ts";

afterEach(() => {
  vi.restoreAllMocks();
});

/** A loopback port that was free a moment ago: connections to it are refused. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === "string") throw new Error("no port");
  return address.port;
}

test("the connect deadline is a duration: a wall clock stepped forward at start-up does not end it before the first attempt", async () => {
  const port = await closedPort();
  const logger = createLogger({ service: "test", nodeId: "test", level: "silent" });
  const warn = vi.spyOn(logger, "warn");
  // The wall clock steps an hour forward right after its first reading (where a deadline
  // on it would count from).
  const realDateNow = Date.now.bind(Date);
  let readings = 0;
  vi.spyOn(Date, "now").mockImplementation(
    () => realDateNow() + (readings++ === 0 ? 0 : 3_600_000),
  );
  const failure = await connectNats({
    servers: `nats://127.0.0.1:${port}`,
    name: "connect-deadline-test",
    access: {},
    connectTimeoutMs: 300,
    logger,
  }).then(
    () => undefined,
    (error: Error) => error,
  );
  // Attempts were made and refused (the wait was logged, the last refusal is named),
  // rather than the deadline read as passed before any attempt ("no answer").
  expect(failure?.message).toMatch(/cannot connect to NATS/);
  expect(failure?.message).not.toMatch(/no answer/);
  expect(warn).toHaveBeenCalledTimes(1);
});
