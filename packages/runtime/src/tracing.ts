// Trace context for Ballast (the SDK is started in telemetry.ts). There is no NATS
// instrumentation package, so the W3C trace context is carried by hand: the sender
// injects `traceparent` (and `tracestate`) into the NATS message headers, the receiver
// extracts it and parents its span on it. With tracing off there is no tracer at all
// (`Telemetry.tracer` is undefined) and every traced path checks for it first: no span
// object, no context switch, no header is made, so tracing off costs the write path one
// comparison per hop. Where one message carries many requests (a flush carrying many
// writes), the span links to the requests' span contexts instead of having one parent.

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
