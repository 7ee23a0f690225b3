// Tracing off makes no tracer (so no span objects anywhere), and the metrics endpoint
// serves the Prometheus text of the instruments it is given.

import { createServer } from "node:net";
import { expect, test } from "vitest";
import { meterOf, startMetrics } from "../src/metrics.ts";
import { startTracing, tracingConfigured } from "../src/tracing.ts";

test("without an OTLP endpoint, or with OTEL_TRACES_EXPORTER=none, there is no tracer", async () => {
  expect(startTracing({ serviceName: "t", instanceId: "t" }).tracer).toBeUndefined();
  expect(tracingConfigured(undefined, {})).toBe(false);
  expect(tracingConfigured("http://127.0.0.1:4318", {})).toBe(true);
  expect(tracingConfigured("http://127.0.0.1:4318", { OTEL_TRACES_EXPORTER: "none" })).toBe(false);
  expect(tracingConfigured("http://127.0.0.1:4318", { OTEL_TRACES_EXPORTER: "otlp" })).toBe(true);
});

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return typeof address === "object" && address !== null ? address.port : 0;
}

test("port 0 serves nothing; a port serves the instruments in Prometheus text", async () => {
  const off = await startMetrics({ port: 0, host: "127.0.0.1", serviceName: "s", instanceId: "i" });
  expect(off.url).toBeUndefined();
  expect(meterOf({})).toBeDefined();

  const port = await freePort();
  const on = await startMetrics({ port, host: "127.0.0.1", serviceName: "s", instanceId: "i" });
  try {
    expect(on.url).toBe(`http://127.0.0.1:${port}/metrics`);
    on.meter.createCounter("ballast_test_things").add(3, { volume: "v" });
    on.meter.createHistogram("ballast_test_seconds").record(0.002, { volume: "v" });
    const text = await (await fetch(on.url as string)).text();
    expect(text).toMatch(/^ballast_test_things_total\{volume="v"[^}]*\} 3$/m);
    // Latencies use the seconds buckets (metrics.ts), not the SDK's millisecond defaults.
    expect(text).toMatch(/^ballast_test_seconds_bucket\{volume="v"[^}]*le="0.0025"\} 1$/m);
    expect(text).toContain('service_name="s"');
    // A taken port fails the start (the service then exits with a clear error).
    await expect(
      startMetrics({ port, host: "127.0.0.1", serviceName: "s", instanceId: "i" }),
    ).rejects.toThrow(/EADDRINUSE/);
  } finally {
    await on.shutdown();
  }
});
