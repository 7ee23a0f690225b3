// Change detection for the leader's catalogue re-read (issue 14: an idle cost flat in
// the number of partitions). The leader decides from its own copy of the catalogue and
// re-reads the whole of it as a safety net (reconciler.ts); a re-read costs one KV get
// per partition record. A watch on the volume and partition keys counts every change
// (the leader's own writes included), and the re-read is skipped while the count has
// not moved since the last one began: an idle catalogue is not read again but every
// catalogueRereadMsMax.
//
// Failure model: a watch that ends or fails (NATS reconnecting, the stream moved) is
// started again after watchRetryMs; meanwhile `version()` is undefined and the re-read
// runs on its usual interval. A watch counts one change when it starts, since changes
// before it went unseen: the first re-read after it is never skipped.

import type { Logger } from "@ballast/runtime";
import { watchRetryMs } from "./constants.ts";

/** The KV watch the detector needs (JetStream KV's `watch`, updates only). */
export type Watch = (options: {
  key: string;
  include: "updates";
  headers_only: boolean;
}) => Promise<AsyncIterable<unknown> & { stop(): void }>;

/** The keys whose changes a re-read would pick up. */
const watchedKeys = ["volume.>", "partition.>"] as const;

export class CatalogueChanges {
  private count = 0;
  private readonly live = new Set<string>();
  private readonly watches = new Set<{ stop(): void }>();
  private closed = false;

  constructor(
    private readonly watch: Watch,
    private readonly logger: Pick<Logger, "warn">,
    private readonly retryMs = watchRetryMs,
  ) {}

  start(): void {
    for (const key of watchedKeys) void this.follow(key);
  }

  /**
   * A number that moves on every change to a volume or partition record; undefined
   * while some key is not watched (then every re-read must run).
   */
  version(): number | undefined {
    return this.live.size === watchedKeys.length ? this.count : undefined;
  }

  close(): void {
    this.closed = true;
    for (const watch of this.watches) watch.stop();
  }

  private async follow(key: string): Promise<void> {
    while (!this.closed) {
      try {
        const changes = await this.watch({ key, include: "updates", headers_only: true });
        this.watches.add(changes);
        if (this.closed) changes.stop();
        this.count++;
        this.live.add(key);
        try {
          for await (const _ of changes) this.count++;
        } finally {
          this.live.delete(key);
          this.watches.delete(changes);
        }
      } catch (error) {
        this.logger.warn(
          { key, error: (error as Error).message },
          "catalogue watch failed; re-reading the catalogue on every interval meanwhile",
        );
      }
      if (!this.closed) await new Promise((resolve) => setTimeout(resolve, this.retryMs));
    }
  }
}
