// The command line of `ballast up`, checked whole before anything starts: a bad value is
// a usage error (exit 2) here, not a nats-server started and services that die on it.
// Values the services would refuse (log level, OTLP endpoint, NATS URL) are checked with
// the services' own checks (runtime config.ts), so the two cannot disagree.

import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { nbdPortDefault } from "@ballast/gateway";
import { checks } from "@ballast/runtime";
import {
  coordinatorCountDefault,
  dataDirDefault,
  gatewayCountDefault,
  headNodeCountDefault,
  natsClusterSizeMax,
  natsFileStoreBytesDefault,
  natsFileStoreBytesMin,
  serviceCountMax,
  sledCountDefault,
} from "./constants.ts";
import { CliError, exitCodes } from "./errors.ts";
import { formatSize, parseSize, SizeError } from "./sizes.ts";
import type { UpOptions } from "./up.ts";
import { wholeNumber } from "./whole-number.ts";

type Flags = Record<string, string | boolean | undefined>;

/** `ballast up`'s options from its arguments (and OTEL_EXPORTER_OTLP_ENDPOINT). */
export function upOptionsOf(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): Omit<UpOptions, "print"> {
  let flags: Flags;
  try {
    flags = parseArgs({
      args: [...argv],
      options: {
        "data-dir": { type: "string" },
        nats: { type: "string" },
        "nats-cluster": { type: "string" },
        "nats-tls-cert": { type: "string" },
        "nats-tls-key": { type: "string" },
        "nats-tls-ca": { type: "string" },
        "nats-store-max": { type: "string" },
        coordinators: { type: "string" },
        headnodes: { type: "string" },
        sleds: { type: "string" },
        gateways: { type: "string" },
        "nbd-port": { type: "string" },
        "otlp-endpoint": { type: "string" },
        "log-level": { type: "string" },
        demo: { type: "boolean" },
      },
      strict: true,
      allowPositionals: false,
    }).values as Flags;
  } catch (error) {
    throw new CliError(exitCodes.usage, `${(error as Error).message} (see ballast help up)`);
  }
  const nats = checked(flags.nats, "--nats", checks.natsUrl);
  const natsCluster = wholeNumber(
    flags["nats-cluster"],
    "--nats-cluster",
    1,
    1,
    natsClusterSizeMax,
  );
  if (nats !== undefined && flags["nats-cluster"] !== undefined && natsCluster > 1) {
    throw new CliError(exitCodes.usage, "--nats-cluster starts servers; it cannot go with --nats");
  }
  const otlpEndpoint = checked(
    (flags["otlp-endpoint"] as string | undefined) ??
      (env.OTEL_EXPORTER_OTLP_ENDPOINT || undefined),
    flags["otlp-endpoint"] === undefined ? "OTEL_EXPORTER_OTLP_ENDPOINT" : "--otlp-endpoint",
    checks.httpUrl,
  );
  return {
    dataDir: (flags["data-dir"] as string | undefined) ?? dataDirDefault,
    nats,
    natsCluster,
    natsTls: natsTls(flags),
    natsStoreBytes: natsStoreBytes(flags["nats-store-max"]),
    coordinators: serviceCount(flags.coordinators, "--coordinators", coordinatorCountDefault, 1),
    headNodes: serviceCount(flags.headnodes, "--headnodes", headNodeCountDefault, 1),
    sleds: serviceCount(flags.sleds, "--sleds", sledCountDefault, 1),
    gateways: serviceCount(flags.gateways, "--gateways", gatewayCountDefault, 0),
    nbdPort: wholeNumber(flags["nbd-port"], "--nbd-port", nbdPortDefault, 1, 65_535),
    demo: flags.demo === true,
    otlpEndpoint,
    logLevel: checked(flags["log-level"], "--log-level", checks.logLevel),
  };
}

/** A string flag's value when the check passes; a usage error naming the problem if not. */
function checked(
  value: string | boolean | undefined,
  flag: string,
  check: (value: string) => string | undefined,
): string | undefined {
  if (value === undefined) return undefined;
  const problem = check(String(value));
  if (problem !== undefined) throw new CliError(exitCodes.usage, `${flag}: ${problem}`);
  return String(value);
}

/** Digits only (no "", "1e3" or "0x10", which Number() would take), within min..max. */
function serviceCount(
  value: string | boolean | undefined,
  flag: string,
  fallback: number,
  min: number,
) {
  return wholeNumber(value, flag, fallback, min, serviceCountMax);
}

/** `--nats-store-max`: a size (sizes.ts) of at least natsFileStoreBytesMin. */
function natsStoreBytes(value: string | boolean | undefined): number {
  if (value === undefined) return natsFileStoreBytesDefault;
  let bytes: number;
  try {
    bytes = parseSize(String(value), "--nats-store-max");
  } catch (error) {
    if (error instanceof SizeError) throw new CliError(exitCodes.usage, error.message);
    throw error;
  }
  if (bytes < natsFileStoreBytesMin) {
    throw new CliError(
      exitCodes.usage,
      `--nats-store-max must be at least ${formatSize(natsFileStoreBytesMin)}, got ${value}`,
    );
  }
  return bytes;
}

/** The three TLS files come together or not at all. */
function natsTls(flags: Flags): { cert: string; key: string; ca: string } | undefined {
  const cert = flags["nats-tls-cert"] as string | undefined;
  const key = flags["nats-tls-key"] as string | undefined;
  const ca = flags["nats-tls-ca"] as string | undefined;
  if (cert === undefined && key === undefined && ca === undefined) return undefined;
  if (cert === undefined || key === undefined || ca === undefined) {
    throw new CliError(
      exitCodes.usage,
      "--nats-tls-cert, --nats-tls-key and --nats-tls-ca go together",
    );
  }
  return { cert: resolve(cert), key: resolve(key), ca: resolve(ca) };
}
