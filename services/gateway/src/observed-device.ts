// An export's block device with traces and metrics around each NBD request. Every
// request is a new trace (a root span "nbd write" and so on: requests of a connection are
// independent, and nesting them under the connection would make one trace of hours);
// the client library's NATS requests nest under it, so one NBD write is one trace from
// here through the primary to each secondary. Metrics per export (volume): requests and
// bytes by operation, latency, and requests in flight, on the meter it is given: the
// export's meter group (gateway.ts), released with the connection, so that a volume no
// connection holds has no series left (runtime metrics.ts). Tracing off (no tracer): no
// span, no context switch.

import type { BlockDevice, OperationOptions } from "@ballast/client";
import {
  type Counter,
  type Histogram,
  type Meter,
  meterOf,
  perMeter,
  ROOT_CONTEXT,
  type Service,
  SpanKind,
  SpanStatusCode,
  trace,
  traceContext,
  type UpDownCounter,
} from "@ballast/runtime";

type Operation = "read" | "write" | "trim" | "write_zeroes" | "flush";

interface GatewayInstruments {
  requests: Counter;
  failures: Counter;
  bytes: Counter;
  seconds: Histogram;
  inflight: UpDownCounter;
}

const gatewayInstruments = perMeter(
  (meter): GatewayInstruments => ({
    requests: meter.createCounter("ballast_gateway_requests", {
      description: "NBD requests completed, by export and operation",
    }),
    failures: meter.createCounter("ballast_gateway_request_errors", {
      description: "NBD requests that failed, by export, operation and error code",
    }),
    bytes: meter.createCounter("ballast_gateway_bytes", {
      description: "bytes read and written through NBD, by export and operation",
    }),
    seconds: meter.createHistogram("ballast_gateway_request_seconds", {
      description: "NBD request latency, from the request to its completion",
    }),
    inflight: meter.createUpDownCounter("ballast_gateway_requests_in_flight", {
      description: "NBD requests started and not yet completed",
    }),
  }),
);

export class ObservedDevice implements BlockDevice {
  private readonly instruments: GatewayInstruments;

  /** `meter`: where this export's series go (the service's meter by default). */
  constructor(
    private readonly inner: BlockDevice,
    private readonly service: Service,
    meter: Meter = meterOf(service),
  ) {
    this.instruments = gatewayInstruments(meter);
  }

  get name(): string {
    return this.inner.name;
  }

  get sizeBytes(): number {
    return this.inner.sizeBytes;
  }

  get readOnly(): boolean | undefined {
    return this.inner.readOnly;
  }

  read(offset: number, length: number, options?: OperationOptions): Promise<Uint8Array> {
    return this.observe("read", offset, length, () => this.inner.read(offset, length, options));
  }

  write(offset: number, data: Uint8Array, options?: OperationOptions): Promise<void> {
    return this.observe("write", offset, data.byteLength, () =>
      this.inner.write(offset, data, options),
    );
  }

  trim(offset: number, length: number, options?: OperationOptions): Promise<void> {
    return this.observe("trim", offset, length, () => this.inner.trim(offset, length, options));
  }

  writeZeroes(offset: number, length: number, options?: OperationOptions): Promise<void> {
    return this.observe("write_zeroes", offset, length, () =>
      this.inner.writeZeroes(offset, length, options),
    );
  }

  flush(): Promise<void> {
    return this.observe("flush", 0, 0, () => this.inner.flush());
  }

  private async observe<T>(
    operation: Operation,
    offset: number,
    length: number,
    work: () => Promise<T>,
  ): Promise<T> {
    const { instruments } = this;
    const attributes = { volume: this.inner.name, operation };
    const startedMs = performance.now();
    instruments.inflight.add(1, { volume: this.inner.name });
    const tracer = this.service.tracer;
    const span = tracer?.startSpan(
      `nbd ${operation}`,
      {
        kind: SpanKind.SERVER,
        attributes: {
          "ballast.volume": this.inner.name,
          "ballast.offset": offset,
          "ballast.length": length,
        },
      },
      ROOT_CONTEXT,
    );
    try {
      const result =
        span === undefined
          ? await work()
          : await traceContext.with(trace.setSpan(ROOT_CONTEXT, span), work);
      instruments.requests.add(1, attributes);
      if (operation === "read" || operation === "write") instruments.bytes.add(length, attributes);
      return result;
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      instruments.failures.add(1, {
        ...attributes,
        code: typeof code === "string" ? code : "Internal",
      });
      span?.recordException(error as Error);
      span?.setStatus({ code: SpanStatusCode.ERROR, message: (error as Error).message });
      throw error;
    } finally {
      instruments.inflight.add(-1, { volume: this.inner.name });
      instruments.seconds.record((performance.now() - startedMs) / 1000, attributes);
      span?.end();
    }
  }
}
