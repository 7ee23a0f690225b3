export * from "./sled.ts";
