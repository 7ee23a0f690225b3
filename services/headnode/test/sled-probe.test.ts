import { sledLimits } from "@ballast/protocol";
import { describe, expect, it } from "vitest";
import { sledProbeSpacingMs } from "../src/constants.ts";
import { probeKey, probePrefix, SledProbe } from "../src/sled-probe.ts";

/**
 * A fake sled client (unit test): stores succeed unless `failing`, and are recorded with
 * the keys each sled holds; deletes on a sled of `losingDeletes` are lost, and a sled of
 * `unanswering` answers no listing.
 */
function fakeSleds() {
  const calls: string[] = [];
  const sizes: number[] = [];
  const held = new Map<string, Set<string>>();
  const heldOn = (sled: string) => held.get(sled) ?? held.set(sled, new Set()).get(sled)!;
  const state = {
    failing: false,
    release: undefined as (() => void) | undefined,
    losingDeletes: new Set<string>(),
    unanswering: new Set<string>(),
  };
  return {
    calls,
    sizes,
    state,
    heldOn,
    sleds: {
      async putBlob(key: string, data: Uint8Array, sleds: readonly string[]) {
        calls.push(`put ${key} on ${sleds.join(",")}`);
        sizes.push(data.byteLength);
        if (state.release === undefined) await Promise.resolve();
        else await new Promise<void>((resolve) => (state.release = resolve));
        if (state.failing) throw new Error("blob reached 0 of 2 sleds");
        for (const sled of sleds.slice(0, 2)) heldOn(sled).add(key);
        return sleds.slice(0, 2);
      },
      async deleteBlob(key: string, sleds: readonly string[]) {
        calls.push(`delete ${key} on ${sleds.join(",")}`);
        for (const sled of sleds) if (!state.losingDeletes.has(sled)) heldOn(sled).delete(key);
        return sleds.filter((sled) => state.losingDeletes.has(sled));
      },
      async listBlobKeys(sled: string, prefix: string, limit: number) {
        calls.push(`list ${prefix} on ${sled}`);
        if (state.unanswering.has(sled)) throw new Error(`${sled} did not answer`);
        return [...heldOn(sled)]
          .filter((key) => key.startsWith(prefix))
          .sort()
          .slice(0, limit);
      },
    },
  };
}

const silent = { info: () => undefined };

describe("SledProbe: a probe of the sleds the leader asks for", () => {
  it("stores a blob, counts it stored, and deletes it from where it went", async () => {
    const fake = fakeSleds();
    let stored = 0;
    let nowMs = 0;
    const probe = new SledProbe(
      fake.sleds,
      { nodeId: "head-2", session: 3 },
      silent,
      () => stored++,
      () => nowMs,
    );
    await probe.ask(["sled-1", "sled-2", "sled-3"]);
    expect(stored).toBe(1);
    // As large as a flush's largest chunk: a node whose large requests fail gives no evidence.
    expect(fake.sizes).toEqual([sledLimits.chunkBytesMax]);
    expect(fake.calls).toEqual([
      `put ${probeKey("head-2", 3, 1)} on sled-1,sled-2,sled-3`,
      `delete ${probeKey("head-2", 3, 1)} on sled-1,sled-2`,
      // The sweep: nothing of this node's left on any sled it probed.
      `list ${probePrefix("head-2")} on sled-1`,
      `list ${probePrefix("head-2")} on sled-2`,
      `list ${probePrefix("head-2")} on sled-3`,
    ]);
    // Asked again within the spacing: nothing; past it, a new key.
    nowMs = sledProbeSpacingMs - 1;
    expect(probe.ask(["sled-1", "sled-2"])).toBeUndefined();
    nowMs = sledProbeSpacingMs;
    await probe.ask(["sled-1", "sled-2"]);
    expect(fake.calls[5]).toBe(`put ${probeKey("head-2", 3, 2)} on sled-1,sled-2`);
    expect(stored).toBe(2);
    // Nothing was left and every sled answered: the second probe does not sweep (a
    // sled's listing reads its whole key map).
    expect(fake.calls.slice(5).filter((call) => call.startsWith("list"))).toEqual([]);
  });

  it("counts nothing when the store misses its copies, and begins none with no sleds", async () => {
    const fake = fakeSleds();
    fake.state.failing = true;
    let stored = 0;
    const said: string[] = [];
    const probe = new SledProbe(
      fake.sleds,
      { nodeId: "head-2", session: 1 },
      { info: ((_fields: unknown, message: string) => said.push(message)) as never },
      () => stored++,
      () => 0,
    );
    expect(probe.ask([])).toBeUndefined();
    await probe.ask(["sled-1", "sled-2"]);
    expect(stored).toBe(0);
    expect(fake.calls.filter((call) => call.startsWith("delete"))).toEqual([]);
    expect(said).toHaveLength(1);
  });

  it("deletes probe blobs whose delete was lost, this session's and an earlier one's, at its next probe", async () => {
    const fake = fakeSleds();
    // Left by session 1 of this node (killed between store and delete), and another
    // node's, which is not this node's to delete.
    fake.heldOn("sled-1").add(probeKey("head-2", 1, 7));
    fake.heldOn("sled-1").add(probeKey("head-20", 1, 1));
    fake.state.losingDeletes.add("sled-2");
    fake.state.unanswering.add("sled-1");
    let nowMs = 0;
    const probe = new SledProbe(
      fake.sleds,
      { nodeId: "head-2", session: 2 },
      silent,
      () => undefined,
      () => nowMs,
    );
    await probe.ask(["sled-1", "sled-2"]);
    // sled-2 lost the delete (and, listed, the sweep's too); sled-1 answered no listing.
    expect([...fake.heldOn("sled-2")]).toEqual([probeKey("head-2", 2, 1)]);
    expect([...fake.heldOn("sled-1")].sort()).toEqual(
      [probeKey("head-2", 1, 7), probeKey("head-20", 1, 1)].sort(),
    );
    // Both answer again: the next probe leaves none of this node's anywhere.
    fake.state.losingDeletes.clear();
    fake.state.unanswering.clear();
    nowMs = sledProbeSpacingMs;
    await probe.ask(["sled-1", "sled-2"]);
    expect([...fake.heldOn("sled-1")]).toEqual([probeKey("head-20", 1, 1)]);
    expect([...fake.heldOn("sled-2")]).toEqual([]);
  });

  it("a probe whose store misses its copies sweeps what it left", async () => {
    const fake = fakeSleds();
    fake.heldOn("sled-2").add(probeKey("head-2", 1, 1)); // a copy the failed store left
    fake.state.failing = true;
    const probe = new SledProbe(
      fake.sleds,
      { nodeId: "head-2", session: 1 },
      silent,
      () => undefined,
      () => 0,
    );
    await probe.ask(["sled-1", "sled-2"]);
    expect([...fake.heldOn("sled-2")]).toEqual([]);
  });

  it("runs one probe at a time", async () => {
    const fake = fakeSleds();
    fake.state.release = () => undefined; // held until released
    let nowMs = 0;
    const probe = new SledProbe(
      fake.sleds,
      { nodeId: "head-2", session: 1 },
      silent,
      () => undefined,
      () => nowMs,
    );
    const first = probe.ask(["sled-1", "sled-2"]);
    expect(first).toBeDefined();
    nowMs = 10 * sledProbeSpacingMs;
    expect(probe.ask(["sled-1", "sled-2"])).toBeUndefined();
    await Promise.resolve();
    fake.state.release?.();
    await first;
    expect(probe.ask(["sled-1", "sled-2"])).toBeDefined();
  });
});
