// The sled service shell: the sled: it will own device files and store chunks and blobs.
// For now it joins the cluster (heartbeats, node info on its inbox) and owns its data
// directory; its actor arrives with its own issue.

import type { CommonConfig, Service } from "@ballast/runtime";

export const sledOptions = {} as const;

export const sledDefinition = {
  kind: "sled" as const,
  options: sledOptions,
  async start(service: Service, config: CommonConfig) {
    service.serveInbox([], () => undefined);
    service.setDescription(() => ({ dataDir: config.dataDir }));
  },
};
