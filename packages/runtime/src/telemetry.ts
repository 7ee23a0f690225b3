// The OpenTelemetry Node SDK for a Ballast process: traces by OTLP/HTTP and metrics on a
// Prometheus endpoint, both from one `NodeSDK` (@opentelemetry/sdk-node), which owns the
// tracer and meter providers, the context manager, the propagator (OTEL_PROPAGATORS,
// W3C trace context by default), the sampler (OTEL_TRACES_SAMPLER and
// OTEL_TRACES_SAMPLER_ARG; default parentbased_always_on), the batch span processor
// (OTEL_BSP_*), and the resource (OTEL_RESOURCE_ATTRIBUTES plus the service's name,
// version and node id).
//
// Model: one SDK per process. It registers the OpenTelemetry API's globals, which allow
// one registration each; a second start while one runs is a programming error and
// throws. Shutdown flushes what is buffered and unregisters the globals, so a process
// (a test) may start again afterwards.
//
// Off costs nothing: with no exporter configured (no OTLP endpoint, or
// OTEL_TRACES_EXPORTER=none) and no metrics port, no SDK is made at all: the tracer is
// undefined, so every traced path makes no span, no context switch and no header (one
// comparison per hop), and the meter is the API's no-op one. Not even the SDK's packages
// are loaded then (sdkPackages): they are a third of a process's start-up. With metrics
// on and tracing off, the SDK has no span processor and registers no tracer provider: the
// tracer is still undefined.
//
// Failure model: a taken metrics port fails the start (before the SDK starts) with the
// listen error, so the service exits with a clear message; an unreachable OTLP receiver
// loses spans (the exporter retries and drops), never blocks the write path.

import { createServer, type Server } from "node:http";
import { createRequire } from "node:module";
import {
  context,
  createNoopMeter,
  diag,
  type Meter,
  metrics,
  propagation,
  type Tracer,
  trace,
} from "@opentelemetry/api";
import type { PrometheusExporter } from "@opentelemetry/exporter-prometheus";
import type { NodeSDK } from "@opentelemetry/sdk-node";
import { ATTR_SERVICE_VERSION } from "@opentelemetry/semantic-conventions";
import { ballastVersion } from "./constants.ts";
import { ProducedMeterGroups } from "./meter-groups.ts";
import { latencyBucketsSeconds, registerMeterGroups } from "./metrics.ts";

export interface TelemetryOptions {
  /** e.g. "ballast-sled"; Jaeger groups spans by this, Prometheus labels by it. */
  serviceName: string;
  /** The node id, recorded as service.instance.id. */
  instanceId: string;
  /** Base URL of an OTLP/HTTP receiver, e.g. http://127.0.0.1:4318; unset to trace nothing. */
  otlpEndpoint?: string | undefined;
  /** TCP port of the Prometheus endpoint; 0 or unset = no metrics. */
  metricsPort?: number | undefined;
  /** Address the metrics endpoint binds; 127.0.0.1 unless given. */
  metricsHost?: string | undefined;
  /**
   * Told of the metrics server's errors once it listens (an accept that fails for want of
   * file descriptors, say). Without a listener such an error would end the process: a
   * scrape endpoint must never take a storage service down with it.
   */
  onMetricsError?: ((error: Error) => void) | undefined;
}

export interface Telemetry {
  /** Undefined when no trace exporter is configured: callers then make no spans at all. */
  tracer: Tracer | undefined;
  /** The process's meter; the API's no-op one when metrics are off. */
  meter: Meter;
  /** Where Prometheus scrapes, e.g. http://127.0.0.1:9464/metrics; undefined when off. */
  metricsUrl: string | undefined;
  /** Exports what is buffered, stops the endpoint and the SDK; call once on shutdown. */
  shutdown(): Promise<void>;
}

/**
 * The SDK's packages, loaded on the first start rather than at import: they are about a
 * third of a Ballast process's start-up CPU (some 0.3 s of 1 s), which a process with
 * telemetry off (every command, and every service with no metrics port and no OTLP
 * endpoint, as in the tests' clusters) never needs. Loaded with require so that the
 * starts stay synchronous (startTracing is); their main entries are CommonJS, the same
 * files an import of them loads.
 */
const requireSdk = createRequire(import.meta.url);
function sdkPackages() {
  return {
    prometheus: requireSdk(
      "@opentelemetry/exporter-prometheus",
    ) as typeof import("@opentelemetry/exporter-prometheus"),
    otlp: requireSdk(
      "@opentelemetry/exporter-trace-otlp-http",
    ) as typeof import("@opentelemetry/exporter-trace-otlp-http"),
    resources: requireSdk("@opentelemetry/resources") as typeof import("@opentelemetry/resources"),
    metrics: requireSdk(
      "@opentelemetry/sdk-metrics",
    ) as typeof import("@opentelemetry/sdk-metrics"),
    node: requireSdk("@opentelemetry/sdk-node") as typeof import("@opentelemetry/sdk-node"),
  };
}

/** The running SDK of this process, if any (the API's globals allow one). */
let running: NodeSDK | undefined;

/** Whether spans go anywhere: an OTLP endpoint is given and the exporter is not "none". */
export function tracingConfigured(
  otlpEndpoint: string | undefined,
  env: Readonly<Record<string, string | undefined>> = process.env,
): boolean {
  if (/^true$/i.test(env.OTEL_SDK_DISABLED?.trim() ?? "")) return false;
  const exporters = (env.OTEL_TRACES_EXPORTER ?? "otlp").split(",").map((one) => one.trim());
  if (exporters.includes("none") || !exporters.includes("otlp")) return false;
  return otlpEndpoint !== undefined && otlpEndpoint !== "";
}

const off: Telemetry = {
  tracer: undefined,
  meter: createNoopMeter(),
  metricsUrl: undefined,
  shutdown: async () => undefined,
};

/** Traces only (commands and test clients): synchronous, no metrics endpoint. */
export function startTracing(
  options: Omit<TelemetryOptions, "metricsPort" | "metricsHost">,
): Telemetry {
  if (!tracingConfigured(options.otlpEndpoint)) return off;
  return startSdk(options, undefined);
}

/** Traces and metrics of a service (run.ts). Rejects when the metrics port is taken. */
export async function startTelemetry(options: TelemetryOptions): Promise<Telemetry> {
  const metricsPort = options.metricsPort ?? 0;
  if (!tracingConfigured(options.otlpEndpoint) && metricsPort === 0) return off;
  if (metricsPort === 0) return startSdk(options, undefined);
  refuseSecondStart();
  const host = options.metricsHost ?? "127.0.0.1";
  // The exporter's own server cannot report a port taken: serve its handler from ours,
  // and listen before the SDK starts, so that a bad port fails the start cleanly.
  // Series that go with their volume come from the groups, read at each scrape.
  const sdkModules = sdkPackages();
  const groups = new ProducedMeterGroups(
    sdkModules.metrics,
    { name: "ballast", version: ballastVersion },
    sdkModules.resources.emptyResource(),
  );
  const exporter = new sdkModules.prometheus.PrometheusExporter({
    preventServerStart: true,
    metricProducers: [groups],
  });
  const server: Server = createServer((request, response) => {
    if (request.url === "/metrics" || request.url?.startsWith("/metrics?")) {
      exporter.getMetricsRequestHandler(request, response);
      return;
    }
    response.writeHead(404, { "content-type": "text/plain" });
    response.end("see /metrics\n");
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(metricsPort, host, () => {
      server.off("error", reject);
      server.on("error", (error) => options.onMetricsError?.(error));
      resolve();
    });
  });
  const address = server.address();
  const port = typeof address === "object" && address !== null ? address.port : metricsPort;
  const started = startSdk(options, exporter);
  registerMeterGroups(started.meter, groups);
  return {
    ...started,
    metricsUrl: `http://${host}:${port}/metrics`,
    async shutdown() {
      // A scraper that stopped reading mid-response would hold close() for good: its
      // connection is cut, as are idle keep-alive ones.
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
      await started.shutdown();
    },
  };
}

function refuseSecondStart(): void {
  if (running !== undefined) {
    throw new Error("OpenTelemetry is already started in this process (one SDK per process)");
  }
}

function startSdk(
  options: TelemetryOptions,
  metricReader: PrometheusExporter | undefined,
): Telemetry {
  refuseSecondStart();
  const sdkModules = sdkPackages();
  const { defaultResource, resourceFromAttributes } = sdkModules.resources;
  const { OTLPTraceExporter } = sdkModules.otlp;
  const { AggregationType } = sdkModules.metrics;
  const tracing = tracingConfigured(options.otlpEndpoint) && options.otlpEndpoint !== undefined;
  const sdk = new sdkModules.node.NodeSDK({
    serviceName: options.serviceName,
    resource: defaultResource().merge(
      resourceFromAttributes({
        [ATTR_SERVICE_VERSION]: ballastVersion,
        "service.instance.id": options.instanceId,
      }),
    ),
    // Given explicitly (not from OTEL_TRACES_EXPORTER), so that with tracing off the SDK
    // registers no tracer provider and with it on the endpoint may come from the flag;
    // the SDK wraps the exporter in a batch processor configured by OTEL_BSP_*.
    ...(tracing
      ? {
          traceExporter: new OTLPTraceExporter({
            url: new URL("v1/traces", ensureSlash(options.otlpEndpoint as string)).toString(),
          }),
        }
      : { spanProcessors: [] }),
    metricReaders: metricReader === undefined ? [] : [metricReader],
    views: [
      {
        instrumentName: "*_seconds",
        aggregation: {
          type: AggregationType.EXPLICIT_BUCKET_HISTOGRAM,
          options: { boundaries: latencyBucketsSeconds },
        },
      },
    ],
    // Logs go to pino (logger.ts), not to OTLP: no log exporter.
    logRecordProcessors: [],
  });
  sdk.start();
  running = sdk;
  return {
    tracer: tracing ? trace.getTracer("ballast", ballastVersion) : undefined,
    meter:
      metricReader === undefined ? createNoopMeter() : metrics.getMeter("ballast", ballastVersion),
    metricsUrl: undefined,
    async shutdown() {
      if (running !== sdk) return;
      await sdk.shutdown().catch((error: unknown) => diag.warn(`telemetry shutdown: ${error}`));
      trace.disable();
      metrics.disable();
      propagation.disable();
      context.disable();
      running = undefined;
    },
  };
}

function ensureSlash(url: string): string {
  return url.endsWith("/") ? url : `${url}/`;
}
