// Structured logs. Every line carries the service kind and node id, and, when a span is
// active, its trace and span ids, so a log line can be found from a trace in Jaeger and
// the other way round. Services write JSON lines to stdout; the launcher sends each
// service's stdout to its own log file.

import { trace } from "@opentelemetry/api";
import { type Logger, pino } from "pino";

export type { Logger };

export interface LoggerOptions {
  service: string;
  nodeId: string;
  level?: string;
  /** Defaults to stdout (file descriptor 1). */
  destination?: number | string;
}

export function createLogger(options: LoggerOptions): Logger {
  return pino(
    {
      level: options.level ?? "info",
      base: { service: options.service, node: options.nodeId, pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      mixin() {
        const span = trace.getActiveSpan();
        if (span === undefined) return {};
        const { traceId, spanId } = span.spanContext();
        return { trace_id: traceId, span_id: spanId };
      },
    },
    pino.destination({ dest: options.destination ?? 1, sync: true }),
  );
}
