import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { limits } from "@ballast/protocol";
import { expect, test } from "vitest";

const root = fileURLToPath(new URL("../", import.meta.url));
const read = (path: string) => readFileSync(`${root}${path}`, "utf8");

test("the compose NATS config allows the protocol's largest message", () => {
  const match = /^max_payload:\s*(\d+)/m.exec(read("deploy/nats-server.conf"));
  expect(Number(match?.[1])).toBe(limits.natsPayloadBytesMax);
});

test("every service docker-compose starts has an entry point, and NATS and Jaeger are wired", () => {
  const compose = read("docker-compose.yml");
  const entries = [...compose.matchAll(/"(services\/[a-z]+\/src\/main\.ts)"/g)].map((m) => m[1]!);
  expect(new Set(entries)).toEqual(
    new Set([
      "services/coordinator/src/main.ts",
      "services/sled/src/main.ts",
      "services/headnode/src/main.ts",
      "services/gateway/src/main.ts",
    ]),
  );
  for (const entry of entries) expect(existsSync(`${root}${entry}`)).toBe(true);
  expect(compose).toContain("OTEL_EXPORTER_OTLP_ENDPOINT: http://jaeger:4318");
  expect(compose.match(/- "nats:\/\/nats:4222"/g)).toHaveLength(entries.length);
});
