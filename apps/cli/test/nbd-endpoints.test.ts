// `ballast up`'s NBD lines name where the gateways really listen: the launcher's
// environment reaches them, so BALLAST_NBD_HOST and BALLAST_NBD_SOCKET move them.

import { describe, expect, test } from "vitest";
import { nbdEndpointLines } from "../src/nbd-endpoints.ts";

const base = { nbdPortFirst: 10_809, gateways: 1, exportName: "demo" };

describe("ballast up's NBD lines", () => {
  test("by default, loopback and the first port", () => {
    const lines = nbdEndpointLines({ ...base, env: {} });
    expect(lines[0]).toBe("NBD gateway on 127.0.0.1:10809; try:");
    expect(lines[1]).toBe("  nbdinfo nbd://127.0.0.1:10809/demo");
  });

  test("an address set in the environment is the one shown", () => {
    const lines = nbdEndpointLines({ ...base, env: { BALLAST_NBD_HOST: "10.1.2.3" } });
    expect(lines[0]).toBe("NBD gateway on 10.1.2.3:10809; try:");
    expect(lines[1]).toBe("  nbdinfo nbd://10.1.2.3:10809/demo");
  });

  test("a wildcard address says so, and the URL to try is loopback", () => {
    const v4 = nbdEndpointLines({ ...base, env: { BALLAST_NBD_HOST: "0.0.0.0" } });
    expect(v4[0]).toBe("NBD gateway on 0.0.0.0:10809 (every address); try:");
    expect(v4[1]).toBe("  nbdinfo nbd://127.0.0.1:10809/demo");
    const v6 = nbdEndpointLines({ ...base, env: { BALLAST_NBD_HOST: "::" } });
    expect(v6[0]).toBe("NBD gateway on [::]:10809 (every address); try:");
    expect(v6[1]).toBe("  nbdinfo nbd://[::1]:10809/demo");
  });

  test("a Unix socket replaces the TCP address", () => {
    const lines = nbdEndpointLines({ ...base, env: { BALLAST_NBD_SOCKET: "/run/b.sock" } });
    expect(lines[0]).toBe("NBD gateway on Unix socket /run/b.sock; try:");
    expect(lines[1]).toBe("  nbdinfo 'nbd+unix:///demo?socket=/run/b.sock'");
  });

  test("several gateways name their range of ports", () => {
    const lines = nbdEndpointLines({ ...base, gateways: 3, env: {} });
    expect(lines[0]).toBe("NBD gateways on 127.0.0.1:10809-10811, one port each; try the first:");
  });

  test("port 0 sends the user to the logs, and no gateway prints nothing", () => {
    expect(nbdEndpointLines({ ...base, nbdPortFirst: 0, env: {} })).toEqual([
      "NBD gateway on 127.0.0.1, on a free port it picks; it names the port in its log",
    ]);
    expect(nbdEndpointLines({ ...base, gateways: 0, env: {} })).toEqual([]);
  });
});
