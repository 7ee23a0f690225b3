// OpenTelemetry for Ballast. There is no NATS instrumentation package, so the W3C trace
// context is carried by hand: the sender injects `traceparent` (and `tracestate`) into
// the NATS message headers, the receiver extracts it and parents its span on it. Spans
// are exported by OTLP/HTTP when an endpoint is configured (OTEL_EXPORTER_OTLP_ENDPOINT
// or --otlp-endpoint) and OTEL_TRACES_EXPORTER is not "none". Without an exporter there
// is no tracer at all (`Tracing.tracer` is undefined) and every traced path checks for
// it first: no span object, no context switch, no header is made, so tracing off costs
// the write path one comparison per hop. Sampling follows the standard
// OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG variables (the SDK reads them; the
// default, parentbased_always_on, keeps every trace a sampled parent started).
//
// Why not @opentelemetry/sdk-node: at the version matching the pinned OTel packages
// (0.223.0) it pulls in 149 packages (gRPC and protobuf exporters, install scripts) and a
// second copy of @opentelemetry/core and resources at another patch version; the pieces
// used here (the Node tracer provider, the OTLP/HTTP exporter, and for metrics the
// Prometheus exporter with sdk-metrics, see metrics.ts) are what it would assemble.

import {
  type Context,
  context,
  type Link,
  propagation,
  ROOT_CONTEXT,
  type Span,
  type SpanContext,
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
  /** Undefined when no exporter is configured: callers then make no spans at all. */
  tracer: Tracer | undefined;
  /** Exports what is buffered and stops; call once on shutdown. */
  shutdown(): Promise<void>;
}

let registered = false;

/** Whether spans go anywhere: an OTLP endpoint is given and the exporter is not "none". */
export function tracingConfigured(
  otlpEndpoint: string | undefined,
  env: Readonly<Record<string, string | undefined>> = process.env,
): boolean {
  const exporters = (env.OTEL_TRACES_EXPORTER ?? "otlp").split(",").map((one) => one.trim());
  if (exporters.includes("none") || !exporters.includes("otlp")) return false;
  return otlpEndpoint !== undefined && otlpEndpoint !== "";
}

export function startTracing(options: TracingOptions): Tracing {
  if (!tracingConfigured(options.otlpEndpoint) || options.otlpEndpoint === undefined) {
    return { tracer: undefined, shutdown: async () => undefined };
  }
  const url = new URL("v1/traces", ensureSlash(options.otlpEndpoint)).toString();
  const spanProcessors: SpanProcessor[] = [
    new BatchSpanProcessor(new OTLPTraceExporter({ url }), { scheduledDelayMillis: 500 }),
  ];
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
  tracer: Tracer | undefined,
  name: string,
  options: { kind: SpanKind; parent?: Context; attributes?: Record<string, string | number> },
  work: (span: Span | undefined) => Promise<T>,
): Promise<T> {
  if (tracer === undefined) return work(undefined);
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

/** The span context of the active span, if any (to carry across a batching boundary). */
export function activeSpanContext(): SpanContext | undefined {
  return trace.getActiveSpan()?.spanContext();
}

/** A context whose parent is the given span context (or the root when undefined). */
export function contextOfSpan(spanContext: SpanContext | undefined): Context {
  return spanContext === undefined ? ROOT_CONTEXT : trace.setSpanContext(ROOT_CONTEXT, spanContext);
}

export type { Context, Link, Span, SpanContext, Tracer };
export { context as traceContext, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace };
