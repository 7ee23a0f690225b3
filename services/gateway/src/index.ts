export * from "@ballast/nbd";
export * from "./gateway.ts";
