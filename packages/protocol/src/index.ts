// @ballast/protocol: the wire. Subjects, messages, the codec that is the edge between
// bytes and types, the reply envelope, error codes and the limits they enforce; the
// control records the coordinator stores, and their edge (records.ts).

export * from "./checkpoint-header.ts";
export * from "./checksum.ts";
export * from "./codec.ts";
export * from "./envelope.ts";
export * from "./errors.ts";
export * from "./incarnation.ts";
export * as limits from "./limits.ts";
export * from "./link.ts";
export * from "./messages/index.ts";
export * from "./permissions.ts";
export * from "./records.ts";
export * from "./subjects.ts";
