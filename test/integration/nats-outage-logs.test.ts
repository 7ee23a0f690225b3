// A real nats-server stopped under a connected client (connectNats, as every service
// connects) for a few seconds: the client tries again every natsReconnectWaitMs and
// used to log a warning at each attempt (about 3 a second per process, measured). The
// outage must be one line when it begins and one when it ends, with the attempts.

import { type ChildProcess, spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { connectNats, createLogger } from "@ballast/runtime";
import { expect, test } from "vitest";
import { temporaryDirectory, waitFor } from "../support/cluster.ts";

const outageMs = 3000;

function startNats(port: number): ChildProcess {
  return spawn("nats-server", ["-a", "127.0.0.1", "-p", String(port)], { stdio: "ignore" });
}

async function stopNats(server: ChildProcess): Promise<void> {
  if (server.exitCode !== null) return;
  const exited = new Promise((resolve) => server.once("exit", resolve));
  server.kill("SIGKILL");
  await exited;
}

test("NATS away for seconds: one line when the connection is lost, one when it is back", async () => {
  const directory = await temporaryDirectory("ballast-nats-outage-");
  const port = 20_000 + Math.floor(Math.random() * 20_000);
  let server = startNats(port);
  const logFile = join(directory.path, "client.log");
  const logger = createLogger({ service: "test", nodeId: "client", destination: logFile });
  const lines = async () =>
    (await readFile(logFile, "utf8").catch(() => ""))
      .split("\n")
      .filter((line) => line !== "")
      .map((line) => JSON.parse(line) as { msg: string; attempts?: number });
  let connection: Awaited<ReturnType<typeof connectNats>> | undefined;
  try {
    connection = await connectNats({
      servers: `nats://127.0.0.1:${port}`,
      name: "outage-test",
      access: {},
      connectTimeoutMs: 20_000,
      logger,
    });
    await stopNats(server);
    await waitFor("the loss logged", async () =>
      (await lines()).find((line) => line.msg.startsWith("NATS connection lost")),
    );
    await new Promise((resolve) => setTimeout(resolve, outageMs));
    server = startNats(port);
    const restored = await waitFor("the return logged", async () =>
      (await lines()).find((line) => line.msg === "NATS connection restored"),
    );
    const lost = (await lines()).filter((line) => line.msg.includes("NATS connection"));
    // Two lines for the outage, not one per attempt...
    expect(lost.map((line) => line.msg)).toEqual([
      "NATS connection lost; reconnecting",
      "NATS connection restored",
    ]);
    // ...though attempts were made all along (every natsReconnectWaitMs, a dozen here).
    expect(restored.attempts).toBeGreaterThan(1);
  } finally {
    await connection?.close().catch(() => undefined);
    await stopNats(server);
    await directory.remove();
  }
});
