// A checkpoint too large to store or read back, on a real partition host (a lone
// primary on a real journal, test-primary.ts): refused before anything is written, it
// shows in the replica's status (which still matches the protocol's schema) and in the
// node's log (checkpoint-bounds.test.ts: nothing is written or released).

import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ReplicaStatus } from "@ballast/protocol";
import { createLogger } from "@ballast/runtime";
import { afterEach, expect, test } from "vitest";
import { FakeService } from "./fake-service.ts";
import { TestPrimary } from "./test-primary.ts";

let primary: TestPrimary | undefined;
let logDir: string | undefined;

afterEach(async () => {
  await primary?.close();
  primary = undefined;
  if (logDir !== undefined) await rm(logDir, { recursive: true, force: true });
  logDir = undefined;
});

test("a refused checkpoint shows in the replica's status and in the node's log", async () => {
  const service = new FakeService();
  logDir = await mkdtemp(join(tmpdir(), "ballast-host-refused-log-"));
  const logFile = join(logDir, "headnode.log");
  Object.assign(service, {
    logger: createLogger({ service: "headnode", nodeId: "head-1", destination: logFile }),
  });
  primary = await TestPrimary.open("ballast-host-refused-", ["sled-1", "sled-2"], undefined, {
    service,
    // A header of a few chunks is already more than this.
    limits: { checkpointHeaderBytesMax: 200, checkpointRetryTicks: 0 },
  });
  const host = primary.host;
  for (let index = 0; index < 3; index++) await primary.writeFlushed(index * 4096, index + 1);
  expect(host.status().checkpointRefused).toBeUndefined();

  host.replica.requestCheckpoint();
  await primary.until(() => host.status().checkpointRefused !== undefined);
  const status = host.status();
  expect(status.checkpointRefused).toMatch(
    /^at op \d+: a checkpoint header of \d+ bytes \(3 chunks\) is more than the 200 a reader accepts$/,
  );
  expect(ReplicaStatus.safeParse(status).error).toBeUndefined();

  const lines = (await readFile(logFile, "utf8"))
    .trim()
    .split("\n")
    .map((line) => JSON.parse(line));
  const refused = lines.filter((line) => /^checkpoint refused/.test(line.msg));
  expect(refused).toHaveLength(1);
  expect(refused[0]).toMatchObject({ level: 50, part: "header", bytesMax: 200 });
});
