// The options of a process that takes links (head nodes and sleds): where it listens,
// the host it tells senders, and when links are off. One definition, spread into each
// service's options, so that both kinds parse and default them alike.
//
// Links are plain TCP (protocol link.ts): a node whose NATS uses TLS takes none unless
// --link-listen asks for them, and then warns, since what went encrypted over NATS would
// travel in the clear.

import type { OptionSpecs } from "./config.ts";
import { ConfigError } from "./errors.ts";
import type { LinkListenOptions, Service } from "./service.ts";

export const linkOptions = {
  linkListen: {
    flag: "link-listen",
    env: "BALLAST_LINK_LISTEN",
    type: "string",
    check: checkLinkListen,
    description:
      "host:port to take links on (messages without nats-server; port 0 picks one); off turns links off. Default 127.0.0.1:0, but off when NATS uses TLS: links are not encrypted",
  },
  linkAdvertise: {
    flag: "link-advertise",
    env: "BALLAST_LINK_ADVERTISE",
    type: "string",
    check: (value: string) =>
      /^[^\s:/]+$/.test(value)
        ? undefined
        : `must be a host name or IPv4 address, got ${JSON.stringify(value)}`,
    description:
      "host that senders connect to for links (default: the --link-listen host; required when that is 0.0.0.0)",
  },
} as const satisfies OptionSpecs;

/** `off`, or `host:port` with a port in 0..65535. */
function checkLinkListen(value: string): string | undefined {
  if (value === "off") return undefined;
  const match = /^([^\s:/]+):(\d{1,5})$/.exec(value);
  if (match === null || Number(match[2]) > 65_535) {
    return `must be host:port (e.g. 127.0.0.1:0) or off, got ${JSON.stringify(value)}`;
  }
  return undefined;
}

/** Where links are taken when --link-listen is not given and NATS is not TLS. */
export const linkListenDefault = "127.0.0.1:0";

/** NATS over TLS: a tls:// URL, or a CA given (which turns TLS on, bus.ts). */
export function natsUsesTls(config: { nats: string; natsCa?: string | undefined }): boolean {
  return (
    config.natsCa !== undefined ||
    config.nats.split(",").some((url) => url.trim().toLowerCase().startsWith("tls://"))
  );
}

/** What linkListenOf reads of a process's configuration. */
export interface LinkConfig {
  linkListen: string | undefined;
  linkAdvertise: string | undefined;
  nats: string;
  natsCa?: string | undefined;
}

/**
 * Where links are taken, from the options: undefined with links off. Listening on every
 * address (0.0.0.0) needs a host to tell senders, which the node cannot guess.
 */
export function linkListenOf(config: LinkConfig): LinkListenOptions | undefined {
  const listen = config.linkListen ?? (natsUsesTls(config) ? "off" : linkListenDefault);
  if (listen === "off") return undefined;
  const colon = listen.lastIndexOf(":");
  const host = listen.slice(0, colon);
  const port = Number(listen.slice(colon + 1));
  if (config.linkAdvertise === undefined && (host === "0.0.0.0" || host === "::")) {
    throw new ConfigError([
      `--link-listen ${listen} listens on every address: --link-advertise (or BALLAST_LINK_ADVERTISE) must name the host senders connect to`,
    ]);
  }
  return { host, port, advertise: config.linkAdvertise ?? host };
}

/**
 * Listens for links as the options say (before any subject is served: subjects served
 * from then on are routed from the listener). False with links off.
 */
export async function listenLinksAsConfigured(
  service: Service,
  config: LinkConfig,
): Promise<boolean> {
  const links = linkListenOf(config);
  if (links === undefined) return false;
  if (natsUsesTls(config)) {
    service.logger.warn(
      { linkListen: config.linkListen },
      "NATS uses TLS but links do not: what goes over links travels unencrypted (--link-listen off to send it over NATS)",
    );
  }
  await service.listenLinks(links);
  return true;
}
