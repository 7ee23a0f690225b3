// Messages every service speaks: liveness and self-description.

import { z } from "zod";
import { reportSledsMax } from "../limits.ts";
import { linkScopes, linkTokenBytesMax, linkTokenValidMsMax } from "../link.ts";
import { bytes, diskId, nodeId, serviceKind, text, unsignedInteger } from "./fields.ts";

/** Published (not requested) by every service on its heartbeat subject. */
export const Heartbeat = z.object({
  type: z.literal("heartbeat.v1"),
  kind: serviceKind,
  nodeId,
  pid: unsignedInteger,
  startedAtMs: unsignedInteger,
  sentAtMs: unsignedInteger,
  /** Counts heartbeats since the process started; a reset means a restart. */
  sequence: unsignedInteger,
  version: text,
  /**
   * Its data directory's id. A head node back under its old node id with another one
   * has lost every replica it held: the coordinator counts it out of every replica set
   * that recorded the old one. Absent from services that predate it.
   */
  disk: diskId.optional(),
  /**
   * How often it publishes heartbeats (its `heartbeatIntervalMs`), so that the
   * coordinator can say when its heartbeat timeout leaves too few of them. Absent from
   * services that predate it.
   */
  intervalMs: unsignedInteger.optional(),
});

/** Asks a node to describe itself. */
export const NodeInfo = z.object({
  type: z.literal("node.info.v1"),
});

/**
 * The sleds a head node asks last, having seen them slow lately (alive, but missing
 * deadlines or answering data I/O in seconds: headnode slow-sleds.ts), and the chunk
 * reads it hedged since it started. A head node's node info carries it as
 * `details.slowSleds`; status shows it on the head node's entry.
 */
export const SlowSledsInfo = z.object({
  slow: z.array(nodeId).max(reportSledsMax),
  /** Reads that asked a further copy because the one asked had not answered in time. */
  hedgedReads: unsignedInteger,
  /**
   * Chunk writes that wrote a further sled because a copy had not answered in time.
   * Absent from head nodes that predate it.
   */
  hedgedWrites: unsignedInteger.optional(),
  /**
   * Each slow sled's hold, as of the answer (ms on the head node's own clock): slow for
   * how long (since the first hold of a run of doubled holds), how much of the hold is
   * left, and its length (30 s, doubled while the sled stays slow, up to 5 min). Absent
   * from head nodes that predate it.
   */
  holds: z
    .array(
      z.object({
        sled: nodeId,
        slowForMs: unsignedInteger,
        holdLeftMs: unsignedInteger,
        holdMs: unsignedInteger,
      }),
    )
    .max(reportSledsMax)
    .optional(),
});
export type SlowSledsInfo = z.infer<typeof SlowSledsInfo>;

export const NodeInfoResult = z.object({
  kind: serviceKind,
  nodeId,
  pid: unsignedInteger,
  startedAtMs: unsignedInteger,
  uptimeMs: unsignedInteger,
  version: text,
  /** Every subject this node subscribes to, so that tools can probe them. */
  subjects: z.array(text).max(64),
  /**
   * Kind-specific facts (capacity, replicas held, …); shape documented per service. The
   * facts other services read are checked here: a head node's `slowSleds`.
   */
  details: z.looseObject({ slowSleds: SlowSledsInfo.optional() }),
});

/**
 * Asks the process serving a link-scoped subject (a volume's primary, a replica) for a
 * link to it (protocol link.ts). Sent over NATS on that very subject, so NATS
 * permissions decide who may have one: whoever may publish there. Answered by the
 * service shell before the actor sees it, like `node.info.v1`. `key` is the asker's
 * X25519 public key: the token comes back sealed to it, since replies travel on _INBOX
 * subjects that others may read (runtime link-seal.ts).
 */
export const LinkOffer = z.object({
  type: z.literal("link.offer.v1"),
  key: bytes.refine((key) => key.byteLength === 32, "an X25519 public key is 32 bytes"),
});

/** Where to connect, and the token a `hello` of that scope must carry. No address: no link. */
export const LinkOfferResult = z.object({
  nodeId,
  scope: z.enum(linkScopes),
  /** `host:port` of the node's link listener; absent when it takes no links. */
  address: z
    .string()
    .max(300)
    .regex(/^[^\s]+:[0-9]{1,5}$/)
    .refine((address) => {
      const port = Number(address.slice(address.lastIndexOf(":") + 1));
      return port >= 1 && port <= 65_535;
    }, "a link address's port is 1 to 65535")
    .optional(),
  /** The server's X25519 public key, and the token sealed under the shared key. */
  key: bytes.refine((key) => key.byteLength === 32, "an X25519 public key is 32 bytes").optional(),
  sealed: bytes
    .refine((sealed) => sealed.byteLength <= 28 + linkTokenBytesMax, "sealed token too long")
    .optional(),
  /**
   * How long from the answer the token surely opens links and keeps them open: the
   * sender asks a new offer before it runs out. Absent from a node that does not age its
   * tokens (an older one).
   */
  tokenValidMs: z.number().int().positive().max(linkTokenValidMsMax).optional(),
  /**
   * The link takes a `renew` frame (protocol link.ts): a sender renews its token on the
   * link it has rather than by opening a second one. Absent from an older node.
   */
  renewsInPlace: z.boolean().optional(),
});
