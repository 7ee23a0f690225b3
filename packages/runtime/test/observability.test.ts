// Tracing off makes no tracer (so no span objects anywhere), and loads none of the SDK
// (a third of every process's start-up); the metrics endpoint serves the Prometheus text
// of the instruments it is given.

import { spawnSync } from "node:child_process";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";
import { expect, test } from "vitest";
import { meterOf } from "../src/metrics.ts";
import { startTelemetry, startTracing, tracingConfigured } from "../src/telemetry.ts";

test("without an OTLP endpoint, or with OTEL_TRACES_EXPORTER=none, there is no tracer", async () => {
  expect(startTracing({ serviceName: "t", instanceId: "t" }).tracer).toBeUndefined();
  expect(tracingConfigured(undefined, {})).toBe(false);
  expect(tracingConfigured("http://127.0.0.1:4318", {})).toBe(true);
  expect(tracingConfigured("http://127.0.0.1:4318", { OTEL_TRACES_EXPORTER: "none" })).toBe(false);
  expect(tracingConfigured("http://127.0.0.1:4318", { OTEL_TRACES_EXPORTER: "otlp" })).toBe(true);
  expect(tracingConfigured("http://127.0.0.1:4318", { OTEL_SDK_DISABLED: "true" })).toBe(false);
});

test("a process with telemetry off never loads the SDK's packages", () => {
  // A fresh process: this test process may have loaded them already. With tracing off,
  // the start is the no-op one; the SDK's CommonJS modules would show in require.cache.
  const script = `
    import { createRequire } from "node:module";
    const { startTelemetry, startTracing } = await import(${JSON.stringify(telemetryModule)});
    startTracing({ serviceName: "t", instanceId: "t" });
    await startTelemetry({ metricsPort: 0, serviceName: "t", instanceId: "t" });
    const loaded = Object.keys(createRequire(import.meta.url).cache);
    console.log(JSON.stringify(loaded.filter((path) => /@opentelemetry[\\/]sdk-/.test(path))));
  `;
  const child = spawnSync(
    process.execPath,
    ["--import", "tsx", "--input-type=module", "-e", script],
    {
      encoding: "utf8",
      env: { ...process.env, OTEL_EXPORTER_OTLP_ENDPOINT: "" },
    },
  );
  expect(child.status, child.stderr).toBe(0);
  expect(JSON.parse(child.stdout)).toEqual([]);
});

const telemetryModule = fileURLToPath(new URL("../src/telemetry.ts", import.meta.url));

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return typeof address === "object" && address !== null ? address.port : 0;
}

test("port 0 serves nothing; a port serves the instruments in Prometheus text", async () => {
  const off = await startTelemetry({ metricsPort: 0, serviceName: "s", instanceId: "i" });
  expect(off.metricsUrl).toBeUndefined();
  expect(off.tracer).toBeUndefined();
  expect(meterOf({})).toBeDefined();

  const port = await freePort();
  const on = await startTelemetry({ metricsPort: port, serviceName: "s", instanceId: "i" });
  try {
    expect(on.metricsUrl).toBe(`http://127.0.0.1:${port}/metrics`);
    // Metrics on, tracing off: the SDK registers no tracer provider and gives no tracer.
    expect(on.tracer).toBeUndefined();
    on.meter.createCounter("ballast_test_things").add(3, { volume: "v" });
    on.meter.createHistogram("ballast_test_seconds").record(0.002, { volume: "v" });
    const text = await (await fetch(on.metricsUrl as string)).text();
    expect(text).toMatch(/^ballast_test_things_total\{volume="v"[^}]*\} 3$/m);
    // Latencies use the seconds buckets (metrics.ts), not the SDK's millisecond defaults.
    expect(text).toMatch(/^ballast_test_seconds_bucket\{volume="v"[^}]*le="0.0025"\} 1$/m);
    expect(text).toContain('service_name="s"');
    // One SDK per process: the API's globals take one registration.
    await expect(
      startTelemetry({ metricsPort: await freePort(), serviceName: "s", instanceId: "i" }),
    ).rejects.toThrow(/already started/);
  } finally {
    await on.shutdown();
  }
  // Shut down, the process may start again; a taken port fails the start (the service
  // then exits with a clear error) and leaves no SDK behind.
  const taken = createServer();
  await new Promise<void>((resolve) => taken.listen(port, "127.0.0.1", resolve));
  try {
    await expect(
      startTelemetry({ metricsPort: port, serviceName: "s", instanceId: "i" }),
    ).rejects.toThrow(/EADDRINUSE/);
  } finally {
    await new Promise<void>((resolve) => taken.close(() => resolve()));
  }
  const again = await startTelemetry({ metricsPort: port, serviceName: "s2", instanceId: "i" });
  try {
    again.meter.createCounter("ballast_test_again").add(1);
    const text = await (await fetch(again.metricsUrl as string)).text();
    expect(text).toMatch(/^ballast_test_again_total\{[^}]*\} 1$/m);
    expect(text).toContain('service_name="s2"');
  } finally {
    await again.shutdown();
  }
});
