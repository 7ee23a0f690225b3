// @ballast/cli as a library: the local cluster launcher and cluster discovery, for the
// integration tests and for tools that embed a cluster.

export * from "./cluster-file.ts";
export * from "./connect.ts";
export * as cliConstants from "./constants.ts";
export * from "./credentials.ts";
export * from "./errors.ts";
export * from "./local-cluster.ts";
export * from "./nats-server.ts";
export * from "./processes.ts";
export * from "./service-bundles.ts";
export * from "./status.ts";
