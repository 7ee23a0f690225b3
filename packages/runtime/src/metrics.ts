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
//
// Series that go: the SDK keeps every attribute set an instrument ever saw, for the life
// of the process, when its reader is cumulative (Prometheus's is): a sync instrument's
// in its cumulative totals, an observable one's in the same totals plus a memo of the
// last value observed, still exported after the callback stops observing it. A series
// per volume would so outlive the volume in memory and in every scrape. Such series come
// instead from `meterGroupsOf(meter).acquire(key)` (key: the volume): a meter of their
// own, aggregated outside the SDK and read at each scrape through a MetricProducer
// handed to the exporter (meter-groups.ts), whose series all go, memory and export,
// with the last `release(key)`. Metrics off, or a meter with no groups (a test's own),
// the groups give the meter itself. Their gauges also escape a limit the SDK's
// observable instruments reach with age: their memo holds at most 2000 attribute sets
// ever seen, and a set observed past that is reported as one `otel_metric_overflow`
// series (a head node's replica gauges, a set per volume, partition and role, would
// have lost every new replica so after enough of them).

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
 * Meters for series that go together (all of one volume's): `acquire(key)` gives the
 * key's meter, made on first use, and counts one holder; the last `release(key)` drops
 * the meter and every series it made, from memory and from the next scrape. A key
 * acquired again afterwards starts afresh (Prometheus reads the counters' restart as a
 * reset). Instruments are made per meter: make them through `perMeter`, not once.
 */
export interface MeterGroups {
  acquire(key: string): Meter;
  /** Undoes one `acquire(key)`; a key not held is ignored. */
  release(key: string): void;
}

const groupsByMeter = new WeakMap<Meter, MeterGroups>();

/** Makes `groups` the ones `meterGroupsOf(meter)` finds (telemetry.ts). */
export function registerMeterGroups(meter: Meter, groups: MeterGroups): void {
  groupsByMeter.set(meter, groups);
}

/**
 * The groups of a service's meter; for a meter without (metrics off, a test's own
 * meter), groups that give `meter` itself, whose series stay as that meter keeps them.
 */
export function meterGroupsOf(meter: Meter): MeterGroups {
  return (
    groupsByMeter.get(meter) ?? {
      acquire: () => meter,
      release: () => undefined,
    }
  );
}

/**
 * `make` once per meter: the function returned gives what `make` made for a meter the
 * first time it was asked for that meter, kept as long as the meter lives (a WeakMap).
 * Instruments are made per meter (a meter group's series go when its meter is dropped),
 * so the services' instrument sets are made through this, never once per process.
 */
export function perMeter<T extends object>(make: (meter: Meter) => T): (meter: Meter) => T {
  const made = new WeakMap<Meter, T>();
  return (meter) => {
    const known = made.get(meter);
    if (known !== undefined) return known;
    const fresh = make(meter);
    made.set(meter, fresh);
    return fresh;
  };
}

/**
 * The meter of a service, or the no-op one for a stand-in that has none (the shells'
 * scenario tests pass a fake service).
 */
export function meterOf(service: { readonly meter?: Meter | undefined }): Meter {
  return service.meter ?? noopMeter;
}
