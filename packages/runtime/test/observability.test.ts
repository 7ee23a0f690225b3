// Tracing off makes no tracer (so no span objects anywhere), and loads none of the SDK
// (a third of every process's start-up); the metrics endpoint serves the Prometheus text
// of the instruments it is given.

import { spawnSync } from "node:child_process";
import { Server } from "node:http";
import { connect, createServer } from "node:net";
import { fileURLToPath } from "node:url";
import type { Meter } from "@opentelemetry/api";
import { expect, test } from "vitest";
import { meterGroupsOf, meterOf, perMeter } from "../src/metrics.ts";
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
  const metricsErrors: Error[] = [];
  const again = await startTelemetry({
    metricsPort: port,
    serviceName: "s2",
    instanceId: "i",
    onMetricsError: (error) => metricsErrors.push(error),
  });
  try {
    again.meter.createCounter("ballast_test_again").add(1);
    const text = await (await fetch(again.metricsUrl as string)).text();
    expect(text).toMatch(/^ballast_test_again_total\{[^}]*\} 1$/m);
    expect(text).toContain('service_name="s2"');
    // An error of the listening server (an accept failing with EMFILE, as node reports
    // it) goes to the caller: with no listener, emitting it threw, and in a service the
    // throw would have ended the process.
    const server = listeningServerOn(port);
    const emfile = Object.assign(new Error("accept EMFILE"), { code: "EMFILE" });
    expect(() => server.emit("error", emfile)).not.toThrow();
    expect(metricsErrors).toEqual([emfile]);
    expect((await fetch(again.metricsUrl as string)).status).toBe(200);
  } finally {
    await again.shutdown();
  }
});

test("a meter group's series, counters, histograms and gauges, go from the scrape with its last holder", async () => {
  const telemetry = await startTelemetry({
    metricsPort: await freePort(),
    serviceName: "s",
    instanceId: "i",
  });
  const scrape = async () => (await fetch(telemetry.metricsUrl as string)).text();
  try {
    const groups = meterGroupsOf(telemetry.meter);
    // Two keys' meters, each with the same instruments (as two volumes' would be).
    for (const volume of ["gone", "kept"]) {
      const meter = groups.acquire(volume);
      meter.createCounter("ballast_test_requests").add(2, { volume });
      meter.createHistogram("ballast_test_request_seconds").record(0.002, { volume });
      meter
        .createObservableGauge("ballast_test_lag")
        .addCallback((result) => result.observe(7, { volume }));
    }
    groups.acquire("gone"); // a second holder
    let text = await scrape();
    for (const volume of ["gone", "kept"]) {
      expect(text).toMatch(
        new RegExp(`^ballast_test_requests_total\\{volume="${volume}"[^}]*\\} 2$`, "m"),
      );
      expect(text).toMatch(
        new RegExp(
          `^ballast_test_request_seconds_bucket\\{volume="${volume}"[^}]*le="0.0025"\\} 1$`,
          "m",
        ),
      );
      expect(text).toMatch(new RegExp(`^ballast_test_lag\\{volume="${volume}"[^}]*\\} 7$`, "m"));
    }
    // One metadata block per metric, however many keys report it.
    expect(text.match(/^# TYPE ballast_test_requests_total /gm)).toHaveLength(1);

    groups.release("gone");
    expect(await scrape()).toContain('volume="gone"'); // one holder left
    groups.release("gone");
    text = await scrape();
    expect(text).not.toContain('volume="gone"');
    expect(text).toMatch(/^ballast_test_requests_total\{volume="kept"[^}]*\} 2$/m);

    // Acquired again, the key starts afresh.
    groups.acquire("gone").createCounter("ballast_test_requests").add(1, { volume: "gone" });
    expect(await scrape()).toMatch(/^ballast_test_requests_total\{volume="gone"[^}]*\} 1$/m);
  } finally {
    await telemetry.shutdown();
  }
});

test("without groups (metrics off, a meter of its own), the groups give the meter itself", () => {
  const meter = meterOf({});
  const groups = meterGroupsOf(meter);
  expect(groups.acquire("v")).toBe(meter);
  groups.release("v");
});

test("a group's counters, up-down counters, histograms and gauges scrape as the SDK's own do", async () => {
  const telemetry = await startTelemetry({
    metricsPort: await freePort(),
    serviceName: "s",
    instanceId: "i",
  });
  try {
    const meters = { sdk: telemetry.meter, grp: meterGroupsOf(telemetry.meter).acquire("grp") };
    for (const [tag, meter] of Object.entries(meters)) {
      const attributes = { volume: "v", kind: "write" };
      meter.createCounter(`ballast_${tag}_requests`, { description: "d" }).add(3, attributes);
      meter.createUpDownCounter(`ballast_${tag}_in_flight`).add(-2, { volume: "v" });
      const seconds = meter.createHistogram(`ballast_${tag}_request_seconds`);
      for (const value of [0.00005, 0.0001, 0.003, 0.25, 7, 20]) seconds.record(value, attributes);
      const sizes = meter.createHistogram(`ballast_${tag}_sizes`);
      for (const value of [0, 5, 6, 10_000, 20_000]) sizes.record(value, attributes);
      meter
        .createObservableGauge(`ballast_${tag}_lag`)
        .addCallback((result) => result.observe(4, { volume: "v" }));
    }
    const text = await (await fetch(telemetry.metricsUrl as string)).text();
    const linesOf = (tag: string) =>
      text
        .split("\n")
        .filter((line) => line.includes(`ballast_${tag}_`))
        .map((line) => line.replaceAll(`ballast_${tag}_`, "ballast_X_"))
        .sort();
    expect(linesOf("sdk").length).toBeGreaterThan(40);
    expect(linesOf("grp")).toEqual(linesOf("sdk"));
  } finally {
    await telemetry.shutdown();
  }
});

test("shutdown does not wait for a scraper that stopped halfway through a request", async () => {
  const telemetry = await startTelemetry({
    metricsPort: await freePort(),
    serviceName: "s",
    instanceId: "i",
  });
  const port = Number(new URL(telemetry.metricsUrl as string).port);
  const scraper = connect(port, "127.0.0.1");
  await new Promise<void>((resolve) => scraper.once("connect", () => resolve()));
  scraper.on("error", () => undefined);
  // Half a request, then silence: the server waits for the rest (its headers timeout is
  // a minute), and close() waited for the connection as long.
  scraper.write("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n");
  await new Promise((resolve) => setTimeout(resolve, 50));
  const startedMs = Date.now();
  await telemetry.shutdown();
  // Well short of the minute close() waited, however slowly a loaded machine runs this
  // (npm test runs this tier beside the integration tier).
  expect(Date.now() - startedMs).toBeLessThan(30_000);
  scraper.destroy();
});

/** The http.Server of this process listening on `port` (the telemetry keeps its own). */
function listeningServerOn(port: number): Server {
  const handles = (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles();
  const server = handles.find(
    (handle): handle is Server =>
      handle instanceof Server && (handle.address() as { port?: number } | null)?.port === port,
  );
  if (server === undefined) throw new Error(`no server listening on ${port}`);
  return server;
}

test("perMeter makes once per meter, and a meter of its own gets its own", () => {
  const made: Meter[] = [];
  const instruments = perMeter((meter) => {
    made.push(meter);
    return { counter: meter.createCounter("ballast_test_made") };
  });
  // Two meters that are distinct objects (the API's no-op meter is one shared object).
  const fakeMeter = () => ({ createCounter: () => ({ add: () => undefined }) }) as unknown as Meter;
  const first = fakeMeter();
  const second = fakeMeter();
  const once = instruments(first);
  expect(instruments(first)).toBe(once);
  const other = instruments(second);
  expect(other).not.toBe(once);
  expect(instruments(second)).toBe(other);
  expect(made).toEqual([first, second]);
});
