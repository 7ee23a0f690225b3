// @ballast/runtime: what every Ballast process shares. Configuration, logs, traces, the
// NATS bus, the service shell with its single dispatch point, heartbeats and shutdown.

export * from "./boot-id.ts";
export * from "./bus.ts";
export * from "./config.ts";
export * as constants from "./constants.ts";
export * from "./counter-file.ts";
export * from "./data-dir.ts";
export * from "./data-dir-lock.ts";
export * from "./errors.ts";
export * from "./keyed-lock.ts";
export * from "./link-client.ts";
export * from "./link-options.ts";
export * from "./link-seal.ts";
export * from "./link-server.ts";
export * from "./log-repeat.ts";
export * from "./logger.ts";
export * from "./metrics.ts";
export * from "./run.ts";
export * from "./service.ts";
export * from "./settle.ts";
export * from "./telemetry.ts";
export * from "./test-faults.ts";
export * from "./tracing.ts";
