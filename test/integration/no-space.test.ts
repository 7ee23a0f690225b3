// Full sleds on real processes (issue 12, "no wedge when full"): tiny sleds fill up
// under NBD writes. A write must then be answered NBD_ENOSPC within a few seconds (the
// head node knows its flushes fail for no space and its journal is half full), not wait
// for journal room that never comes and time out. (Which write gets the first ENOSPC
// depends on when flushes run; that one comes, and promptly, does not.) A trim is still taken, and once
// trims and a flush let the journal go, writes are taken again: the checkpoint that
// releases the journal is a blob, which the sleds' reserve still has room for.
//
// Sizes: two sleds of one 4 MiB device each hold under 4 MiB of chunks (every chunk has
// two copies); the journal limit is 8 MiB, so the head node refuses writes once it holds
// 4 MiB it cannot flush. The volume (16 MiB) is written once, front to back, with
// distinct bytes, so nothing written is overwritten before the sleds are full.

import { Command } from "@ballast/nbd/wire";
import { subjects } from "@ballast/protocol";
import { afterAll, beforeAll, expect, test } from "vitest";
import { TestNbdClient } from "../../packages/nbd/test/nbd-test-client.ts";
import { startTestCluster, type TestCluster, waitFor } from "../support/cluster.ts";
import { gatewayUrl } from "../support/faults.ts";

const mebibyte = 1024 * 1024;
const volumeBytes = 16 * mebibyte;
const writeBytes = 256 * 1024;
/** NBD_ENOSPC. */
const enospc = 28;
/**
 * How long one write may take to be answered. Far above a write into the journal or an
 * ENOSPC answer on a loaded machine; below the head node's request deadline (30 s), after
 * which a write that waited for room would fail with a timeout instead.
 */
const replyWaitMs = 20_000;

let cluster: TestCluster;
let client: TestNbdClient;
let handle = 0n;

beforeAll(async () => {
  cluster = await startTestCluster({
    headNodes: 2,
    sleds: 2,
    gateways: 1,
    nbdPortFirst: 0,
    env: {
      BALLAST_SLED_DEVICES: "1",
      BALLAST_SLED_DEVICE_BYTES: String(4 * mebibyte),
      BALLAST_JOURNAL_BYTES_MAX: String(8 * mebibyte),
      BALLAST_CHECKPOINT_INTERVAL_MS: "1000",
    },
  });
  await cluster.bus.request(subjects.coordinator.build(), {
    type: "volume.create.v1",
    name: "full",
    sizeBytes: volumeBytes,
    partitionBytes: volumeBytes,
    replicaCount: 2,
  });
  const url = new URL(await gatewayUrl(cluster.bus, "gateway-1", "full"));
  ({ client } = await TestNbdClient.open({ port: Number(url.port) }, "full"));
}, 60_000);
afterAll(async () => {
  client?.destroy();
  await cluster?.stop();
});

async function request(command: number, offset: number, length: number, data?: Uint8Array) {
  handle += 1n;
  client.sendRequest({ command, handle, offset, length, ...(data ? { data } : {}) });
  const reply = await client.readReply(replyWaitMs);
  expect(reply.handle).toBe(handle);
  return reply.error;
}

function pattern(bytes: number, seed: number): Buffer {
  const data = Buffer.alloc(bytes);
  for (let at = 0; at < bytes; at += 4) data.writeUInt32LE((seed * 2654435761 + at) >>> 0, at);
  return data;
}

test("writes to full sleds answer ENOSPC promptly; trims and a flush make room again", async () => {
  const outcomes: number[] = [];
  for (let offset = 0; offset < volumeBytes; offset += writeBytes) {
    const error = await request(Command.Write, offset, writeBytes, pattern(writeBytes, offset));
    outcomes.push(error);
    if (error !== 0) break;
  }
  // Some writes went in (to the journal, and to the sleds while they had room), then ENOSPC.
  expect(outcomes.at(-1)).toBe(enospc);
  expect(outcomes.filter((error) => error === 0).length).toBeGreaterThanOrEqual(16);

  // Trims are always taken; with everything trimmed, a flush writes no chunk, and the
  // checkpoint after it (a blob, in the sleds' reserve) releases the journal.
  expect(await request(Command.Trim, 0, volumeBytes)).toBe(0);
  expect(await request(Command.Flush, 0, 0)).toBe(0);
  const accepted = await waitFor(
    "a write to be taken again after the trim",
    async () =>
      (await request(Command.Write, 0, 4096, pattern(4096, 2))) === 0 ? true : undefined,
    60_000,
    1000,
  );
  expect(accepted).toBe(true);
}, 240_000);
