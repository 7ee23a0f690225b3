// A service whose NATS user may not subscribe to its own subjects (a permissions
// mistake in a deployment) stops in words, on real processes: a real nats-server with
// Ballast's role permissions, and a real head node process connected as the client
// role, which may not subscribe to a head node's inbox. The server refuses the
// subscription after the service has started; the head node logs it, says it on
// stderr, stops in order, and exits with code 1. It used to die of an unhandled
// rejection: a bare stack, and no line in its log.

import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type RunningNatsServer, startNatsServer } from "@ballast/cli";
import { permissionsOf, subjects } from "@ballast/protocol";
import { afterAll, beforeAll, expect, test } from "vitest";
import { temporaryDirectory } from "../support/cluster.ts";

const headnodeMain = fileURLToPath(new URL("../../services/headnode/src/main.ts", import.meta.url));
const password = randomBytes(12).toString("hex");
let nats: RunningNatsServer;
let directory: { path: string; remove: () => Promise<void> };

beforeAll(async () => {
  directory = await temporaryDirectory("ballast-subscription-refused-");
  nats = await startNatsServer({
    directory: join(directory.path, "nats"),
    users: [{ user: "client", password, permissions: permissionsOf("client") }],
  });
}, 30_000);

afterAll(async () => {
  await nats?.stop();
  await directory?.remove();
});

test("a head node refused its inbox by NATS stops with exit code 1 and says why", async () => {
  const child = spawn(
    process.execPath,
    [
      "--import",
      "tsx",
      headnodeMain,
      "--id",
      "head-1",
      "--data-dir",
      join(directory.path, "head-1"),
      "--nats",
      nats.url,
      "--nats-user",
      "client",
    ],
    {
      env: { ...process.env, BALLAST_NATS_PASSWORD: password, BALLAST_PARENT_PID: "" },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  child.stderr.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
  const inbox = subjects.node.build("headnode", "head-1");
  expect(stderr).toContain(`ballast headnode: NATS ended the subscription to ${inbox}`);
  expect(stderr).not.toContain("unhandled");
  expect(code).toBe(1);
  const log = stdout
    .split("\n")
    .filter((line) => line.startsWith("{"))
    .map((line) => JSON.parse(line) as { level: number; msg: string; subject?: string });
  expect(log).toContainEqual(
    expect.objectContaining({ level: 60, msg: "a subscription failed; stopping", subject: inbox }),
  );
  expect(log.map((line) => line.msg)).toContain("stopped");
}, 60_000);
