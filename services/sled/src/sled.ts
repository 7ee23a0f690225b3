// The sled service shell. It opens the sled's devices (formatting them on the first
// start, refusing any that are not this sled's), recovers the store from their
// allocation maps, and answers chunk, blob, stat and scrub requests on the node's inbox
// through one dispatch point. The storage rules live in store.ts (the write order that
// makes acknowledgements durable), format.ts (the bytes on disk) and allocator.ts (the
// pure core that places objects); this module only wires them to the bus.
//
// Failure model: a device that is not this sled's, or not of this format, stops the
// start with a DeviceError that says why (the process exits non-zero; nothing is
// reformatted). A device of this sled whose allocation map cannot be read, or that fails
// a write or an fdatasync later, is failed on its own: the sled serves from the others
// and its status details (node.info) name the failed devices and any damaged slots. Bad
// requests and operating faults answer typed errors and the sled goes on. Blob uploads live in memory
// only: a restart drops them, and their reserved space is free again.

import type { MessageOf } from "@ballast/protocol";
import {
  type CommonConfig,
  type ConfigOf,
  linkOptions,
  listenLinksAsConfigured,
  meterOf,
  type OptionSpecs,
  type Service,
} from "@ballast/runtime";
import {
  blobUploadSweepIntervalMs,
  blockBytes,
  damagedSlotsDescribedMax,
  deviceBytesDefault,
  deviceBytesMax,
  deviceBytesMin,
  deviceCountDefault,
  deviceCountMax,
  deviceCountMin,
} from "./constants.ts";
import { openDeviceSet } from "./device-set.ts";
import { fileGenerationMark } from "./generation-mark.ts";
import { SledStore } from "./store.ts";

export const sledOptions = {
  deviceCount: {
    flag: "devices",
    env: "BALLAST_SLED_DEVICES",
    type: "integer",
    default: deviceCountDefault,
    min: deviceCountMin,
    max: deviceCountMax,
    description: "device files of a new sled (fixed once formatted)",
  },
  deviceBytes: {
    flag: "device-bytes",
    env: "BALLAST_SLED_DEVICE_BYTES",
    type: "integer",
    default: deviceBytesDefault,
    min: deviceBytesMin,
    max: deviceBytesMax,
    multipleOf: blockBytes,
    description: `size of each device file, a multiple of ${blockBytes} (fixed once formatted)`,
  },
  // Where it takes links: head nodes' chunk writes and reads without nats-server.
  ...linkOptions,
} as const satisfies OptionSpecs;

type SledConfig = ConfigOf<typeof sledOptions> & CommonConfig;

/** Every request type the sled's inbox takes (node.info.v1 is added by the runtime). */
export const sledRequestTypes = [
  "sled.chunk.write.v1",
  "sled.chunk.read.v1",
  "sled.chunk.read-many.v1",
  "sled.chunk.delete.v1",
  "sled.chunk.stat.v1",
  "sled.chunk.list.v1",
  "sled.chunk.damaged.v1",
  "sled.stat.v1",
  "sled.blob.begin.v1",
  "sled.blob.part.v1",
  "sled.blob.commit.v1",
  "sled.blob.abort.v1",
  "sled.blob.get.v1",
  "sled.blob.delete.v1",
  "sled.blob.list.v1",
  "sled.scrub.v1",
] as const;

export type SledRequest = MessageOf<(typeof sledRequestTypes)[number]>;

export class Sled {
  constructor(readonly store: SledStore) {}

  /** The one dispatch point: every request type, and a compile error for a missing one. */
  dispatch(message: SledRequest) {
    const store = this.store;
    switch (message.type) {
      case "sled.chunk.write.v1":
        return store.writeChunk(message.owner, message.chunkId, message.data);
      case "sled.chunk.read.v1":
        return store
          .readChunk(message.owner, message.chunkId, message.offset, message.length)
          .then((data) => ({ data }));
      case "sled.chunk.read-many.v1":
        return store.readChunks(message.owner, message.reads);
      case "sled.chunk.delete.v1":
        return store.deleteChunk(message.owner, message.chunkId);
      case "sled.chunk.stat.v1":
        return store.statChunk(message.owner, message.chunkId);
      case "sled.chunk.list.v1":
        return store.listChunks(message.volume, message.startAfter, message.limit);
      case "sled.chunk.damaged.v1":
        return store.damagedChunks(message.startAfter, message.limit);
      case "sled.stat.v1":
        return store.stat();
      case "sled.blob.begin.v1":
        return store.beginBlob(message.key, message.bytes, message.checksum);
      case "sled.blob.part.v1":
        return store.putBlobPart(message.uploadId, message.offset, message.data);
      case "sled.blob.commit.v1":
        return store.commitBlob(message.uploadId);
      case "sled.blob.abort.v1":
        return store.abortBlob(message.uploadId);
      case "sled.blob.get.v1":
        return store.getBlob(message.key, message.offset, message.length);
      case "sled.blob.delete.v1":
        return store.deleteBlob(message.key);
      case "sled.blob.list.v1":
        return store.listBlobs(message.prefix, message.startAfter, message.limit);
      case "sled.scrub.v1":
        return store.scrub();
      default: {
        const unreachable: never = message;
        throw new Error(`no handler for ${(unreachable as { type: string }).type}`);
      }
    }
  }

  /** The kind-specific part of node.info.v1. */
  describe(dataDir: string): Record<string, unknown> {
    const stat = this.store.stat();
    const health = this.store.health();
    return {
      dataDir,
      devices: stat.devices.length,
      capacityBytes: stat.capacityBytes,
      usedBytes: stat.usedBytes,
      chunks: stat.chunks,
      blobs: stat.blobs,
      failedDevices: health.failedDevices,
      damagedSlots: health.damagedSlots.length,
      // A bounded sample: the full list is in scrub reports and the log.
      damagedSlotsSample: health.damagedSlots.slice(0, damagedSlotsDescribedMax),
    };
  }
}

/** Capacity gauges, read when Prometheus scrapes (no-ops when metrics are off). */
function observeCapacity(service: Service, store: SledStore): void {
  const meter = meterOf(service);
  const capacity = meter.createObservableGauge("ballast_sled_capacity_bytes", {
    description: "bytes of chunk space on this sled's devices",
  });
  const used = meter.createObservableGauge("ballast_sled_used_bytes", {
    description: "bytes of chunk space in use",
  });
  const chunks = meter.createObservableGauge("ballast_sled_chunks", {
    description: "chunks stored",
  });
  const failed = meter.createObservableGauge("ballast_sled_failed_devices", {
    description: "devices taken out of service after an I/O error",
  });
  const damaged = meter.createObservableGauge("ballast_sled_damaged_objects", {
    description: "objects a scrub found damaged and still stored so, and damaged slots",
  });
  meter.addBatchObservableCallback(
    (result) => {
      const stat = store.stat();
      result.observe(capacity, stat.capacityBytes);
      result.observe(used, stat.usedBytes);
      result.observe(chunks, stat.chunks);
      result.observe(failed, store.health().failedDevices.length);
      result.observe(damaged, stat.damagedObjects ?? 0);
    },
    [capacity, used, chunks, failed, damaged],
  );
}

export const sledDefinition = {
  kind: "sled" as const,
  options: sledOptions,
  async start(service: Service, config: SledConfig) {
    const logger = service.logger;
    const devices = await openDeviceSet({
      dataDir: config.dataDir,
      sledId: config.nodeId,
      deviceCount: config.deviceCount,
      deviceBytes: config.deviceBytes,
      log: (message, details) => logger.info(details, message),
    });
    const { store, report } = await SledStore.open({
      sledId: config.nodeId,
      devices,
      logger,
      generationMark: fileGenerationMark(config.dataDir),
    });
    service.onClose(() => store.close());
    logger.info({ ...report, devices: devices.map((device) => device.path) }, "store recovered");
    const sled = new Sled(store);
    // The inbox over links too (scope `node`, protocol link.ts): a chunk write is 4 MiB,
    // two sleds' worth for every chunk a primary flushes, and each crossing of
    // nats-server costs a copy in and out of it. The scope is safe because only trusted
    // services may publish on node inboxes (permissions.ts): a token, asked for over
    // NATS on this inbox, goes only to those who could send it all over NATS anyway.
    // Listening before the inbox is served, so that it is routed from the listener.
    await listenLinksAsConfigured(service, config);
    // Replies over links go in parts, read data by reference (ServeOptions): every read
    // answers a buffer of its own (a file read's, or a read trip's copy out of the shared
    // area: read-pool.ts), which nothing writes after.
    service.serveInbox(sledRequestTypes, (message) => sled.dispatch(message), {
      link: "node",
      repliesByReference: true,
    });
    service.setDescription(() => sled.describe(config.dataDir));
    observeCapacity(service, store);
    const sweep = setInterval(() => {
      void store.expireUploads().catch((error: unknown) => {
        logger.error({ error: String(error) }, "expiring idle uploads failed");
      });
    }, blobUploadSweepIntervalMs);
    sweep.unref();
    service.onClose(() => clearInterval(sweep));
  },
};
