export * from "./gateway.ts";
export * from "./nbd/index.ts";
