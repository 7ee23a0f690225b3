export * from "./coordinator.ts";
export * from "./membership.ts";
