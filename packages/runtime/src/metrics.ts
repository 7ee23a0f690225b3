// Metrics for Ballast: each service serves the Prometheus text format on its own port
// (--metrics-port / BALLAST_METRICS_PORT, on 127.0.0.1 unless --metrics-host says
// otherwise). The instruments are OpenTelemetry's (the `Meter` of @opentelemetry/api);
// the OTel metrics SDK aggregates them and @opentelemetry/exporter-prometheus renders
// them when Prometheus scrapes, so a scrape costs the service one rendering and the
// write path one counter add per instrument.
//
// Off (port 0, the default outside `ballast up` and compose) there is no SDK and no
// server: the meter is the API's no-op one, whose instruments do nothing.
//
// Names follow Prometheus conventions: the exporter adds `_total` to counters and the
// unit suffix it is given (`_bytes`, `_seconds`). Latencies are histograms in seconds.

import { createServer, type Server } from "node:http";
import { createNoopMeter, type Meter } from "@opentelemetry/api";

export type {
  Counter,
  Histogram,
  Meter,
  ObservableResult,
  UpDownCounter,
} from "@opentelemetry/api";

import { PrometheusExporter } from "@opentelemetry/exporter-prometheus";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { AggregationType, MeterProvider } from "@opentelemetry/sdk-metrics";
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from "@opentelemetry/semantic-conventions";
import { ballastVersion } from "./constants.ts";

export interface MetricsOptions {
  /** TCP port of the Prometheus endpoint; 0 = off. */
  port: number;
  host: string;
  /** e.g. "ballast-sled", and the node id: target_info carries both. */
  serviceName: string;
  instanceId: string;
}

export interface Metrics {
  meter: Meter;
  /** Where Prometheus scrapes, e.g. http://127.0.0.1:9464/metrics; undefined when off. */
  url: string | undefined;
  shutdown(): Promise<void>;
}

/** Latency buckets in seconds: 50 µs to 10 s, for NATS round trips and fsyncs alike. */
export const latencyBucketsSeconds = [
  0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
  10,
];

const noopMeter = createNoopMeter();

/**
 * The meter of a service, or the no-op one for a stand-in that has none (the shells'
 * scenario tests pass a fake service).
 */
export function meterOf(service: { readonly meter?: Meter | undefined }): Meter {
  return service.meter ?? noopMeter;
}

export async function startMetrics(options: MetricsOptions): Promise<Metrics> {
  if (options.port === 0) {
    return { meter: createNoopMeter(), url: undefined, shutdown: async () => undefined };
  }
  // The exporter's own server cannot report a port taken: serve its handler from ours,
  // so that a bad port fails the start with a clear error.
  const exporter = new PrometheusExporter({ preventServerStart: true });
  const provider = new MeterProvider({
    resource: resourceFromAttributes({
      [ATTR_SERVICE_NAME]: options.serviceName,
      [ATTR_SERVICE_VERSION]: ballastVersion,
      "service.instance.id": options.instanceId,
    }),
    readers: [exporter],
    views: [
      {
        instrumentName: "*_seconds",
        aggregation: {
          type: AggregationType.EXPLICIT_BUCKET_HISTOGRAM,
          options: { boundaries: latencyBucketsSeconds },
        },
      },
    ],
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
    server.listen(options.port, options.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const address = server.address();
  const port = typeof address === "object" && address !== null ? address.port : options.port;
  return {
    meter: provider.getMeter("ballast", ballastVersion),
    url: `http://${options.host}:${port}/metrics`,
    async shutdown() {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await provider.shutdown().catch(() => undefined);
    },
  };
}
