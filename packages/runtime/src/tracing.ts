// OpenTelemetry for Ballast. There is no NATS instrumentation package, so the W3C trace
// context is carried by hand: the sender injects `traceparent` (and `tracestate`) into
// the NATS message headers, the receiver extracts it and parents its span on it. Spans
// are exported by OTLP/HTTP when an endpoint is configured; without one they are still
// created (so logs carry trace ids and context still propagates) but go nowhere.

import {
  type Context,
  context,
  propagation,
  type Span,
  SpanKind,
  SpanStatusCode,
  type TextMapGetter,
  type TextMapSetter,
  type Tracer,
  trace,
} from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { BatchSpanProcessor, type SpanProcessor } from "@opentelemetry/sdk-trace-base";
import { NodeTracerProvider } from "@opentelemetry/sdk-trace-node";
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from "@opentelemetry/semantic-conventions";
import { ballastVersion } from "./constants.ts";

/** The subset of NATS message headers the propagator needs. */
export interface HeaderCarrier {
  get(key: string): string;
  set(key: string, value: string): void;
  keys(): string[];
}

const setter: TextMapSetter<HeaderCarrier> = {
  set(carrier, key, value) {
    carrier.set(key, value);
  },
};

const getter: TextMapGetter<HeaderCarrier | undefined> = {
  get(carrier, key) {
    if (carrier === undefined) return undefined;
    const value = carrier.get(key);
    return value === "" ? undefined : value;
  },
  keys(carrier) {
    return carrier === undefined ? [] : carrier.keys();
  },
};

export interface TracingOptions {
  /** e.g. "ballast-sled"; Jaeger groups spans by this. */
  serviceName: string;
  /** The node id, recorded as service.instance.id. */
  instanceId: string;
  /** Base URL of an OTLP/HTTP receiver, e.g. http://127.0.0.1:4318; unset to export nothing. */
  otlpEndpoint?: string | undefined;
}

export interface Tracing {
  tracer: Tracer;
  /** Exports what is buffered and stops; call once on shutdown. */
  shutdown(): Promise<void>;
}

let registered = false;

export function startTracing(options: TracingOptions): Tracing {
  const spanProcessors: SpanProcessor[] = [];
  if (options.otlpEndpoint !== undefined) {
    const url = new URL("v1/traces", ensureSlash(options.otlpEndpoint)).toString();
    spanProcessors.push(
      new BatchSpanProcessor(new OTLPTraceExporter({ url }), { scheduledDelayMillis: 500 }),
    );
  }
  const provider = new NodeTracerProvider({
    resource: resourceFromAttributes({
      [ATTR_SERVICE_NAME]: options.serviceName,
      [ATTR_SERVICE_VERSION]: ballastVersion,
      "service.instance.id": options.instanceId,
    }),
    spanProcessors,
  });
  // The global API allows one registration per process; a second service in the same
  // process (tests) reuses the first provider's context manager and propagator.
  if (!registered) {
    provider.register({ propagator: new W3CTraceContextPropagator() });
    registered = true;
  }
  return {
    tracer: provider.getTracer("ballast", ballastVersion),
    shutdown: () => provider.shutdown(),
  };
}

function ensureSlash(url: string): string {
  return url.endsWith("/") ? url : `${url}/`;
}

/** Writes the active (or given) context's trace headers into a NATS header set. */
export function injectTraceContext(headers: HeaderCarrier, from: Context = context.active()): void {
  propagation.inject(from, headers, setter);
}

/** Reads trace headers from an incoming message into a context to parent spans on. */
export function extractTraceContext(headers: HeaderCarrier | undefined): Context {
  return propagation.extract(context.active(), headers, getter);
}

/** Runs `work` inside a new span, ending it and recording a thrown error. */
export async function withSpan<T>(
  tracer: Tracer,
  name: string,
  options: { kind: SpanKind; parent?: Context; attributes?: Record<string, string | number> },
  work: (span: Span) => Promise<T>,
): Promise<T> {
  const parent = options.parent ?? context.active();
  const span = tracer.startSpan(
    name,
    { kind: options.kind, attributes: options.attributes ?? {} },
    parent,
  );
  try {
    return await context.with(trace.setSpan(parent, span), () => work(span));
  } catch (error) {
    span.recordException(error as Error);
    span.setStatus({ code: SpanStatusCode.ERROR, message: (error as Error).message });
    throw error;
  } finally {
    span.end();
  }
}

export { SpanKind, SpanStatusCode };
