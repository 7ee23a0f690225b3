// What `ballast up` tells the user about its NBD gateways: where each listens and a URL
// to try. The launcher's gateways inherit its environment, so an address or Unix socket
// set there (BALLAST_NBD_HOST, BALLAST_NBD_SOCKET) is where they listen, and the lines
// must say so rather than a fixed 127.0.0.1.

export interface NbdEndpointsInput {
  /** The launcher's environment (what the gateways inherit). */
  env: Readonly<Record<string, string | undefined>>;
  /** The first gateway's port; gateway N listens on first + N - 1 (0: each picks one). */
  nbdPortFirst: number;
  gateways: number;
  /** The export name to show in the URLs. */
  exportName: string;
}

/** An address as it goes in a URL's authority: IPv6 literals in brackets. */
function urlHost(host: string): string {
  return host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
}

/** The address a local client reaches a listener on `host` by (a wildcard means loopback). */
function reachableHost(host: string): string {
  if (host === "0.0.0.0" || host === "") return "127.0.0.1";
  if (host === "::" || host === "[::]") return "::1";
  return host;
}

/** The lines `ballast up` prints about its NBD gateways, the URL to try last. */
export function nbdEndpointLines(input: NbdEndpointsInput): string[] {
  if (input.gateways <= 0) return [];
  const socket = input.env.BALLAST_NBD_SOCKET;
  if (socket !== undefined && socket !== "") {
    const url = `nbd+unix:///${input.exportName}?socket=${socket}`;
    return [`NBD gateway on Unix socket ${socket}; try:`, ...tryLines(`'${url}'`)];
  }
  const host = input.env.BALLAST_NBD_HOST ?? "127.0.0.1";
  const wildcard = reachableHost(host) !== host;
  const where = (port: number | string) =>
    `${urlHost(host)}:${port}${wildcard ? " (every address)" : ""}`;
  if (input.nbdPortFirst === 0) {
    const many = input.gateways > 1;
    return [
      `NBD gateway${many ? "s" : ""} on ${urlHost(host)}${wildcard ? " (every address)" : ""}, on a free port ${many ? "each picks; each names its port" : "it picks; it names the port"} in its log`,
    ];
  }
  const lines =
    input.gateways === 1
      ? [`NBD gateway on ${where(input.nbdPortFirst)}; try:`]
      : [
          `NBD gateways on ${where(`${input.nbdPortFirst}-${input.nbdPortFirst + input.gateways - 1}`)}, one port each; try the first:`,
        ];
  const url = `nbd://${urlHost(reachableHost(host))}:${input.nbdPortFirst}/${input.exportName}`;
  return [...lines, ...tryLines(url)];
}

function tryLines(url: string): string[] {
  return [
    `  nbdinfo ${url}`,
    `  nbdcopy disk.img ${url}          # import an image`,
    `  qemu-img info ${url}`,
  ];
}
