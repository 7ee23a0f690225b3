// Meter groups (metrics.ts) as a MetricProducer the Prometheus exporter reads at each
// scrape (the SDK's `metricProducers`, marked experimental in 2.x): each key's meter
// aggregates its own instruments here, cumulatively, and a released key's meter is
// dropped whole, its series with it. Loaded only with metrics on (telemetry.ts).
//
// Why not a MeterProvider per key: it works (the SDK's aggregation, dropped with the
// provider), but every instrument of every provider is its own storage, collected and
// merged at each scrape with fresh maps: 1000 volumes of a head node's 6 instruments
// took some 110 ms of CPU per scrape, mostly garbage collection, and 17 KiB each. Here a
// scrape walks the series and makes one data point each: some 7 ms for those 1000
// volumes (the SDK, all of them in one meter: 1-2 ms), about 7 KiB per volume held; a
// record costs what the SDK's does (an attribute key, a map lookup, an add).
//
// What the groups' meters offer: counters, up-down counters and histograms (cumulative,
// as the Prometheus exporter reads them; histograms with the process's buckets, as the
// SDK's view gives them: latencyBucketsSeconds for `*_seconds`, the SDK's default
// buckets otherwise) and observable gauges (called at each scrape, nothing kept between
// scrapes; what one observes is all it reports). The rest of the Meter interface (sync gauges, observable counters, batch
// callbacks) is the no-op meter's: nothing here uses it; add it here before using it.
// Per key, each metric keeps at most `seriesPerInstrumentMax` attribute sets, as the SDK
// bounds an instrument: more go uncounted, with one warning.

import {
  type Attributes,
  type BatchObservableCallback,
  type Counter,
  createNoopMeter,
  diag,
  type Histogram,
  type HrTime,
  type Meter,
  type MetricOptions,
  type Observable,
  type ObservableCallback,
  type ObservableCounter,
  type ObservableGauge,
  type ObservableResult,
  type ObservableUpDownCounter,
  type UpDownCounter,
  ValueType,
} from "@opentelemetry/api";
import type {
  AggregationTemporality,
  CollectionResult,
  DataPoint,
  DataPointType,
  MetricData,
  MetricDescriptor,
  MetricProducer,
} from "@opentelemetry/sdk-metrics";
import type { MeterGroups } from "./metrics.ts";
import { latencyBucketsSeconds } from "./metrics.ts";

/** The SDK's default explicit buckets, for histograms not named `*_seconds`. */
const defaultBoundaries = [0, 5, 10, 25, 50, 75, 100, 250, 500, 750, 1000, 2500, 5000, 7500, 10000];
/** Attribute sets one metric of one key may hold (the SDK's default cardinality limit). */
export const seriesPerInstrumentMax = 2000;

/** The SDK's enums this module needs, from the package loaded by telemetry.ts. */
export interface SdkEnums {
  DataPointType: typeof DataPointType;
  AggregationTemporality: typeof AggregationTemporality;
}

function hrNow(): HrTime {
  const ms = performance.timeOrigin + performance.now();
  const seconds = Math.floor(ms / 1000);
  return [seconds, Math.round((ms - seconds * 1000) * 1e6)];
}

/** A key for an attribute set that does not depend on the order its keys were given in. */
function keyOf(attributes: Attributes): string {
  const names = Object.keys(attributes);
  if (names.length < 2) return JSON.stringify(attributes);
  names.sort();
  let key = "";
  for (const name of names) key += `${JSON.stringify(name)}:${JSON.stringify(attributes[name])},`;
  return key;
}

interface Series<V> {
  readonly attributes: Attributes;
  readonly startTime: HrTime;
  value: V;
}

interface HistogramValue {
  counts: number[];
  sum: number;
  count: number;
  min: number;
  max: number;
}

/** One instrument of one key's meter: its series, by attribute set. */
abstract class Instrument<V> {
  readonly series = new Map<string, Series<V>>();
  #warned = false;

  constructor(
    readonly name: string,
    readonly options: MetricOptions,
  ) {}

  /** The series of `attributes`, made on first use; undefined past the limit. */
  protected seriesOf(attributes: Attributes, initial: () => V): Series<V> | undefined {
    const key = keyOf(attributes);
    let series = this.series.get(key);
    if (series === undefined) {
      if (this.series.size >= seriesPerInstrumentMax) {
        if (!this.#warned) diag.warn(`${this.name}: over ${seriesPerInstrumentMax} series`);
        this.#warned = true;
        return undefined;
      }
      series = { attributes: { ...attributes }, startTime: hrNow(), value: initial() };
      this.series.set(key, series);
    }
    return series;
  }
}

class Sum extends Instrument<number> implements Counter, UpDownCounter {
  constructor(
    name: string,
    options: MetricOptions,
    readonly monotonic: boolean,
  ) {
    super(name, options);
  }

  add(value: number, attributes: Attributes = {}): void {
    if (Number.isNaN(value) || (this.monotonic && value < 0)) return; // as the SDK drops them
    const series = this.seriesOf(attributes, () => 0);
    if (series !== undefined) series.value += value;
  }
}

class ExplicitHistogram extends Instrument<HistogramValue> implements Histogram {
  readonly boundaries: readonly number[];

  constructor(name: string, options: MetricOptions) {
    super(name, options);
    this.boundaries =
      options.advice?.explicitBucketBoundaries ??
      (name.endsWith("_seconds") ? latencyBucketsSeconds : defaultBoundaries);
  }

  record(value: number, attributes: Attributes = {}): void {
    if (Number.isNaN(value)) return;
    const series = this.seriesOf(attributes, () => ({
      counts: new Array<number>(this.boundaries.length + 1).fill(0),
      sum: 0,
      count: 0,
      min: Number.POSITIVE_INFINITY,
      max: Number.NEGATIVE_INFINITY,
    }));
    if (series === undefined) return;
    const histogram = series.value;
    // Buckets are (previous boundary, boundary]: the first boundary at or above.
    let bucket = 0;
    while (bucket < this.boundaries.length && value > (this.boundaries[bucket] as number)) bucket++;
    histogram.counts[bucket] = (histogram.counts[bucket] ?? 0) + 1;
    histogram.sum += value;
    histogram.count += 1;
    if (value < histogram.min) histogram.min = value;
    if (value > histogram.max) histogram.max = value;
  }
}

class Gauge implements ObservableGauge {
  readonly callbacks: ObservableCallback[] = [];

  constructor(
    readonly name: string,
    readonly options: MetricOptions,
  ) {}

  addCallback(callback: ObservableCallback): void {
    if (!this.callbacks.includes(callback)) this.callbacks.push(callback);
  }

  removeCallback(callback: ObservableCallback): void {
    const at = this.callbacks.indexOf(callback);
    if (at >= 0) this.callbacks.splice(at, 1);
  }
}

/** One key's meter: its instruments by name (made once per name, as the SDK's are). */
class GroupMeter implements Meter {
  readonly instruments = new Map<string, Sum | ExplicitHistogram | Gauge>();
  readonly #noop = createNoopMeter();

  #made<T extends Sum | ExplicitHistogram | Gauge>(
    name: string,
    kind: abstract new (...args: never[]) => T,
    make: () => T,
  ): T {
    const known = this.instruments.get(name);
    if (known instanceof kind) return known;
    if (known !== undefined) diag.warn(`${name}: made again as another kind of instrument`);
    const made = make();
    this.instruments.set(name, made);
    return made;
  }

  createCounter(name: string, options: MetricOptions = {}): Counter {
    return this.#made(name, Sum, () => new Sum(name, options, true));
  }

  createUpDownCounter(name: string, options: MetricOptions = {}): UpDownCounter {
    return this.#made(name, Sum, () => new Sum(name, options, false));
  }

  createHistogram(name: string, options: MetricOptions = {}): Histogram {
    return this.#made(name, ExplicitHistogram, () => new ExplicitHistogram(name, options));
  }

  createObservableGauge(name: string, options: MetricOptions = {}): ObservableGauge {
    return this.#made(name, Gauge, () => new Gauge(name, options));
  }

  // Not offered in groups (module header): the no-op meter's.
  createGauge(name: string, options?: MetricOptions) {
    return this.#noop.createGauge(name, options);
  }
  createObservableCounter(name: string, options?: MetricOptions): ObservableCounter {
    return this.#noop.createObservableCounter(name, options);
  }
  createObservableUpDownCounter(name: string, options?: MetricOptions): ObservableUpDownCounter {
    return this.#noop.createObservableUpDownCounter(name, options);
  }
  addBatchObservableCallback(callback: BatchObservableCallback, observables: Observable[]): void {
    this.#noop.addBatchObservableCallback(callback, observables);
  }
  removeBatchObservableCallback(
    callback: BatchObservableCallback,
    observables: Observable[],
  ): void {
    this.#noop.removeBatchObservableCallback(callback, observables);
  }
}

/** Meter groups whose series the Prometheus exporter reads at each scrape. */
export class ProducedMeterGroups implements MeterGroups, MetricProducer {
  readonly #groups = new Map<string, { meter: GroupMeter; holders: number }>();

  constructor(
    private readonly sdk: SdkEnums,
    /** The scope the series are reported in: the process meter's. */
    private readonly scope: { name: string; version: string },
    /** Any: the reader reports the SDK's resource, not a producer's (MetricReader.collect). */
    private readonly resource: CollectionResult["resourceMetrics"]["resource"],
  ) {}

  acquire(key: string): Meter {
    let group = this.#groups.get(key);
    if (group === undefined) {
      group = { meter: new GroupMeter(), holders: 0 };
      this.#groups.set(key, group);
    }
    group.holders += 1;
    return group.meter;
  }

  release(key: string): void {
    const group = this.#groups.get(key);
    if (group === undefined) return;
    group.holders -= 1;
    if (group.holders <= 0) this.#groups.delete(key);
  }

  /** Keys held now. */
  get keys(): string[] {
    return [...this.#groups.keys()];
  }

  /** Every key's series, one metric per name (each key's series its data points). */
  async collect(): Promise<CollectionResult> {
    const { DataPointType, AggregationTemporality } = this.sdk;
    const endTime = hrNow();
    const byName = new Map<string, MetricData>();
    const errors: unknown[] = [];
    for (const { meter } of this.#groups.values()) {
      for (const instrument of meter.instruments.values()) {
        let points: DataPoint<unknown>[];
        try {
          points =
            instrument instanceof Gauge
              ? await observed(instrument, endTime)
              : pointsOf(instrument, endTime);
        } catch (error) {
          errors.push(error);
          continue;
        }
        if (points.length === 0) continue;
        const known = byName.get(instrument.name);
        if (known !== undefined) {
          (known.dataPoints as DataPoint<unknown>[]).push(...points);
          continue;
        }
        const common = {
          descriptor: descriptorOf(instrument),
          aggregationTemporality: AggregationTemporality.CUMULATIVE,
        };
        byName.set(
          instrument.name,
          (instrument instanceof Sum
            ? {
                ...common,
                dataPointType: DataPointType.SUM,
                isMonotonic: instrument.monotonic,
                dataPoints: points,
              }
            : instrument instanceof ExplicitHistogram
              ? { ...common, dataPointType: DataPointType.HISTOGRAM, dataPoints: points }
              : {
                  ...common,
                  dataPointType: DataPointType.GAUGE,
                  dataPoints: points,
                }) as MetricData,
        );
      }
    }
    return {
      resourceMetrics: {
        resource: this.resource,
        scopeMetrics:
          byName.size === 0 ? [] : [{ scope: this.scope, metrics: [...byName.values()] }],
      },
      errors,
    };
  }
}

function descriptorOf(instrument: Sum | ExplicitHistogram | Gauge): MetricDescriptor {
  return {
    name: instrument.name,
    description: instrument.options.description ?? "",
    unit: instrument.options.unit ?? "",
    valueType: instrument.options.valueType ?? ValueType.DOUBLE,
  };
}

/** What a gauge's callbacks observe now; nothing of it is kept. */
async function observed(gauge: Gauge, endTime: HrTime): Promise<DataPoint<number>[]> {
  const points = new Map<string, DataPoint<number>>();
  const result: ObservableResult = {
    observe(value: number, attributes: Attributes = {}) {
      if (Number.isNaN(value)) return;
      points.set(keyOf(attributes), {
        attributes: { ...attributes },
        startTime: endTime,
        endTime,
        value,
      });
    },
  };
  for (const callback of gauge.callbacks) await callback(result);
  return [...points.values()];
}

/** A sum's or a histogram's data points now: copies, so that later records change none. */
function pointsOf(instrument: Sum | ExplicitHistogram, endTime: HrTime): DataPoint<unknown>[] {
  const points: DataPoint<unknown>[] = [];
  if (instrument instanceof Sum) {
    for (const series of instrument.series.values()) {
      points.push({ ...series, endTime, value: series.value });
    }
    return points;
  }
  for (const series of instrument.series.values()) {
    const { counts, sum, count, min, max } = series.value;
    points.push({
      attributes: series.attributes,
      startTime: series.startTime,
      endTime,
      value: {
        buckets: { boundaries: [...instrument.boundaries], counts: [...counts] },
        sum,
        count,
        ...(count > 0 ? { min, max } : {}),
      },
    });
  }
  return points;
}
