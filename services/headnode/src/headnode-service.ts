// The head node's service definition for the runtime.

import type { CommonConfig, Service } from "@ballast/runtime";
import { HeadNode } from "./headnode.ts";
import { nextSession } from "./session.ts";

export const headnodeOptions = {} as const;

export const headnodeDefinition = {
  kind: "headnode" as const,
  options: headnodeOptions,
  async start(service: Service, config: CommonConfig) {
    new HeadNode(service, config, await nextSession(config.dataDir)).start();
  },
};
