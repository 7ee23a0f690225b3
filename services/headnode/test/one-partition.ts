// Calls on one partition (volume "vol", partition 0) of a head node started on the fake
// service (fake-service.ts), shared by the head-node tests that configure, write and read
// it directly: a configure with defaults the test overrides, a 4 KiB write and read at
// offset 0 in an epoch, the error a promise settles with, if any, and a restart on the
// same disk.

import type { BallastError } from "@ballast/protocol";
import { subjects } from "@ballast/protocol";
import type { CommonConfig, Service } from "@ballast/runtime";
import { HeadNode } from "../src/headnode.ts";
import { FakeService, type StartedHeadNode } from "./fake-service.ts";

export const partitionBytes = 1024 * 1024;
export const volumeId = "1-aaaaaaaaaaaa";

export function configure(service: FakeService, fields: Record<string, unknown>) {
  return service.inbox({
    type: "headnode.configure.v1",
    volume: "vol",
    volumeId,
    partition: 0,
    partitionStart: 0,
    partitionBytes,
    epoch: 1,
    primary: "head-1",
    secondaries: [],
    sleds: ["sled-1"],
    ...fields,
  });
}

export function write(service: FakeService, epoch: number, fill: number) {
  return service.call(subjects.volume.build("vol", 0), {
    type: "volume.write.v1",
    volume: "vol",
    volumeId,
    partition: 0,
    epoch,
    writes: [{ offset: 0, data: new Uint8Array(4096).fill(fill) }],
  });
}

export async function read(service: FakeService, epoch: number): Promise<Uint8Array> {
  const { data } = (await service.call(subjects.volume.build("vol", 0), {
    type: "volume.read.v1",
    volume: "vol",
    volumeId,
    partition: 0,
    epoch,
    reads: [{ offset: 0, length: 4096 }],
  })) as { data: Uint8Array[] };
  return data[0]!;
}

export async function refusal(promise: Promise<unknown>): Promise<BallastError | undefined> {
  return promise.then(
    () => undefined,
    (error: BallastError) => error,
  );
}

/** `started` stopped as a process exit would stop it, and a new node on the same disk. */
export async function restartHeadNode(started: StartedHeadNode): Promise<FakeService> {
  await started.service.close();
  const service = new FakeService();
  new HeadNode(
    service as unknown as Service,
    { dataDir: started.dataDir } as unknown as CommonConfig,
    2,
  ).start();
  return service;
}
