export * from "./catalogue.ts";
export * from "./coordinator.ts";
export * from "./leadership.ts";
export * from "./membership.ts";
export * from "./placement.ts";
