// Configuration from flags and environment, validated once at start. Each option names
// its flag, its environment variable, its type and bounds; a flag wins over the
// environment, which wins over the default. Every problem is collected and reported
// together with the option's flag and variable, so a bad start says exactly what to fix.

import { parseArgs } from "node:util";
import { ConfigError } from "./errors.ts";

interface OptionBase {
  /** Long flag without dashes, e.g. "data-dir". */
  flag: string;
  /** Environment variable, e.g. "BALLAST_DATA_DIR". */
  env?: string;
  description: string;
}

export interface StringOption extends OptionBase {
  type: "string";
  default?: string;
  required?: boolean;
  /** A check that returns a problem sentence, or undefined when the value is good. */
  check?: (value: string) => string | undefined;
}

export interface IntegerOption extends OptionBase {
  type: "integer";
  default?: number;
  required?: boolean;
  min: number;
  max: number;
  /** The value must be a multiple of this (a sector, a block), checked with the bounds. */
  multipleOf?: number;
}

export interface BooleanOption extends OptionBase {
  type: "boolean";
  default?: boolean;
}

export type OptionSpec = StringOption | IntegerOption | BooleanOption;
export type OptionSpecs = Record<string, OptionSpec>;

type ValueOf<S extends OptionSpec> = S extends IntegerOption
  ? number
  : S extends BooleanOption
    ? boolean
    : string;

type IsDefined<S extends OptionSpec> = S extends { default: unknown }
  ? true
  : S extends { required: true }
    ? true
    : S extends BooleanOption
      ? true
      : false;

export type ConfigOf<T extends OptionSpecs> = {
  [K in keyof T]: IsDefined<T[K]> extends true ? ValueOf<T[K]> : ValueOf<T[K]> | undefined;
};

export interface ParseInput {
  argv: readonly string[];
  env: Readonly<Record<string, string | undefined>>;
}

/** Parses and validates; throws ConfigError listing every problem found. */
export function parseConfig<T extends OptionSpecs>(specs: T, input: ParseInput): ConfigOf<T> {
  const problems: string[] = [];
  let flags: Record<string, string | boolean | undefined> = {};
  try {
    const parsed = parseArgs({
      args: [...input.argv],
      options: Object.fromEntries(
        Object.values(specs).map((spec) => [
          spec.flag,
          { type: spec.type === "boolean" ? ("boolean" as const) : ("string" as const) },
        ]),
      ),
      strict: true,
      allowPositionals: false,
    });
    flags = parsed.values as Record<string, string | boolean | undefined>;
  } catch (error) {
    throw new ConfigError([`${(error as Error).message} (see --help)`]);
  }

  const config: Record<string, unknown> = {};
  for (const [key, spec] of Object.entries(specs)) {
    const source = describeSource(spec);
    const fromFlag = flags[spec.flag];
    const fromEnv = spec.env === undefined ? undefined : input.env[spec.env];
    const raw = fromFlag ?? (fromEnv === "" ? undefined : fromEnv);
    switch (spec.type) {
      case "boolean": {
        if (typeof raw === "boolean") config[key] = raw;
        else if (raw === undefined) config[key] = spec.default ?? false;
        else if (/^(1|true|yes|on)$/i.test(raw)) config[key] = true;
        else if (/^(0|false|no|off)$/i.test(raw)) config[key] = false;
        else problems.push(`${source} must be true or false, got ${JSON.stringify(raw)}`);
        break;
      }
      case "integer": {
        if (raw === undefined) {
          if (spec.default !== undefined) config[key] = spec.default;
          else if (spec.required) problems.push(`${source} is required`);
          break;
        }
        const text = String(raw).trim();
        const value = /^-?\d+$/.test(text) ? Number(text) : Number.NaN;
        if (!Number.isSafeInteger(value)) {
          problems.push(`${source} must be a whole number, got ${JSON.stringify(raw)}`);
        } else if (value < spec.min || value > spec.max) {
          problems.push(`${source} must be between ${spec.min} and ${spec.max}, got ${value}`);
        } else if (spec.multipleOf !== undefined && value % spec.multipleOf !== 0) {
          problems.push(`${source} must be a multiple of ${spec.multipleOf}, got ${value}`);
        } else {
          config[key] = value;
        }
        break;
      }
      case "string": {
        if (raw === undefined) {
          if (spec.default !== undefined) config[key] = spec.default;
          else if (spec.required) problems.push(`${source} is required`);
          break;
        }
        const value = String(raw);
        if (value === "" && spec.required) {
          // `--data-dir ""` (an unset shell variable in a script): as good as missing.
          problems.push(`${source} is required, got an empty value`);
          break;
        }
        const problem = spec.check?.(value);
        if (problem !== undefined) problems.push(`${source}: ${problem}`);
        else config[key] = value;
        break;
      }
      default: {
        const unreachable: never = spec;
        throw new Error(`unknown option type in ${JSON.stringify(unreachable)}`);
      }
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return config as ConfigOf<T>;
}

function describeSource(spec: OptionSpec): string {
  return spec.env === undefined ? `--${spec.flag}` : `--${spec.flag} (or ${spec.env})`;
}

/** One line per option, for --help. */
export function describeOptions(specs: OptionSpecs): string {
  const lines = Object.values(specs).map((spec) => {
    const name = spec.type === "boolean" ? `--${spec.flag}` : `--${spec.flag} <${spec.type}>`;
    const env = spec.env === undefined ? "" : ` [env ${spec.env}]`;
    const fallback =
      "default" in spec && spec.default !== undefined ? ` (default ${spec.default})` : "";
    return `  ${name.padEnd(34)}${spec.description}${fallback}${env}`;
  });
  return lines.join("\n");
}

/** Checks for string options. */
export const checks = {
  natsUrl(value: string): string | undefined {
    const urls = value.split(",");
    for (const url of urls) {
      let parsed: URL;
      try {
        parsed = new URL(url.includes("://") ? url : `nats://${url}`);
      } catch {
        return `${JSON.stringify(url)} is not a URL (expected e.g. nats://127.0.0.1:4222)`;
      }
      if (!["nats:", "tls:"].includes(parsed.protocol)) {
        return `${JSON.stringify(url)} must use nats:// or tls://`;
      }
    }
    return undefined;
  },
  httpUrl(value: string): string | undefined {
    try {
      const parsed = new URL(value);
      if (!["http:", "https:"].includes(parsed.protocol)) return `must be http(s), got ${value}`;
      return undefined;
    } catch {
      return `${JSON.stringify(value)} is not a URL`;
    }
  },
  logLevel(value: string): string | undefined {
    const levels = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];
    return levels.includes(value) ? undefined : `must be one of ${levels.join(", ")}`;
  },
};
