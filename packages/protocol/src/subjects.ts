// Every NATS subject Ballast uses is built here and nowhere else. Each actor has one
// inbox subject, and the message's `type` (not the subject) selects the handler: that
// keeps one dispatch point per actor and lets one subject carry a batch of any kind.
//
// Every token that comes from outside (a node id, a volume name, a partition number) is
// validated before it becomes part of a subject, because a `.`, `*`, `>` or space in a
// token would change which subscribers receive the message.

import { nodeIdLengthMax, volumeNameLengthMax } from "./limits.ts";

export const subjectRoot = "ballast.v1";

/** The kinds of service in a cluster. */
export const serviceKinds = ["coordinator", "headnode", "sled", "gateway"] as const;
export type ServiceKind = (typeof serviceKinds)[number];

const namePattern = /^[a-z0-9][a-z0-9-]*$/;

export class SubjectTokenError extends Error {
  override readonly name = "SubjectTokenError";
}

function checkName(what: string, value: string, lengthMax: number): string {
  if (typeof value !== "string" || value.length === 0 || value.length > lengthMax) {
    throw new SubjectTokenError(
      `${what} must be 1 to ${lengthMax} characters, got ${JSON.stringify(value)}`,
    );
  }
  if (!namePattern.test(value)) {
    throw new SubjectTokenError(
      `${what} may hold only lowercase letters, digits and '-', and must start with a letter or digit; got ${JSON.stringify(value)}`,
    );
  }
  return value;
}

export function checkNodeId(nodeId: string): string {
  return checkName("node id", nodeId, nodeIdLengthMax);
}

export function checkVolumeName(volume: string): string {
  return checkName("volume name", volume, volumeNameLengthMax);
}

export function isValidName(value: string, lengthMax: number): boolean {
  return (
    typeof value === "string" &&
    value.length > 0 &&
    value.length <= lengthMax &&
    namePattern.test(value)
  );
}

export function checkServiceKind(kind: string): ServiceKind {
  if (!(serviceKinds as readonly string[]).includes(kind)) {
    throw new SubjectTokenError(
      `service kind must be one of ${serviceKinds.join(", ")}; got ${JSON.stringify(kind)}`,
    );
  }
  return kind as ServiceKind;
}

export function checkPartition(partition: number): number {
  if (!Number.isSafeInteger(partition) || partition < 0) {
    throw new SubjectTokenError(`partition must be a non-negative integer, got ${partition}`);
  }
  return partition;
}

/**
 * The subjects. Each entry pairs the builder of a concrete subject with the pattern a
 * subscriber uses, so that the two can never drift apart.
 */
export const subjects = {
  /** Liveness: every service publishes here on a fixed interval. */
  heartbeat: {
    pattern: `${subjectRoot}.heartbeat.*.*`,
    build(kind: ServiceKind, nodeId: string): string {
      return `${subjectRoot}.heartbeat.${checkServiceKind(kind)}.${checkNodeId(nodeId)}`;
    },
  },
  /**
   * Requests for the cluster's control plane from clients, gateways and operators (the
   * catalogue, snapshots, status), answered by the leading coordinator.
   */
  coordinator: {
    pattern: `${subjectRoot}.coordinator`,
    build(): string {
      return `${subjectRoot}.coordinator`;
    },
  },
  /**
   * The control plane's destructive requests (volume delete, resize, rollback; snapshot
   * delete: `adminRequestTypes`, permissions.ts), apart from `coordinator` so that NATS
   * permissions keep them from whoever holds only the client's credentials: only the
   * operator role may publish here. The leading coordinator answers.
   */
  coordinatorAdmin: {
    pattern: `${subjectRoot}.coordinator.admin`,
    build(): string {
      return `${subjectRoot}.coordinator.admin`;
    },
  },
  /**
   * What only services send the leading coordinator (a head node's reports and
   * checkpoint records), apart from `coordinator` so that NATS permissions can keep a
   * client from sending them: the last token is the sender's kind, and each service
   * role may publish only under its own (permissions.ts).
   */
  coordinatorServices: {
    pattern: `${subjectRoot}.coordinator.from.*`,
    build(from: ServiceKind): string {
      return `${subjectRoot}.coordinator.from.${checkServiceKind(from)}`;
    },
  },
  /**
   * A node's own inbox: requests addressed to one service instance. The kind is part of
   * the subject so that NATS permissions can keep each role to its own kind's inboxes
   * (permissions.ts): a gateway's credentials must not let it listen on, and answer
   * for, a sled or a head node.
   */
  node: {
    pattern(kind: ServiceKind, nodeId: string): string {
      return subjects.node.build(kind, nodeId);
    },
    /** Every inbox of one kind: what a role of that kind may subscribe to. */
    kindPattern(kind: ServiceKind): string {
      return `${subjectRoot}.node.${checkServiceKind(kind)}.*`;
    },
    build(kind: ServiceKind, nodeId: string): string {
      return `${subjectRoot}.node.${checkServiceKind(kind)}.${checkNodeId(nodeId)}`;
    },
  },
  /** Block I/O for one partition of a volume, served by that partition's primary. */
  volume: {
    pattern(volume: string, partition: number): string {
      return `${subjectRoot}.volume.${checkVolumeName(volume)}.${checkPartition(partition)}`;
    },
    build(volume: string, partition: number): string {
      return `${subjectRoot}.volume.${checkVolumeName(volume)}.${checkPartition(partition)}`;
    },
  },
  /**
   * Control of one partition (snapshots), served by its primary like `volume` but apart
   * from block I/O: only the coordinator sends here.
   */
  partitionControl: {
    pattern(volume: string, partition: number): string {
      return subjects.partitionControl.build(volume, partition);
    },
    build(volume: string, partition: number): string {
      return `${subjectRoot}.partition.${checkVolumeName(volume)}.${checkPartition(partition)}`;
    },
  },
  /** Replication traffic addressed to one replica (one node) of one partition. */
  replica: {
    pattern(volume: string, partition: number, nodeId: string): string {
      return subjects.replica.build(volume, partition, nodeId);
    },
    build(volume: string, partition: number, nodeId: string): string {
      return `${subjectRoot}.replica.${checkVolumeName(volume)}.${checkPartition(partition)}.${checkNodeId(nodeId)}`;
    },
  },
} as const;

/** Reads the kind and node id back out of a heartbeat subject; undefined if it is not one. */
export function parseHeartbeatSubject(
  subject: string,
): { kind: ServiceKind; nodeId: string } | undefined {
  const tokens = subject.split(".");
  if (tokens.length !== 5 || `${tokens[0]}.${tokens[1]}` !== subjectRoot) return undefined;
  if (tokens[2] !== "heartbeat") return undefined;
  const kind = tokens[3] ?? "";
  const nodeId = tokens[4] ?? "";
  if (!(serviceKinds as readonly string[]).includes(kind)) return undefined;
  if (!isValidName(nodeId, nodeIdLengthMax)) return undefined;
  return { kind: kind as ServiceKind, nodeId };
}

/**
 * Where replies go: every Ballast connection takes its reply subjects under this prefix
 * (nats.js's inboxes), and a service answers a NATS request only when its reply subject
 * is under it. NATS checks a publisher's permission on a message's subject, never on its
 * reply subject, and the responder publishes the reply as its own user: a reply subject
 * chosen by the sender would otherwise let anyone who may send a service a request make
 * it publish wherever the service may (the coordinator: into the control bucket).
 */
export const replyInboxPrefix = "_INBOX.";

/** Whether a service may answer a NATS request whose reply subject is `reply`. */
export function isReplyInbox(reply: string): boolean {
  return reply.length > replyInboxPrefix.length && reply.startsWith(replyInboxPrefix);
}

/** Names of the JetStream key-value buckets that hold control state. */
export const buckets = {
  /** Cluster control state: volumes, partitions, replica sets, leases. */
  control: "ballast-control",
} as const;
