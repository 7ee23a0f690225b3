// Who may publish and subscribe to what on NATS: one NATS user per role, with subject
// permissions derived from the subject builders in subjects.ts, so that the table and the
// subjects cannot drift apart. Every subject family is assigned to every role on purpose
// (the table is a Record over the families, and a test checks it covers every entry of
// `subjects`): a new family does not compile until someone decides who may use it.
//
// Threat model: a role's credentials may leak to whoever runs that kind of process. A
// client (the CLI, the client library, anything holding the client password) reaches
// only the coordinator's request subject (catalogue, status) and volume I/O, and reads
// its replies on _INBOX; it cannot publish replication traffic, a sled's or a head
// node's inbox, heartbeats, or JetStream/KV. Services are trusted with their own
// families. Permissions are per role, not per node: a head node can address any sled,
// because node ids are not known when the credentials are made. Node inboxes carry the
// service's kind, and each service role may subscribe only to its own kind's: a gateway
// (whose credentials every `ballast nbd` user holds) cannot listen on a sled's inbox and
// answer for it (take its chunk writes, hand out its link). Sleds and gateways answer
// through nats-server's `allow_responses` (once per request received, within
// replyPermissionMs), not through a right to publish on every _INBOX, so they cannot
// send a reply nobody asked them for. What only
// services send the coordinator (head-node reports, checkpoint records) has its own
// subject, `coordinatorServices`, which a client cannot publish and each service may
// publish only under its own kind; the coordinator accepts only those message types
// there, and only client request types on `coordinator`.
//
// Destructive requests (`adminRequestTypes`: volume delete, resize and rollback, snapshot
// delete) go on a subject of their own, `coordinatorAdmin`, which only the operator role
// may publish: the client's credentials (every CLI user's, every client library's) read,
// write, create, clone and snapshot volumes, and cannot destroy one. The operator is the
// admin: its credentials are the cluster owner's (`ballast up` writes them beside the
// client's, for the same local user), and a role beside it that could delete volumes
// but not touch the control store would guard nothing the operator's holder lacks.
// The coordinator accepts those types only there (coordinator.ts).

import { replyPermissionMs } from "./limits.ts";
import type { MessageType } from "./messages/index.ts";
import {
  buckets,
  replyInboxPrefix,
  type ServiceKind,
  serviceKinds,
  subjectRoot,
  subjects,
} from "./subjects.ts";

/** NATS users. `operator` is full access for the operator's own tools (scrub, chaos, tests). */
export const natsRoles = [...serviceKinds, "client", "operator"] as const;
export type NatsRole = (typeof natsRoles)[number];

/** Whether `name` (a NATS user name) is one of the roles. */
export function isNatsRole(name: string): name is NatsRole {
  return (natsRoles as readonly string[]).includes(name);
}

/**
 * The prefix of a role's reply subjects (nats.js's `inboxPrefix`): `_INBOX.<role>`, and
 * the role may subscribe only under it, so one role does not read another's replies
 * (which carry volume data, link offers, and the coordinator's JetStream traffic: the
 * control bucket). Every connection of a role shares its prefix: clients sharing the
 * client user still can read each other's replies.
 */
export function replyInboxOf(role: NatsRole): string {
  return `${replyInboxPrefix}${role}`;
}

/**
 * The control requests only the operator may send (on `coordinatorAdmin`): each can
 * destroy data. A delete drops a volume or snapshot; a resize that shrinks discards the
 * tail (a grow is no loss, but one type has one subject); a rollback discards every
 * write since the snapshot. Creates, clones and snapshots, which only add, and every
 * read (list, describe, status) stay with the client.
 */
export const adminRequests = [
  "volume.delete.v1",
  "volume.resize.v1",
  "volume.rollback.v1",
  "snapshot.delete.v1",
] as const satisfies readonly MessageType[];
export const adminRequestTypes: ReadonlySet<MessageType> = new Set<MessageType>(adminRequests);

/** The subject a control request of `type` goes to: `coordinatorAdmin` for the admin's. */
export function coordinatorSubjectOf(type: MessageType): string {
  return adminRequestTypes.has(type)
    ? subjects.coordinatorAdmin.build()
    : subjects.coordinator.build();
}

/** What a role may do on one family of subjects. */
export type Access = "none" | "publish" | "subscribe" | "both";

/** The subject families beyond those in `subjects`: replies, JetStream and the control KV. */
export const extraFamilies = ["inbox", "jetstream", "controlKv"] as const;
export type SubjectFamily = keyof typeof subjects | (typeof extraFamilies)[number];

/** Patterns of every family, built from the subject builders with wildcards for tokens. */
export function familyPatterns(family: SubjectFamily): string[] {
  switch (family) {
    case "heartbeat":
      return [subjects.heartbeat.pattern];
    case "coordinator":
      return [subjects.coordinator.pattern];
    case "coordinatorServices":
      return [subjects.coordinatorServices.pattern];
    case "coordinatorAdmin":
      return [subjects.coordinatorAdmin.pattern];
    case "node":
      return [wildcardTokens(subjects.node.build("sled", "n"), 2)];
    case "volume":
      return [wildcardTokens(subjects.volume.build("v", 0), 2)];
    case "partitionControl":
      return [wildcardTokens(subjects.partitionControl.build("v", 0), 2)];
    case "replica":
      return [wildcardTokens(subjects.replica.build("v", 0, "n"), 3)];
    case "inbox":
      return [`${replyInboxPrefix}>`];
    case "jetstream":
      // The JetStream API, flow control and acks of the consumers KV listing uses.
      return ["$JS.API.>", "$JS.FC.>", "$JS.ACK.>"];
    case "controlKv":
      return [`$KV.${buckets.control}.>`];
    default: {
      const never: never = family;
      throw new Error(`unknown subject family ${String(never)}`);
    }
  }
}

/** Replaces the last `count` tokens of a built subject by `*`. */
function wildcardTokens(subject: string, count: number): string {
  const tokens = subject.split(".");
  return [...tokens.slice(0, tokens.length - count), ...Array(count).fill("*")].join(".");
}

/**
 * The table. Replies go to the requester's _INBOX, so whoever answers requests
 * publishes there; whoever sends requests subscribes there.
 */
export const permissionTable: Record<SubjectFamily, Record<NatsRole, Access>> = {
  // Each service publishes its own heartbeat (restricted to its kind below); the
  // coordinator listens to all of them.
  heartbeat: {
    coordinator: "both",
    headnode: "publish",
    sled: "publish",
    gateway: "publish",
    client: "none",
    operator: "both",
  },
  // Control-plane requests: the catalogue, snapshots and status for clients and
  // gateways; coordinators answer. (Head nodes ask nothing here any more.)
  coordinator: {
    coordinator: "both",
    headnode: "none",
    sled: "none",
    gateway: "publish",
    client: "publish",
    operator: "both",
  },
  // Destructive control requests (adminRequestTypes): the operator's alone.
  coordinatorAdmin: {
    coordinator: "subscribe",
    headnode: "none",
    sled: "none",
    gateway: "none",
    client: "none",
    operator: "both",
  },
  // Reports and checkpoint records from head nodes, each under its own kind (below);
  // coordinators answer. Never a client's.
  coordinatorServices: {
    coordinator: "subscribe",
    headnode: "publish",
    sled: "none",
    gateway: "none",
    client: "none",
    operator: "both",
  },
  // Node inboxes: the coordinator configures head nodes, probes every service and
  // drives sleds; head nodes read and write sleds (which kinds each reaches:
  // `nodeInboxesReached`). Every service answers on its own, and subscribes to its own
  // kind's inboxes only. Sleds take their inbox over links too (link scope `node`,
  // protocol link.ts), whose token goes to whoever may publish here: only trusted
  // services may, and granting a client or a gateway publish here would hand it that
  // token as well; a role that could subscribe to a sled's inbox could offer its own.
  node: {
    coordinator: "both",
    headnode: "both",
    sled: "subscribe",
    gateway: "subscribe",
    client: "none",
    operator: "both",
  },
  // Volume I/O: clients and gateways send, primaries (head nodes) serve; the
  // coordinator trims a volume's tail when it resizes it.
  volume: {
    coordinator: "publish",
    headnode: "subscribe",
    sled: "none",
    gateway: "publish",
    client: "publish",
    operator: "both",
  },
  // Snapshot control of a partition: the leading coordinator asks, primaries answer.
  partitionControl: {
    coordinator: "publish",
    headnode: "subscribe",
    sled: "none",
    gateway: "none",
    client: "none",
    operator: "both",
  },
  // Replication between head nodes only.
  replica: {
    coordinator: "none",
    headnode: "both",
    sled: "none",
    gateway: "none",
    client: "none",
    operator: "both",
  },
  // Replies: each requester reads its own, under its role's prefix (replyInboxOf).
  // Sleds and gateways answer by `allow_responses` (`answersByResponsePermission`);
  // coordinators and head nodes publish their replies here.
  inbox: {
    coordinator: "both",
    headnode: "both",
    sled: "subscribe",
    gateway: "subscribe",
    client: "subscribe",
    operator: "both",
  },
  // The control store lives in JetStream; only the coordinator (and the operator) use it.
  jetstream: {
    coordinator: "publish",
    headnode: "none",
    sled: "none",
    gateway: "none",
    client: "none",
    operator: "publish",
  },
  controlKv: {
    coordinator: "publish",
    headnode: "none",
    sled: "none",
    gateway: "none",
    client: "none",
    operator: "publish",
  },
};

/** Whose inboxes each role sends requests to: its publish on the `node` family. */
export const nodeInboxesReached: Record<NatsRole, readonly ServiceKind[]> = {
  coordinator: serviceKinds,
  headnode: ["sled"],
  sled: [],
  gateway: [],
  client: [],
  operator: serviceKinds,
};

/**
 * The roles that answer only what they received (nats-server's `allow_responses`), with
 * no right to publish on _INBOX: sleds and gateways, the services whose credentials
 * travel furthest (every `ballast nbd` user holds the gateway's), which are sent
 * requests by trusted services only and answer each one. Not the coordinator or head
 * nodes: nats-server keeps an entry per message delivered with a reply subject until it
 * is answered or expires, and scans them all on each delivery once there are more than
 * 4096. The coordinator is delivered JetStream messages (its KV watches) that are never
 * answered, and a client may send either requests with a reply subject they drop
 * (Service's isReplyInbox check): entries that would pile up for replyPermissionMs.
 * Both are as trusted as the data they hold, and the check keeps their replies to
 * _INBOX subjects.
 */
export const answersByResponsePermission: Record<NatsRole, boolean> = {
  coordinator: false,
  headnode: false,
  sled: true,
  gateway: true,
  client: false,
  operator: false,
};

export interface RolePermissions {
  publish: string[];
  subscribe: string[];
  /** nats-server's `allow_responses`: each request received may be answered this often, this long. */
  responses?: { max: number; expiresMs: number };
}

/** The publish and subscribe allow-lists of one role, as nats-server takes them. */
export function permissionsOf(role: NatsRole): RolePermissions {
  const publish: string[] = [];
  const subscribe: string[] = [];
  for (const family of Object.keys(permissionTable) as SubjectFamily[]) {
    const access = permissionTable[family][role];
    let patterns = familyPatterns(family);
    const ownKind = (serviceKinds as readonly string[]).includes(role);
    if (family === "inbox" && role !== "operator") {
      // Its own replies only (replyInboxOf); the operator reads them all.
      // Its own replies to read; anyone's to answer.
      if (access === "subscribe" || access === "both") subscribe.push(`${replyInboxOf(role)}.>`);
      if (access === "publish" || access === "both") publish.push(...patterns);
      continue;
    }
    if (family === "node" && ownKind) {
      // Its own kind's inboxes to serve; the kinds it calls, to send to.
      const kind = role as ServiceKind;
      if (access === "subscribe" || access === "both") {
        subscribe.push(subjects.node.kindPattern(kind));
      }
      if (access === "publish" || access === "both") {
        publish.push(
          ...nodeInboxesReached[role].map((reached) => subjects.node.kindPattern(reached)),
        );
      }
      continue;
    }
    if (family === "coordinatorServices" && ownKind && access === "publish") {
      // A service may report only as its own kind.
      publish.push(subjects.coordinatorServices.build(role as (typeof serviceKinds)[number]));
      continue;
    }
    if (family === "heartbeat" && ownKind) {
      // A service may beat only as its own kind, under any node id.
      const own = `${subjectRoot}.heartbeat.${role}.*`;
      if (access === "publish") patterns = [own];
      if (access === "both") {
        publish.push(own);
        subscribe.push(...patterns);
        continue;
      }
    }
    if (access === "publish" || access === "both") publish.push(...patterns);
    if (access === "subscribe" || access === "both") subscribe.push(...patterns);
  }
  return answersByResponsePermission[role]
    ? { publish, subscribe, responses: { max: 1, expiresMs: replyPermissionMs } }
    : { publish, subscribe };
}
