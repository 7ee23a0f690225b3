// Metrics for Ballast: each service serves the Prometheus text format on its own port
// (--metrics-port / BALLAST_METRICS_PORT, on 127.0.0.1 unless --metrics-host says
// otherwise; the endpoint and the SDK are started in telemetry.ts). The instruments are
// OpenTelemetry's (the `Meter` of @opentelemetry/api); the Node SDK's metrics
// aggregate them and @opentelemetry/exporter-prometheus renders them when Prometheus
// scrapes, so a scrape costs the service one rendering and the
// write path one counter add per instrument.
//
// Off (port 0, the default outside `ballast up` and compose) there is no SDK and no
// server: the meter is the API's no-op one, whose instruments do nothing.
//
// Names follow Prometheus conventions: the exporter adds `_total` to counters and the
// unit suffix it is given (`_bytes`, `_seconds`). Latencies are histograms in seconds.

import { createNoopMeter, type Meter } from "@opentelemetry/api";

export type {
  Counter,
  Histogram,
  Meter,
  ObservableResult,
  UpDownCounter,
} from "@opentelemetry/api";

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
