export * from "@ballast/nbd";
export * from "./exposure.ts";
export * from "./gateway.ts";
