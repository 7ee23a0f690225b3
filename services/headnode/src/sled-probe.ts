// Probes of the sleds, when the leader asks for one (`probeSleds` in a report's answer).
//
// A primary whose flushes all fail is failed over only to a secondary on a node with
// positive evidence that it reaches the sleds from within the stall: a store of its own
// that got its `chunkCopies` copies (the coordinator's sled-reach.ts reads the growth
// of the node's `sledStores`). A node busy with its own primaries' flushes gives that
// evidence anyway; one that only follows stores nothing while the stalled primary
// flushes nothing, so the leader asks it to probe: a chunk-sized blob stored on the sleds the
// node is configured with, then deleted. The store counts in `sledStores` only if it
// reached its copies (SledClient.putBlob), so a node cut from the sleds, or sleds that
// refuse writes from everyone, give no evidence and the stalled primary is kept.
//
// Bounded: one probe at a time, and none begun within sledProbeSpacingMs of the last,
// however often the leader asks. A probe's blob whose delete is lost (a sled cut just
// then, a process killed between store and delete) is deleted by a later probe of the
// node: a sweep lists `probes/<node>/` on the sleds it probed and deletes what it finds,
// up to sledProbeSweepKeysMax a sled, this session's or an earlier one's. A sweep runs
// after the first probe of a process (an earlier one's leftovers) and after any probe
// whose store missed its copies or whose delete a sled did not confirm, until one
// finds every sled answering: a sled's listing reads its whole key map, so not one a
// second. So leaked probes last until the node's next probe that reaches their sled; a
// node that never probes again (removed from the cluster) leaves its few behind.
//
// The blob is as large as the largest chunk a flush writes (sledLimits.chunkBytesMax,
// 4 MiB, one blob part: the same size of request under the same deadline as a chunk
// write), so a node whose small requests pass but whose large ones do not (a path that
// drops large frames, a link too slow for a chunk within the deadline) gives no
// evidence. Before (review 30) it was a few bytes, and such a node was evidence enough.
// The cost, only while the leader wants evidence: 8 MiB stored and deleted a second per
// probing node.

import { sledLimits } from "@ballast/protocol";
import type { Logger } from "@ballast/runtime";
import { sledProbeSpacingMs, sledProbeSweepKeysMax } from "./constants.ts";
import type { SledClient } from "./sled-client.ts";

/** What a probe stores: a chunk's worth of zeros, made at the first probe and kept. */
let probeData: Uint8Array | undefined;
const probeBytes = () => (probeData ??= new Uint8Array(sledLimits.chunkBytesMax));

/** Where a node's probes go: every key of its probes begins with this. */
export function probePrefix(nodeId: string): string {
  return `probes/${nodeId}/`;
}

/** The key of a node's `count`th probe of a session: never reused, so never refused as existing. */
export function probeKey(nodeId: string, session: number, count: number): string {
  return `${probePrefix(nodeId)}${session}-${count}`;
}

export class SledProbe {
  private inFlight = false;
  /** Whether the next probe sweeps (see the header): at first, and after a miss. */
  private sweepDue = true;
  private lastBegunAtMs = Number.NEGATIVE_INFINITY;
  private count = 0;

  constructor(
    private readonly sleds: Pick<SledClient, "putBlob" | "deleteBlob" | "listBlobKeys">,
    private readonly node: { nodeId: string; session: number },
    private readonly logger: Pick<Logger, "info">,
    /** Called once a probe's store got its copies (the node reports early then). */
    private readonly onStored: () => void,
    private readonly clock: () => number = () => performance.now(),
  ) {}

  /**
   * The leader asked for a probe: stores one on `sleds` (those configured and not out of
   * service) unless one is under way, one began within sledProbeSpacingMs, or there are
   * none. Resolves when the probe is over (never rejects); undefined when none began.
   */
  ask(sleds: readonly string[]): Promise<void> | undefined {
    const nowMs = this.clock();
    if (this.inFlight || nowMs - this.lastBegunAtMs < sledProbeSpacingMs || sleds.length === 0)
      return undefined;
    this.inFlight = true;
    this.lastBegunAtMs = nowMs;
    this.count++;
    const key = probeKey(this.node.nodeId, this.node.session, this.count);
    return this.run(key, sleds).finally(() => {
      this.inFlight = false;
    });
  }

  private async run(key: string, sleds: readonly string[]): Promise<void> {
    let holders: string[];
    try {
      holders = await this.sleds.putBlob(key, probeBytes(), sleds, this.count);
    } catch (error) {
      // What the leader learns from the count not growing; said once per probe.
      this.logger.info(
        { key, error: (error as Error).message },
        "a sled probe the coordinator asked for did not reach its copies",
      );
      // A store that missed its copies may have left copies on some sleds: the sweep
      // deletes those of the sleds that answer.
      this.sweepDue = true;
      await this.sweep(sleds);
      return;
    }
    this.onStored();
    // Best effort (SledClient.deleteBlob settles every sled's answer and never throws).
    const unconfirmed = await this.sleds.deleteBlob(key, holders);
    if (unconfirmed.length > 0) this.sweepDue = true;
    await this.sweep(sleds);
  }

  /**
   * Deletes this node's probe blobs that `sleds` still hold: ones whose delete was lost.
   * Best effort, sled by sled: one that does not answer is swept by a later probe.
   */
  private async sweep(sleds: readonly string[]): Promise<void> {
    if (!this.sweepDue) return;
    const settled = await Promise.allSettled(
      sleds.map(async (sled) => {
        const keys = await this.sleds.listBlobKeys(
          sled,
          probePrefix(this.node.nodeId),
          sledProbeSweepKeysMax,
        );
        let unconfirmed = keys.length >= sledProbeSweepKeysMax; // more may be left
        for (const key of keys) {
          if ((await this.sleds.deleteBlob(key, [sled])).length > 0) unconfirmed = true;
        }
        if (unconfirmed) throw new Error(`${sled}: probe blobs left`);
      }),
    );
    this.sweepDue = settled.some((outcome) => outcome.status === "rejected");
  }
}
