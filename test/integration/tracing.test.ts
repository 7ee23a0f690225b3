// One request crosses three processes (the CLI, the coordinator, a sled) and must give
// spans in each that share one trace id, parented hop by hop: the W3C trace context
// travels in NATS headers, and every service exports by OTLP.

import { afterAll, beforeAll, expect, test } from "vitest";
import { runCli } from "../support/cli.ts";
import { startTestCluster, type TestCluster, waitFor } from "../support/cluster.ts";
import { startOtlpReceiver } from "../support/otlp-receiver.ts";

let receiver: Awaited<ReturnType<typeof startOtlpReceiver>>;
let cluster: TestCluster;

beforeAll(async () => {
  receiver = await startOtlpReceiver();
  cluster = await startTestCluster({
    sleds: 1,
    env: { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint },
  });
});

afterAll(async () => {
  await cluster?.stop();
  await receiver?.close();
});

test("a status request gives spans in the CLI, the coordinator and the sled with one trace id", async () => {
  const result = await runCli(["status", "--nats", cluster.cluster.natsUrl], {
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
  });
  expect(result.code).toBe(0);

  const cliSpan = await waitFor("the CLI's span", () =>
    receiver.spans.find((s) => s.service === "ballast-cli" && s.name === "send cluster.status.v1"),
  );
  const trace = () => receiver.spans.filter((span) => span.traceId === cliSpan.traceId);
  const sledHandle = await waitFor("the sled's span in the same trace", () =>
    trace().find((s) => s.service === "ballast-sled" && s.name === "handle node.info.v1"),
  );
  const coordinatorHandle = trace().find(
    (s) => s.service === "ballast-coordinator" && s.name === "handle cluster.status.v1",
  );
  const coordinatorSend = trace().find(
    (s) =>
      s.service === "ballast-coordinator" &&
      s.name === "send node.info.v1" &&
      s.spanId === sledHandle.parentSpanId,
  );
  // Hop by hop: CLI send → coordinator handle → coordinator send → sled handle.
  expect(coordinatorHandle?.parentSpanId).toBe(cliSpan.spanId);
  expect(coordinatorSend?.parentSpanId).toBe(coordinatorHandle?.spanId);
  expect(sledHandle.instance).toBe("sled-1");
  expect(new Set(trace().map((span) => span.service))).toEqual(
    new Set(["ballast-cli", "ballast-coordinator", "ballast-sled"]),
  );
});

test("heartbeats are not traced", async () => {
  // Wait for at least one export round after the cluster has been beating for a while.
  await new Promise((resolve) => setTimeout(resolve, 1200));
  expect(receiver.spans.filter((span) => span.name.includes("heartbeat"))).toEqual([]);
});
