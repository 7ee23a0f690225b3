export * from "./headnode.ts";
