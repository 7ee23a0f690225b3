// The headnode service shell: the head node: it will host partition replicas (journal, replication, commit, flush, checkpoints).
// For now it joins the cluster (heartbeats, node info on its inbox) and owns its data
// directory; its actor arrives with its own issue.

import type { CommonConfig, Service } from "@ballast/runtime";

export const headnodeOptions = {} as const;

export const headnodeDefinition = {
  kind: "headnode" as const,
  options: headnodeOptions,
  async start(service: Service, config: CommonConfig) {
    service.serveInbox([], () => undefined);
    service.setDescription(() => ({ dataDir: config.dataDir }));
  },
};
