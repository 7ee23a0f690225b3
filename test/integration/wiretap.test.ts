// The benches' --count-messages wiretap (bench/wiretap.ts), on a real nats-server with
// Ballast's operator permissions: it subscribes only to what the operator may read, so
// no subscription is refused, and it counts one message on every such family, each
// once. bench:write's tap subscribed to `ballast.v1.>`, which the permissions refuse
// (each family is named), and went on printing the counts of the replies alone.

import { join } from "node:path";
import { type RunningNatsServer, startNatsServer } from "@ballast/cli";
import { permissionsOf } from "@ballast/protocol";
import { afterAll, beforeAll, expect, test } from "vitest";
import { startWiretap, wiretapPatterns } from "../../bench/wiretap.ts";
import { connectTestBus, temporaryDirectory, testPasswords, waitFor } from "../support/cluster.ts";

let nats: RunningNatsServer;
let directory: { path: string; remove: () => Promise<void> };

beforeAll(async () => {
  directory = await temporaryDirectory("ballast-wiretap-");
  nats = await startNatsServer({
    directory: join(directory.path, "nats"),
    users: [
      {
        user: "operator",
        password: testPasswords.operator,
        permissions: permissionsOf("operator"),
      },
    ],
  });
}, 30_000);

afterAll(async () => {
  await nats?.stop();
  await directory?.remove();
});

test("the wiretap reads every family the operator may, none refused, each message once", async () => {
  const tap = await connectTestBus(nats.url);
  const sender = await connectTestBus(nats.url);
  try {
    const wiretap = startWiretap(tap.connection, (subject) => subject);
    await tap.connection.flush();
    // One subject of each pattern: wildcards filled in.
    const samples = wiretapPatterns().map((pattern) =>
      pattern.replaceAll("*", "x").replace(/>$/, "x.y"),
    );
    expect(samples).toContain("ballast.v1.volume.x.x");
    expect(samples).toContain("ballast.v1.replica.x.x.x");
    expect(samples).toContain("_INBOX.x.y");
    for (const subject of samples) sender.connection.publish(subject, new Uint8Array([1]));
    await sender.connection.flush();
    const counted = () => [...wiretap.counts.values()].reduce((sum, count) => sum + count, 0);
    await waitFor("every sample counted, or a subscription refused", () =>
      wiretap.failure() !== undefined || counted() >= samples.length ? true : undefined,
    );
    expect(wiretap.failure()).toBeUndefined();
    expect(Object.fromEntries(wiretap.counts)).toEqual(
      Object.fromEntries(samples.map((subject) => [subject, 1])),
    );
  } finally {
    await tap.close();
    await sender.close();
  }
}, 60_000);
