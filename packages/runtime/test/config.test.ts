import { describe, expect, test } from "vitest";
import { ConfigError, commonOptions, type OptionSpecs, parseConfig } from "../src/index.ts";

const specs = {
  name: { flag: "name", env: "T_NAME", type: "string", required: true, description: "a name" },
  count: {
    flag: "count",
    env: "T_COUNT",
    type: "integer",
    default: 3,
    min: 1,
    max: 10,
    description: "a count",
  },
  verbose: { flag: "verbose", env: "T_VERBOSE", type: "boolean", description: "talk" },
  url: {
    flag: "url",
    type: "string",
    description: "a url",
    check: (value: string) => (value.startsWith("nats://") ? undefined : "must be nats://"),
  },
} as const satisfies OptionSpecs;

function problems(run: () => unknown): readonly string[] {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).problems;
  }
  throw new Error("expected a ConfigError");
}

describe("configuration", () => {
  test("flags win over the environment, which wins over defaults", () => {
    const env = { T_NAME: "from-env", T_COUNT: "5" };
    expect(parseConfig(specs, { argv: [], env })).toEqual({
      name: "from-env",
      count: 5,
      verbose: false,
    });
    expect(
      parseConfig(specs, { argv: ["--name", "flag", "--count", "7", "--verbose"], env }),
    ).toEqual({ name: "flag", count: 7, verbose: true });
    expect(parseConfig(specs, { argv: [], env: { T_NAME: "n" } }).count).toBe(3);
  });

  test("every problem is reported at once, naming the flag and the variable", () => {
    const found = problems(() =>
      parseConfig(specs, {
        argv: ["--count", "11", "--url", "http://x"],
        env: { T_VERBOSE: "maybe" },
      }),
    );
    expect(found).toHaveLength(4);
    expect(found.join("\n")).toContain("--name (or T_NAME) is required");
    expect(found.join("\n")).toContain("--count (or T_COUNT) must be between 1 and 10, got 11");
    expect(found.join("\n")).toContain("--verbose (or T_VERBOSE) must be true or false");
    expect(found.join("\n")).toContain("--url: must be nats://");
  });

  test("integers must be whole numbers", () => {
    // An empty variable counts as unset.
    expect(parseConfig(specs, { argv: [], env: { T_NAME: "n", T_COUNT: "" } }).count).toBe(3);
    for (const bad of ["1.5", "abc", " ", "1e3", "0x10"]) {
      const env = { T_NAME: "n", T_COUNT: bad };
      expect(problems(() => parseConfig(specs, { argv: [], env }))[0]).toMatch(/whole number/);
    }
  });

  test("an integer that must be a multiple of a unit is refused otherwise, naming the variable", () => {
    const sized = {
      bytes: {
        flag: "bytes",
        env: "T_BYTES",
        type: "integer",
        default: 4096,
        min: 512,
        max: 1 << 20,
        multipleOf: 512,
        description: "a size",
      },
    } as const satisfies OptionSpecs;
    expect(parseConfig(sized, { argv: [], env: { T_BYTES: "1024" } }).bytes).toBe(1024);
    expect(problems(() => parseConfig(sized, { argv: [], env: { T_BYTES: "1000" } }))).toEqual([
      "--bytes (or T_BYTES) must be a multiple of 512, got 1000",
    ]);
  });

  test("a required string given empty on the command line is refused as missing", () => {
    expect(problems(() => parseConfig(specs, { argv: ["--name", ""], env: {} }))).toEqual([
      "--name (or T_NAME) is required, got an empty value",
    ]);
  });

  test("an unknown flag is refused", () => {
    expect(problems(() => parseConfig(specs, { argv: ["--nmae", "x"], env: {} }))[0]).toMatch(
      /--nmae/,
    );
  });

  test("common options validate node ids, NATS URLs and log levels", () => {
    const found = problems(() =>
      parseConfig(commonOptions, {
        argv: ["--id", "Head_1", "--nats", "http://x:1", "--log-level", "loud"],
        env: {},
      }),
    );
    expect(found.join("\n")).toMatch(/--id .*lowercase/);
    expect(found.join("\n")).toMatch(/--nats .*nats:\/\//);
    expect(found.join("\n")).toMatch(/--log-level .*one of/);
    expect(found.join("\n")).toMatch(/--data-dir .*required/);
    const good = parseConfig(commonOptions, {
      argv: ["--id", "head-1", "--data-dir", "/tmp/x"],
      env: { BALLAST_NATS: "nats://127.0.0.1:4222,nats://127.0.0.1:4223" },
    });
    expect(good).toMatchObject({ nodeId: "head-1", heartbeatIntervalMs: 1000, logLevel: "info" });
  });
});
