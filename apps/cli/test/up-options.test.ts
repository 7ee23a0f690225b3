// `ballast up` checks its whole command line before it starts anything: a value a
// service would refuse at start (log level, OTLP endpoint, NATS URL) or a count that is
// not a plain number is a usage error (exit 2, as the README says), not a nats-server
// started and services that die on it.

import { describe, expect, test } from "vitest";
import { CliError, exitCodes } from "../src/errors.ts";
import { cliConstants } from "../src/index.ts";
import { upOptionsOf } from "../src/up-options.ts";

function usageError(argv: string[], env: Record<string, string> = {}): string {
  try {
    upOptionsOf(argv, env);
  } catch (error) {
    if (error instanceof CliError && error.exitCode === exitCodes.usage) return error.message;
    throw error;
  }
  throw new Error(`ballast up ${argv.join(" ")} was taken`);
}

describe("ballast up's command line", () => {
  test("the defaults", () => {
    expect(upOptionsOf([], {})).toEqual({
      dataDir: cliConstants.dataDirDefault,
      nats: undefined,
      natsCluster: 1,
      natsTls: undefined,
      natsStoreBytes: cliConstants.natsFileStoreBytesDefault,
      coordinators: cliConstants.coordinatorCountDefault,
      headNodes: cliConstants.headNodeCountDefault,
      sleds: cliConstants.sledCountDefault,
      gateways: cliConstants.gatewayCountDefault,
      nbdPort: 10_809,
      demo: false,
      otlpEndpoint: undefined,
      logLevel: undefined,
    });
  });

  test("--nats-store-max takes a size of at least the minimum", () => {
    expect(upOptionsOf(["--nats-store-max", "5GiB"], {}).natsStoreBytes).toBe(5 * 1024 ** 3);
    expect(usageError(["--nats-store-max", "1MiB"])).toMatch(
      /--nats-store-max must be at least 64MiB/,
    );
    expect(usageError(["--nats-store-max", "lots"])).toMatch(
      /--nats-store-max must be a whole number/,
    );
  });

  test("values the services would refuse are usage errors before anything starts", () => {
    expect(usageError(["--log-level", "verbose"])).toMatch(/--log-level: must be one of/);
    expect(usageError(["--otlp-endpoint", "localhost:4318"])).toMatch(/--otlp-endpoint/);
    expect(usageError([], { OTEL_EXPORTER_OTLP_ENDPOINT: "ftp://x" })).toMatch(
      /OTEL_EXPORTER_OTLP_ENDPOINT: must be http/,
    );
    expect(usageError(["--nats", "http://127.0.0.1:4222"])).toMatch(
      /--nats: .*nats:\/\/ or tls:\/\//,
    );
  });

  test("counts and ports are plain whole numbers within their bounds", () => {
    expect(usageError(["--gateways", ""])).toMatch(
      /--gateways must be a whole number from 0 to 32/,
    );
    expect(usageError(["--sleds", "0x3"])).toMatch(/--sleds must be/);
    expect(usageError(["--nbd-port", "1e4"])).toMatch(
      /--nbd-port must be a whole number from 1 to 65535/,
    );
    expect(usageError(["--nats-cluster", "6"])).toMatch(
      /--nats-cluster must be a whole number from 1 to 5/,
    );
    expect(usageError(["--headnodes", "0"])).toMatch(
      /--headnodes must be a whole number from 1 to 32/,
    );
    expect(usageError(["--nats", "nats://127.0.0.1:4222", "--nats-cluster", "3"])).toMatch(
      /cannot go with --nats/,
    );
    expect(usageError(["--nats-tls-cert", "a.pem"])).toMatch(/go together/);
  });

  test("good values are taken as given", () => {
    const options = upOptionsOf(
      ["--gateways", "0", "--nbd-port", "20809", "--log-level", "debug", "--demo", "--sleds", "5"],
      { OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:4318" },
    );
    expect(options).toMatchObject({
      gateways: 0,
      nbdPort: 20_809,
      logLevel: "debug",
      demo: true,
      sleds: 5,
      otlpEndpoint: "http://127.0.0.1:4318",
    });
  });
});
