// Faults of one replica's storage on the head node shell: a journal that fails (a full
// disk, an I/O error) fails that replica alone. It answers what waits, never acknowledges
// again, stops serving, says so in its status and node info, and the process and the
// other replicas carry on. Real journals in a temporary directory, a fake service in
// place of NATS (as in headnode.test.ts), and the test-only journal failure hook.

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BallastError, ErrorCode, type Message, subjects } from "@ballast/protocol";
import { type CommonConfig, createLogger, type Service } from "@ballast/runtime";
import { afterEach, beforeEach, describe, expect, test, vi } from "vitest";
import { HeadNode } from "../src/headnode.ts";

type Handler = (message: Message) => unknown;

/** The parts of a Service the head node uses, with subjects served from a map. */
class FakeService {
  readonly nodeId = "head-1";
  readonly logger = createLogger({ service: "headnode", nodeId: "head-1", level: "silent" });
  readonly served = new Map<string, Handler>();
  description: (() => Record<string, unknown>) | undefined;
  private closers: (() => Promise<void>)[] = [];

  readonly bus = {
    request: async (subject: string) => {
      throw new BallastError(ErrorCode.Unavailable, `nothing answers ${subject} in this test`);
    },
    publish: () => undefined,
  };

  serveInbox(_accept: readonly string[], dispatch: Handler) {
    return this.serve(subjects.node.build(this.nodeId), {}, dispatch);
  }

  serve(subject: string, _options: unknown, dispatch: Handler) {
    this.served.set(subject, dispatch);
    return {
      stop: async () => {
        if (this.served.get(subject) === dispatch) this.served.delete(subject);
      },
    };
  }

  setDescription(describe: () => Record<string, unknown>): void {
    this.description = describe;
  }

  onClose(closer: () => Promise<void>): void {
    this.closers.push(closer);
  }

  async close(): Promise<void> {
    for (const closer of this.closers) await closer();
  }

  async call(subject: string, message: Record<string, unknown>): Promise<unknown> {
    const handler = this.served.get(subject);
    if (handler === undefined) {
      throw new BallastError(ErrorCode.Unavailable, `nobody serves ${subject}`);
    }
    return handler(message as unknown as Message);
  }

  inbox(message: Record<string, unknown>) {
    return this.call(subjects.node.build(this.nodeId), message);
  }
}

const partitionBytes = 1024 * 1024;
let dataDir: string;
let service: FakeService;
let node: HeadNode;

beforeEach(async () => {
  dataDir = await mkdtemp(join(tmpdir(), "ballast-headnode-faults-"));
  service = new FakeService();
  node = new HeadNode(service as unknown as Service, { dataDir } as unknown as CommonConfig, 1);
  node.start();
});

afterEach(async () => {
  vi.restoreAllMocks();
  await service.close();
  await rm(dataDir, { recursive: true, force: true });
});

function configure(partition: number, epoch: number) {
  return service.inbox({
    type: "headnode.configure.v1",
    volume: "vol",
    partition,
    partitionStart: partition * partitionBytes,
    partitionBytes,
    epoch,
    primary: "head-1",
    secondaries: [],
    sleds: ["sled-1"],
  });
}

function write(partition: number, epoch: number, fill: number) {
  return service.call(subjects.volume.build("vol", partition), {
    type: "volume.write.v1",
    volume: "vol",
    partition,
    epoch,
    writes: [{ offset: partition * partitionBytes, data: new Uint8Array(4096).fill(fill) }],
  });
}

async function read(partition: number, epoch: number): Promise<number | undefined> {
  const { data } = (await service.call(subjects.volume.build("vol", partition), {
    type: "volume.read.v1",
    volume: "vol",
    partition,
    epoch,
    reads: [{ offset: partition * partitionBytes, length: 4096 }],
  })) as { data: Uint8Array[] };
  return data[0]![0];
}

function status(partition: number) {
  return service.inbox({
    type: "headnode.replica.status.v1",
    volume: "vol",
    partition,
  }) as Promise<{
    role: string;
    failed?: string;
    lastOpNum: number;
  }>;
}

describe("a journal that fails", () => {
  for (const errno of ["ENOSPC", "EIO"] as const) {
    test(`with ${errno} fails its replica alone, which never acknowledges again`, async () => {
      const kill = vi.spyOn(process, "kill").mockImplementation(() => true);
      await configure(0, 1);
      await configure(1, 1);
      await write(0, 1, 0x11);
      await write(1, 1, 0x21);

      node.injectJournalFailureForTesting("vol", 0, errno);
      // The write waiting on the failed append is answered, not acknowledged.
      const failed = await write(0, 1, 0x12).catch((error: unknown) => error);
      expect(failed).toBeInstanceOf(BallastError);
      expect((failed as BallastError).code).toBe(ErrorCode.Unavailable);
      expect((failed as BallastError).message).toMatch(
        errno === "ENOSPC" ? /no space left/ : /EIO/,
      );
      // The process is not stopped.
      expect(kill).not.toHaveBeenCalled();

      // It serves nothing of the partition any more: neither volume nor replication.
      expect(service.served.has(subjects.volume.build("vol", 0))).toBe(false);
      expect(service.served.has(subjects.replica.build("vol", 0, "head-1"))).toBe(false);
      const failedStatus = await status(0);
      expect(failedStatus.role).toBe("idle");
      expect(failedStatus.failed).toMatch(/journal append failed/);
      const replicas = service.description?.().replicas as { partition: number; failed?: string }[];
      expect(replicas.find((replica) => replica.partition === 0)?.failed).toMatch(/stopped/);
      expect(replicas.find((replica) => replica.partition === 1)?.failed).toBeUndefined();

      // The other partition on the node goes on working.
      await write(1, 1, 0x22);
      expect(await read(1, 1)).toBe(0x22);
      expect((await status(1)).role).toBe("primary");
      expect(kill).not.toHaveBeenCalled();
    });
  }

  test("a replica configured again after its journal failed is reopened from what is durable", async () => {
    vi.spyOn(process, "kill").mockImplementation(() => true);
    await configure(0, 1);
    await write(0, 1, 0x31);
    node.injectJournalFailureForTesting("vol", 0, "ENOSPC");
    await write(0, 1, 0x32).catch(() => undefined);
    expect((await status(0)).failed).toBeDefined();

    // Space freed, the coordinator configures it again: recovery reopens it.
    const reopened = (await configure(0, 2)) as { role: string; failed?: string };
    expect(reopened.role).toBe("primary");
    expect(reopened.failed).toBeUndefined();
    expect(await read(0, 2)).toBe(0x31);
    await write(0, 2, 0x33);
    expect(await read(0, 2)).toBe(0x33);
  });
});
