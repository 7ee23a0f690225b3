export * from "./catalogue.ts";
export * from "./coordinator.ts";
export * from "./decisions.ts";
export * from "./leadership.ts";
export * from "./leases.ts";
export * from "./membership.ts";
export * from "./placement.ts";
