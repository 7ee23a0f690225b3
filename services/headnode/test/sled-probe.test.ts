import { describe, expect, it } from "vitest";
import { sledProbeSpacingMs } from "../src/constants.ts";
import { probeKey, SledProbe } from "../src/sled-probe.ts";

/** A fake sled client (unit test): stores succeed unless `failing`, and are recorded. */
function fakeSleds() {
  const calls: string[] = [];
  const state = { failing: false, release: undefined as (() => void) | undefined };
  return {
    calls,
    state,
    sleds: {
      async putBlob(key: string, _data: Uint8Array, sleds: readonly string[]) {
        calls.push(`put ${key} on ${sleds.join(",")}`);
        if (state.release === undefined) await Promise.resolve();
        else await new Promise<void>((resolve) => (state.release = resolve));
        if (state.failing) throw new Error("blob reached 0 of 2 sleds");
        return sleds.slice(0, 2);
      },
      async deleteBlob(key: string, sleds: readonly string[]) {
        calls.push(`delete ${key} on ${sleds.join(",")}`);
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
    expect(fake.calls).toEqual([
      `put ${probeKey("head-2", 3, 1)} on sled-1,sled-2,sled-3`,
      `delete ${probeKey("head-2", 3, 1)} on sled-1,sled-2`,
    ]);
    // Asked again within the spacing: nothing; past it, a new key.
    nowMs = sledProbeSpacingMs - 1;
    expect(probe.ask(["sled-1", "sled-2"])).toBeUndefined();
    nowMs = sledProbeSpacingMs;
    await probe.ask(["sled-1", "sled-2"]);
    expect(fake.calls[2]).toBe(`put ${probeKey("head-2", 3, 2)} on sled-1,sled-2`);
    expect(stored).toBe(2);
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
