// LocalCluster spawns services with Ballast's malloc settings (runtime constants.ts,
// serviceMallocTunables) unless the launcher or the cluster's options name their own.

import { constants as runtimeConstants } from "@ballast/runtime";
import { describe, expect, it } from "vitest";
import { mallocTunablesFor } from "../src/local-cluster.ts";

describe("malloc tunables for a spawned service", () => {
  it("are Ballast's when nothing names any", () => {
    expect(mallocTunablesFor({ PATH: "/bin" }, { BALLAST_NBD_PORT: "1" })).toEqual({
      GLIBC_TUNABLES: runtimeConstants.serviceMallocTunables,
    });
  });

  it("are left alone when the launcher's environment or the cluster's options name some", () => {
    expect(mallocTunablesFor({ GLIBC_TUNABLES: "glibc.malloc.arena_max=2" }, {})).toEqual({});
    expect(mallocTunablesFor({}, { GLIBC_TUNABLES: "glibc.malloc.arena_max=2" })).toEqual({});
  });
});
