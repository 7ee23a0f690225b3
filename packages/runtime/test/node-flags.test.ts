// Every way a service process is started passes serviceNodeFlags, and a service can tell
// when it was not (constants.ts, serviceNodeFlags).

import { readFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { serviceMallocTunables, serviceNodeFlags } from "../src/constants.ts";
import { missingNodeFlags } from "../src/run.ts";

describe("service node flags", () => {
  it("are V8 flags Node accepts on its command line", () => {
    expect(serviceNodeFlags.length).toBeGreaterThan(0);
    for (const flag of serviceNodeFlags) expect(flag).toMatch(/^--[a-z-]+(=\d+)?$/);
  });

  it("are in the Dockerfile's ENTRYPOINT, which runs a bundle (with its source maps)", async () => {
    const dockerfile = await readFile(new URL("../../../Dockerfile", import.meta.url), "utf8");
    const line = dockerfile.split("\n").find((text) => text.startsWith("ENTRYPOINT"));
    expect(line).toBeDefined();
    const entrypoint = JSON.parse(line!.slice("ENTRYPOINT".length)) as string[];
    expect(entrypoint).toEqual(["node", ...serviceNodeFlags, "--enable-source-maps"]);
  });

  it("are reported missing one by one", () => {
    expect(missingNodeFlags([...serviceNodeFlags, "--import", "tsx"])).toEqual([]);
    expect(missingNodeFlags(["--import", "tsx"])).toEqual([...serviceNodeFlags]);
    expect(missingNodeFlags(serviceNodeFlags.map((flag) => `${flag}0`))).toEqual([
      ...serviceNodeFlags,
    ]);
  });

  it("go with glibc's malloc settings, which the Dockerfile sets for every service too", async () => {
    expect(serviceMallocTunables).toMatch(
      /^glibc\.malloc\.[a-z_]+=\d+(:glibc\.malloc\.[a-z_]+=\d+)*$/,
    );
    const dockerfile = await readFile(new URL("../../../Dockerfile", import.meta.url), "utf8");
    expect(dockerfile.split("\n")).toContain(`ENV GLIBC_TUNABLES=${serviceMallocTunables}`);
  });
});
