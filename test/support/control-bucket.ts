// The coordinator's control bucket on a real nats-server of its own, reached with the
// coordinator role's NATS permissions (and its reply prefix, the only place that role
// may read replies), for tests of the catalogue's parts over the real store.

import { randomBytes } from "node:crypto";
import { type RunningNatsServer, startNatsServer } from "@ballast/cli";
import { buckets, permissionsOf, replyInboxOf } from "@ballast/protocol";
import { Bucket, Kvm } from "@nats-io/kv";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import type { ControlStore } from "../../services/coordinator/src/catalogue.ts";
import { controlStoreOf } from "../../services/coordinator/src/control-store.ts";
import { temporaryDirectory } from "./cluster.ts";

export interface ControlBucket {
  nats: RunningNatsServer;
  connection: NatsConnection;
  kv: Bucket;
  store: ControlStore;
  /** Closes the connection, stops the server and removes its directory. */
  close(): Promise<void>;
}

/** Starts a nats-server in a new directory named from `prefix`, with the bucket created. */
export async function startControlBucket(
  prefix: string,
  logger: Parameters<typeof controlStoreOf>[1],
): Promise<ControlBucket> {
  const directory = await temporaryDirectory(prefix);
  let nats: RunningNatsServer | undefined;
  let connection: NatsConnection | undefined;
  const close = async () => {
    await connection?.close();
    await nats?.stop();
    await directory.remove();
  };
  try {
    const password = randomBytes(12).toString("hex");
    nats = await startNatsServer({
      directory: directory.path,
      users: [{ user: "coordinator", password, permissions: permissionsOf("coordinator") }],
    });
    connection = await connect({
      servers: nats.url,
      user: "coordinator",
      pass: password,
      inboxPrefix: replyInboxOf("coordinator"),
    });
    const kv = await new Kvm(connection).create(buckets.control, { history: 8 });
    if (!(kv instanceof Bucket)) throw new Error("not a bucket");
    return { nats, connection, kv, store: controlStoreOf(kv, logger), close };
  } catch (error) {
    await close();
    throw error;
  }
}
