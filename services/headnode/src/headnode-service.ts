// The head node's service definition for the runtime.

import {
  type CommonConfig,
  ConfigError,
  type ConfigOf,
  type LinkListenOptions,
  type OptionSpecs,
  type Service,
} from "@ballast/runtime";
import { chunkCacheBytesDefault } from "./chunk-cache.ts";
import { replicaLimitsDefault, tickMs } from "./constants.ts";
import { HeadNode } from "./headnode.ts";
import { nextSession } from "./session.ts";

export const headnodeOptions = {
  checkpointIntervalMs: {
    flag: "checkpoint-interval-ms",
    env: "BALLAST_CHECKPOINT_INTERVAL_MS",
    type: "integer",
    default: replicaLimitsDefault.checkpointIntervalTicks * tickMs,
    min: 100,
    max: 3_600_000,
    description: "checkpoint a replica's metadata at least this often while it flushes",
  },
  checkpointIntervalOps: {
    flag: "checkpoint-interval-ops",
    env: "BALLAST_CHECKPOINT_INTERVAL_OPS",
    type: "integer",
    default: replicaLimitsDefault.checkpointIntervalOps,
    min: 1,
    max: 100_000_000,
    description: "checkpoint a replica's metadata at least every this many ops",
  },
  journalBytesMax: {
    flag: "journal-bytes-max",
    env: "BALLAST_JOURNAL_BYTES_MAX",
    type: "integer",
    default: replicaLimitsDefault.logBytesMax,
    min: 1024 * 1024,
    max: 64 * 1024 * 1024 * 1024,
    description:
      "note bytes a replica holds before new writes wait; with full sleds and half of it held, writes answer NoSpace",
  },
  chunkCacheBytes: {
    flag: "chunk-cache-bytes",
    env: "BALLAST_CHUNK_CACHE_BYTES",
    type: "integer",
    default: chunkCacheBytesDefault,
    min: 0,
    max: 64 * 1024 * 1024 * 1024,
    description:
      "memory for sled chunk bytes read or flushed by this node, served again without a sled read; 0 turns it off",
  },
  linkListen: {
    flag: "link-listen",
    env: "BALLAST_LINK_LISTEN",
    type: "string",
    check: checkLinkListen,
    description:
      "host:port to take links on (volume I/O and replication without nats-server; port 0 picks one); off turns links off. Default 127.0.0.1:0, but off when NATS uses TLS: links are not encrypted",
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

/**
 * Where links are taken, from the options: undefined with links off. Links are not
 * encrypted, so a node whose NATS uses TLS takes none unless --link-listen asks for
 * them (start() then warns). Listening on every address (0.0.0.0) needs a host to tell
 * senders, which the node cannot guess.
 */
export function linkListenOf(config: {
  linkListen: string | undefined;
  linkAdvertise: string | undefined;
  nats: string;
  natsCa?: string | undefined;
}): LinkListenOptions | undefined {
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

export const headnodeDefinition = {
  kind: "headnode" as const,
  options: headnodeOptions,
  async start(service: Service, config: ConfigOf<typeof headnodeOptions> & CommonConfig) {
    // Links before any subject is served: served subjects are routed from the listener.
    // A node with links off neither takes nor sends any (everything over NATS).
    const links = linkListenOf(config);
    if (links !== undefined) {
      if (natsUsesTls(config)) {
        service.logger.warn(
          { linkListen: config.linkListen },
          "NATS uses TLS but links do not: volume I/O and replication over links travel unencrypted (--link-listen off to send them over NATS)",
        );
      }
      await service.listenLinks(links);
      service.bus.enableLinks(["replica"]);
    }
    const limits = {
      checkpointIntervalTicks: Math.max(1, Math.round(config.checkpointIntervalMs / tickMs)),
      checkpointIntervalOps: config.checkpointIntervalOps,
      logBytesMax: config.journalBytesMax,
    };
    new HeadNode(service, config, await nextSession(config.dataDir), limits, {
      cacheBytes: config.chunkCacheBytes,
      meter: service.meter,
    }).start();
  },
};
