// A minimal OTLP/HTTP trace receiver on loopback for tests: services export to it as
// they would to Jaeger's collector, and the test reads the spans back. It accepts the
// JSON encoding, which is what @opentelemetry/exporter-trace-otlp-http sends.

import { createServer, type Server } from "node:http";

export interface ReceivedSpan {
  service: string;
  instance: string;
  name: string;
  traceId: string;
  spanId: string;
  parentSpanId: string;
  kind: number;
  /** The span contexts this span links to (a batch's other requests, a flush's writes). */
  links: { traceId: string; spanId: string }[];
}

interface OtlpAttribute {
  key: string;
  value: { stringValue?: string };
}

interface OtlpExport {
  resourceSpans?: {
    resource?: { attributes?: OtlpAttribute[] };
    scopeSpans?: {
      spans?: {
        name: string;
        traceId: string;
        spanId: string;
        parentSpanId?: string;
        kind: number;
        links?: { traceId: string; spanId: string }[];
      }[];
    }[];
  }[];
}

export async function startOtlpReceiver() {
  const spans: ReceivedSpan[] = [];
  const server: Server = createServer((request, response) => {
    const parts: Buffer[] = [];
    request.on("data", (part: Buffer) => parts.push(part));
    request.on("end", () => {
      if (request.url === "/v1/traces") {
        const body = JSON.parse(Buffer.concat(parts).toString("utf8")) as OtlpExport;
        for (const resourceSpans of body.resourceSpans ?? []) {
          const attribute = (key: string) =>
            resourceSpans.resource?.attributes?.find((a) => a.key === key)?.value.stringValue ?? "";
          for (const scope of resourceSpans.scopeSpans ?? []) {
            for (const span of scope.spans ?? []) {
              spans.push({
                service: attribute("service.name"),
                instance: attribute("service.instance.id"),
                name: span.name,
                traceId: span.traceId,
                spanId: span.spanId,
                parentSpanId: span.parentSpanId ?? "",
                kind: span.kind,
                links: (span.links ?? []).map((link) => ({
                  traceId: link.traceId,
                  spanId: link.spanId,
                })),
              });
            }
          }
        }
      }
      response.writeHead(200, { "content-type": "application/json" });
      response.end("{}");
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  const port = typeof address === "object" && address !== null ? address.port : 0;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    spans,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
