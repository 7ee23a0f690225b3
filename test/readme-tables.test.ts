// The README's configuration and metrics tables against the code, so that an operator
// who reads them finds every option a service takes, with its variable and default, and
// every metric a service serves, under the name Prometheus scrapes. Also: the status
// JSON example is what the coordinator answers, and every BALLAST_ variable the docs or
// docker-compose.yml name is one the code reads. Reads files and tables only: unit tier.

import { readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { coordinatorOptions } from "@ballast/coordinator";
import { gatewayOptions } from "@ballast/gateway";
import {
  chunkCacheBytesFor,
  chunkCacheMemoryShare,
  headnodeOptions,
  memoryAvailableBytes,
} from "@ballast/headnode";
import { nbdLimitsDefault } from "@ballast/nbd";
import { limits, resultSchemas } from "@ballast/protocol";
import {
  commonOptions,
  linkListenDefault,
  type OptionSpec,
  constants as runtimeConstants,
} from "@ballast/runtime";
import { sledOptions } from "@ballast/sled";
import { describe, expect, test } from "vitest";
import { codeSpans, section, tableRows } from "./support/markdown.ts";

const root = fileURLToPath(new URL("../", import.meta.url));
const read = (path: string) => readFileSync(`${root}${path}`, "utf8");
const readme = read("README.md");

/** Every .ts, .mjs and .cjs file under a directory of the repository, node_modules aside. */
function sourceFiles(directory: string): string[] {
  return readdirSync(`${root}${directory}`, { recursive: true, encoding: "utf8" })
    .filter((path) => /\.(ts|mjs|cjs)$/.test(path) && !path.includes("node_modules"))
    .map((path) => `${directory}/${path}`);
}

// ---- Service options ----------------------------------------------------------------

/** Which services take an option, as the README's meaning column says ("sled only: …"). */
const scopes = {
  every: ["coordinator", "headnode", "sled", "gateway"],
  "coordinator only": ["coordinator"],
  "head node only": ["headnode"],
  "sled only": ["sled"],
  "gateway only": ["gateway"],
  "head node and sled": ["headnode", "sled"],
} as const;

/** Every option of every service, with the services that take it (`--help` aside). */
function serviceOptions(): Map<string, { spec: OptionSpec; services: string[] }> {
  const byService: Record<string, Record<string, OptionSpec>> = {
    coordinator: { ...commonOptions, ...coordinatorOptions },
    headnode: { ...commonOptions, ...headnodeOptions },
    sled: { ...commonOptions, ...sledOptions },
    gateway: { ...commonOptions, ...gatewayOptions },
  };
  const options = new Map<string, { spec: OptionSpec; services: string[] }>();
  for (const [service, specs] of Object.entries(byService)) {
    for (const spec of Object.values(specs)) {
      if (spec.flag === "help") continue;
      const known = options.get(spec.flag) ?? { spec, services: [] };
      known.services.push(service);
      options.set(spec.flag, known);
    }
  }
  return options;
}

interface OptionRow {
  flag: string;
  env: string | undefined;
  fallback: string;
  meaning: string;
}

function readmeOptions(markdown: string): OptionRow[] {
  return tableRows(section(markdown, "## Configuration of services")).map((cells) => ({
    flag: codeSpans(cells[0] ?? "")[0]?.replace(/^--/, "") ?? "",
    env: codeSpans(cells[1] ?? "")[0],
    fallback: cells[2] ?? "",
    meaning: cells[3] ?? "",
  }));
}

const byteUnits: Record<string, number> = { KiB: 2 ** 10, MiB: 2 ** 20, GiB: 2 ** 30 };

/**
 * What a default cell says, as a value to compare with the option's: a number (`60000`,
 * `1 GiB`, `0 (off)`), a switch's `off` or `on`, the text of its first code span, `required`, `none`, or
 * undefined for prose (which only an option without a default may have).
 */
function documentedDefault(cell: string): number | string | undefined {
  if (cell === "(required)") return "required";
  if (cell === "(none)") return "none";
  // A switch: `off` or `on`.
  if (cell === "off" || cell === "on") return cell;
  // A default sized from the machine at start: the table gives the rule.
  if (/^1\/\d+ of memory$/.test(cell)) return cell;
  const number = /^(\d+)(?: (KiB|MiB|GiB))?(?: \(off\))?$/.exec(cell);
  if (number !== null) return Number(number[1]) * (number[2] ? byteUnits[number[2]]! : 1);
  return codeSpans(cell)[0];
}

/** The default the code gives an option, in the terms of `documentedDefault`. */
function codeDefault(spec: OptionSpec): number | string | undefined {
  if ("required" in spec && spec.required) return "required";
  if (spec.type === "boolean") return spec.default === true ? "on" : "off";
  // The head node's chunk cache: a share of this machine's memory (chunk-cache.ts).
  if (
    spec.flag === "chunk-cache-bytes" &&
    spec.default === chunkCacheBytesFor(memoryAvailableBytes())
  )
    return `1/${Math.round(1 / chunkCacheMemoryShare)} of memory`;
  if ("default" in spec && spec.default !== undefined) return spec.default as number | string;
  // Defaults decided at start rather than in the table (link-options.ts).
  if (spec.flag === "link-listen") return linkListenDefault;
  return "none";
}

/** Everything wrong with the README's option table, as sentences; empty when it is right. */
function optionProblems(rows: OptionRow[]): string[] {
  const problems: string[] = [];
  const options = serviceOptions();
  for (const flag of options.keys()) {
    if (!rows.some((row) => row.flag === flag)) problems.push(`--${flag} is not in the table`);
  }
  for (const row of rows) {
    const option = options.get(row.flag);
    if (option === undefined) {
      problems.push(`--${row.flag} is no service's option`);
      continue;
    }
    const { spec, services } = option;
    if (row.env !== spec.env)
      problems.push(`--${row.flag}: the code reads ${spec.env}, not ${row.env}`);
    const scope = /^([a-z ]+):/.exec(row.meaning)?.[1];
    const documented =
      scope !== undefined && scope in scopes ? scopes[scope as keyof typeof scopes] : scopes.every;
    if ([...documented].sort().join() !== [...services].sort().join()) {
      problems.push(
        `--${row.flag} is taken by ${services.join(", ")}, not ${documented.join(", ")}`,
      );
    }
    const bounds = /\((\d+)–(\d+)\)/.exec(row.meaning);
    if (
      bounds !== null &&
      (spec.type !== "integer" || `${spec.min}–${spec.max}` !== `${bounds[1]}–${bounds[2]}`)
    ) {
      const actual = spec.type === "integer" ? `${spec.min}–${spec.max}` : "none";
      problems.push(`--${row.flag}: the bounds are ${actual}, not ${bounds[1]}–${bounds[2]}`);
    }
    const fallback = documentedDefault(row.fallback);
    const actual = codeDefault(spec);
    if (fallback === undefined ? actual !== "none" : fallback !== actual) {
      problems.push(`--${row.flag}: the default is ${actual}, not ${row.fallback}`);
    }
  }
  return problems;
}

describe("the README's table of service options", () => {
  test("names every option of every service, with its variable, default, bounds and services", () => {
    expect(optionProblems(readmeOptions(readme))).toEqual([]);
  });

  test("a missing option, a wrong variable, default, bound or scope is caught", () => {
    const rows = readmeOptions(readme);
    const without = rows.filter((row) => row.flag !== "nbd-port");
    expect(optionProblems(without)).toEqual(["--nbd-port is not in the table"]);
    const wrong = rows.map((row) =>
      row.flag === "sled-out-after-ms"
        ? { ...row, env: "BALLAST_SLED_OUT_MS", fallback: "30000", meaning: "sled only: …" }
        : row,
    );
    expect(optionProblems(wrong)).toEqual([
      "--sled-out-after-ms: the code reads BALLAST_SLED_OUT_AFTER_MS, not BALLAST_SLED_OUT_MS",
      "--sled-out-after-ms is taken by coordinator, not sled",
      "--sled-out-after-ms: the default is 60000, not 30000",
    ]);
    const bounds = rows.map((row) =>
      row.flag === "heartbeat-interval-ms"
        ? { ...row, meaning: "heartbeat period (10–60000)" }
        : row,
    );
    expect(optionProblems(bounds)).toEqual([
      "--heartbeat-interval-ms: the bounds are 50–60000, not 10–60000",
    ]);
    const bytes = rows.map((row) =>
      row.flag === "journal-bytes-max" ? { ...row, fallback: "128 MiB" } : row,
    );
    expect(optionProblems(bytes)).toEqual([
      `--journal-bytes-max: the default is ${256 * 2 ** 20}, not 128 MiB`,
    ]);
  });
});

// ---- Metrics ------------------------------------------------------------------------

const instrumentPattern =
  /\.create(Counter|UpDownCounter|Histogram|Gauge|ObservableCounter|ObservableUpDownCounter|ObservableGauge)\(\s*"(ballast_[a-z_]+)"/g;

/**
 * The name Prometheus scrapes for each instrument the services make: the exporter adds
 * `_total` to counters (monotonic sums); gauges, up-down counters and histograms keep
 * their names (a histogram's series add `_bucket`, `_sum`, `_count`).
 */
function emittedMetrics(): Set<string> {
  const names = new Set<string>();
  const files = ["packages", "services"]
    .flatMap(sourceFiles)
    .filter((path) => path.includes("/src/"));
  for (const path of files) {
    for (const [, kind, name] of read(path).matchAll(instrumentPattern)) {
      names.add(kind === "Counter" || kind === "ObservableCounter" ? `${name}_total` : name!);
    }
  }
  return names;
}

/**
 * The metric names of the README's table. A row may name several: the first in full,
 * the others as a suffix of its first two words (`ballast_sled_capacity_bytes`,
 * `_used_bytes` names `ballast_sled_used_bytes`).
 */
function readmeMetrics(markdown: string): string[] {
  return tableRows(section(markdown, "## Tracing, metrics and logs")).flatMap((cells) => {
    const names = codeSpans(cells[0] ?? "");
    const prefix = names[0]?.split("_").slice(0, 2).join("_") ?? "";
    return names.map((name) => (name.startsWith("_") ? `${prefix}${name}` : name));
  });
}

describe("the README's table of metrics", () => {
  test("names exactly the metrics the services serve", () => {
    const emitted = emittedMetrics();
    // The scan finds the instruments (a guard against a pattern that finds nothing).
    expect(emitted).toContain("ballast_headnode_writes_total");
    expect(emitted).toContain("ballast_sled_used_bytes");
    expect([...readmeMetrics(readme)].sort()).toEqual([...emitted].sort());
  });
});

// ---- Limits -------------------------------------------------------------------------

const mib = 2 ** 20;

/** What each row of the README's limits table must say, from the constants. */
const limitValues: Record<string, string> = {
  "encoded message": `${limits.messageBytesMax / mib} MiB (\`messageBytesMax\`; NATS \`max_payload\` is set ${(limits.natsPayloadBytesMax - limits.messageBytesMax) / 1024} KiB above it for headers)`,
  "data in one write or read request": `${limits.requestDataBytesMax / mib} MiB`,
  "entries in one request / notes in one replication message": String(
    limits.requestEntriesMax === limits.notesPerMessageMax ? limits.requestEntriesMax : Number.NaN,
  ),
  "volume size": `2^${Math.log2(limits.partitionsPerVolumeMax * limits.partitionBytesMax)} bytes (256 TiB) for a new volume; volumes made before, up to 2^${Math.log2(limits.volumeBytesMax)} (1 PiB)`,
  "volume name, snapshot name, node id": `1–${Math.max(limits.volumeNameLengthMax, limits.snapshotNameLengthMax, limits.nodeIdLengthMax)} of \`[a-z0-9-]\`, starting with a letter or digit`,
  "replicas of a volume": `${limits.replicaCountMin} or ${limits.replicaCountMax} (${limits.replicaCountMin} by default)`,
  "partition size": `${limits.partitionBytesMin / mib} MiB to ${limits.partitionBytesMax / 2 ** 30} GiB (${limits.partitionBytesDefault / 2 ** 30} GiB by default)`,
  "partitions of a volume": String(limits.partitionsPerVolumeMax),
  "snapshots of a volume": String(limits.snapshotsPerVolumeMax),
  "sector (I/O alignment)": `${limits.sectorBytes} bytes`,
  "handlers in flight per subscription": String(runtimeConstants.handlersInflightMax),
  "request deadline": `${runtimeConstants.requestDeadlineMsDefault / 1000} s by default, at most ${runtimeConstants.requestDeadlineMsMax / 1000} s`,
  "NBD connections per gateway": String(nbdLimitsDefault.connectionsMax),
  "NBD read and write data in flight, per connection / all": `${nbdLimitsDefault.payloadBytesInflightPerConnectionMax / mib} MiB / ${nbdLimitsDefault.payloadBytesInflightMax / mib} MiB; past either, the gateway reads no more requests until some are answered`,
};

describe("the README's table of limits", () => {
  test("says what the constants are", () => {
    const rows = tableRows(section(readme, "### Limits"));
    expect(Object.fromEntries(rows.map((cells) => [cells[0], cells[1]]))).toEqual(limitValues);
    // The names of all three kinds share one length bound, which the row states once.
    expect(
      new Set([limits.volumeNameLengthMax, limits.snapshotNameLengthMax, limits.nodeIdLengthMax])
        .size,
    ).toBe(1);
  });
});

// ---- `ballast status --json` -------------------------------------------------------

describe("the README's `ballast status --json` example", () => {
  test("is a cluster.status.v1 answer with `nats` beside it, and no field the schema lacks", () => {
    const block = /```json\n([\s\S]*?)```/.exec(section(readme, "### `ballast status --json`"));
    const { nats, ...answer } = JSON.parse(block?.[1] ?? "null");
    expect(typeof nats).toBe("string");
    const parsed = resultSchemas["cluster.status.v1"].safeParse(answer);
    expect(parsed.error?.issues).toBeUndefined();
    // The schema drops keys it does not know: a field renamed in the code shows here.
    expect(parsed.data).toEqual(answer);
  });
});

// ---- Environment variables ----------------------------------------------------------

describe("environment variables", () => {
  test("every BALLAST_ variable the docs and deployment files name is read by the code", () => {
    const documents = [
      "README.md",
      "docs/architecture.md",
      "docs/testing.md",
      "docker-compose.yml",
      "Dockerfile",
    ];
    const named = new Set(
      documents.flatMap((path) => read(path).match(/BALLAST_[A-Z0-9_]*[A-Z0-9]/g) ?? []),
    );
    const code = ["packages", "services", "apps", "scripts", "bench", "test"]
      .flatMap(sourceFiles)
      .filter((path) => path !== "test/readme-tables.test.ts")
      .map(read)
      .join("\n");
    // The NATS servers' password per role: built from the role's name (nats-server.ts).
    const password = /^BALLAST_NATS_PASSWORD_[A-Z]+$/;
    expect(code).toContain("BALLAST_NATS_PASSWORD_");
    const unread = [...named].filter((name) => !password.test(name) && !code.includes(name));
    expect(unread).toEqual([]);
  });

  test("docker-compose.yml gives the Ballast services only variables they read", () => {
    const compose = read("docker-compose.yml");
    const read_ = new Set(
      [...serviceOptions().values()].flatMap(({ spec }) =>
        spec.env === undefined ? [] : [spec.env],
      ),
    );
    const given = new Set(
      [...compose.matchAll(/^\s+(BALLAST_[A-Z_]+|OTEL_[A-Z_]+):/gm)].map((match) => match[1]!),
    );
    const unknown = [...given].filter(
      (name) => !read_.has(name) && !/^BALLAST_NATS_PASSWORD_[A-Z]+$/.test(name),
    );
    expect(unknown).toEqual([]);
  });
});
