// @ballast/sled: the sled service (device files, chunks and blobs with checksums) and
// its parts, for tests and tools.

export * from "./allocator.ts";
export * from "./block-file.ts";
export * as sledConstants from "./constants.ts";
export * from "./device.ts";
export * from "./device-set.ts";
export * from "./errors.ts";
export * from "./format.ts";
export * from "./sled.ts";
export * from "./store.ts";
