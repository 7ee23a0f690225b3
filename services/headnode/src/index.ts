export { chunkCacheBytesFor, chunkCacheMemoryShare } from "./chunk-cache.ts";
export * from "./headnode.ts";
export * from "./headnode-service.ts";
export * from "./replica/metadata.ts";
export * from "./replica/replica.ts";
export * from "./simulation/simulation.ts";
