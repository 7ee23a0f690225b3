// The control store's marks on the sleds (store-marks.ts): the pure refusal, the store's
// identity and sequence on an in-memory KV store, and the shell against fake sleds (a
// fake bus).

import { BallastError, ErrorCode, type Message, subjects } from "@ballast/protocol";
import { describe, expect, test } from "vitest";
import { Catalogue, keys } from "../src/catalogue.ts";
import { storeMarkCheckMs } from "../src/constants.ts";
import type { Member } from "../src/membership.ts";
import {
  foreignStoresOf,
  mismatchOf,
  refusalOf,
  StoreMarks,
  sequenceMarkKeyOf,
  storeMarkKeyOf,
  storeMarkPrefix,
  witnessedSequenceOf,
} from "../src/store-marks.ts";
import type { Tenure } from "../src/tenure.ts";
import { FakeStore } from "./fake-store.ts";

const ours = "0".repeat(32);
const theirs = "f".repeat(32);

describe("the refusal", () => {
  test("another store's mark on any sled read refuses, naming the sled and the store", () => {
    const read = new Map([
      ["sled-1", { process: "1@1", foreign: [] }],
      ["sled-2", { process: "2@1", foreign: [theirs] }],
    ]);
    const reason = refusalOf(ours, [{ id: "sled-1", process: "1@1" }], read);
    expect(reason).toContain("sled-2");
    expect(reason).toContain(theirs);
    expect(reason).toContain(ours);
  });

  test("a live sled not read since it started refuses; all read and clean allows", () => {
    const read = new Map([["sled-1", { process: "1@1", foreign: [] }]]);
    expect(refusalOf(ours, [{ id: "sled-1", process: "1@1" }], read)).toBeUndefined();
    expect(refusalOf(ours, [{ id: "sled-1", process: "9@5" }], read)).toContain("sled-1");
    expect(refusalOf(ours, [], read)).toContain("no sled is live");
  });

  test("a partition whose replicas are in a later epoch refuses, naming it", () => {
    const read = new Map([["sled-1", { process: "1@1", foreign: [] }]]);
    const reason = refusalOf(ours, [{ id: "sled-1", process: "1@1" }], read, ["vol/0"]);
    expect(reason).toContain("older than the data");
    expect(reason).toContain("vol/0");
  });

  test("a sled witnessing a higher catalogue sequence than the catalogue's refuses, naming both", () => {
    const read = new Map([
      ["sled-1", { process: "1@1", foreign: [] }],
      ["sled-2", { process: "2@1", foreign: [] }],
    ]);
    const live = [
      { id: "sled-1", process: "1@1" },
      { id: "sled-2", process: "2@1" },
    ];
    const witnessed = new Map([
      ["sled-1", 5],
      ["sled-2", 7],
    ]);
    const reason = refusalOf(ours, live, read, [], { catalogue: 6, witnessed });
    expect(reason).toContain("older than the data");
    expect(reason).toContain("sled-2 witnessed catalogue sequence 7");
    expect(reason).not.toContain("sled-1 witnessed");
    expect(reason).toContain("at 6");
    // The catalogue at or past every witness: allowed.
    expect(refusalOf(ours, live, read, [], { catalogue: 7, witnessed })).toBeUndefined();
    expect(refusalOf(ours, live, read, [], { catalogue: 9, witnessed })).toBeUndefined();
    // Not read yet: refused, whatever the witnesses.
    expect(refusalOf(ours, live, read, [], { catalogue: undefined, witnessed })).toContain(
      "sequence is not read yet",
    );
  });

  test("a mismatch is only what was read proving the catalogue not the data's", () => {
    const clean = new Map([["sled-1", { process: "1@1", foreign: [] }]]);
    const sequence = { catalogue: 6, witnessed: new Map([["sled-1", 6]]) };
    expect(mismatchOf(ours, clean, [], sequence)).toBeUndefined();
    // Nothing read yet, or the catalogue's sequence not read: a refusal, no mismatch.
    expect(mismatchOf(ours, new Map(), [], { catalogue: undefined, witnessed: new Map() })).toBe(
      undefined,
    );
    expect(mismatchOf(ours, clean, ["vol/0"], sequence)).toContain("vol/0");
    const foreign = new Map([["sled-1", { process: "1@1", foreign: ["other"] }]]);
    expect(mismatchOf(ours, foreign, [], sequence)).toContain("other");
    const ahead = { catalogue: 5, witnessed: new Map([["sled-1", 6]]) };
    expect(mismatchOf(ours, clean, [], ahead)).toContain("witnessed catalogue sequence 6");
  });

  test("the sequence a sled witnesses is the highest of our store's marks", () => {
    expect(
      witnessedSequenceOf(
        [
          sequenceMarkKeyOf(ours, 3),
          sequenceMarkKeyOf(ours, 12),
          sequenceMarkKeyOf(theirs, 99),
          `${sequenceMarkKeyOf(ours, 40)}x`,
          storeMarkKeyOf(ours),
        ],
        ours,
      ),
    ).toBe(12);
    expect(witnessedSequenceOf([], ours)).toBe(0);
    // Keys sort as numbers do.
    expect(sequenceMarkKeyOf(ours, 9) < sequenceMarkKeyOf(ours, 10)).toBe(true);
  });

  test("only marks of other stores are foreign", () => {
    expect(
      foreignStoresOf([storeMarkKeyOf(ours), storeMarkKeyOf(theirs), "checkpoints/x"], ours),
    ).toEqual([theirs]);
  });
});

describe("the store's identity", () => {
  test("made once, then read: two coordinators on one store agree", async () => {
    const store = new FakeStore();
    const first = await new Catalogue(store).storeId();
    expect(first).toMatch(/^[0-9a-f]{32}$/);
    expect(await new Catalogue(store).storeId()).toBe(first);
    // A store that starts empty (lost) gets another.
    expect(await new Catalogue(new FakeStore()).storeId()).not.toBe(first);
  });
});

function harness(
  held: Record<string, string[]>,
  options: { catalogue?: Catalogue; down?: string[] } = {},
) {
  const blobs = new Map(Object.entries(held).map(([sled, keys]) => [sled, new Set(keys)]));
  const uploads = new Map<string, string>();
  const catalogue = options.catalogue ?? new Catalogue(new FakeStore());
  const errors: unknown[] = [];
  let tenure: Tenure | undefined = {
    ready: true,
    behind: new Map(),
    records: new Map(),
  } as unknown as Tenure;
  const marks = new StoreMarks({
    service: {
      bus: {
        request: async (subject: string, message: Message) => {
          const sled = subject.split(".").at(-1)!;
          expect(subject).toBe(subjects.node.build("sled", sled));
          const keys = blobs.get(sled)!;
          if (options.down?.includes(sled)) {
            throw new BallastError(ErrorCode.Unavailable, `${sled} does not answer`);
          }
          switch (message.type) {
            case "sled.blob.list.v1":
              return {
                blobs: [...keys]
                  .filter((key) => key.startsWith(message.prefix ?? ""))
                  .map((key) => ({ key, bytes: 1 })),
                truncated: false,
              };
            case "sled.blob.begin.v1": {
              const uploadId = `upload-${uploads.size}`;
              uploads.set(uploadId, message.key);
              return { uploadId, partBytesMax: 1 << 20 };
            }
            case "sled.blob.part.v1":
              return { bytesReceived: message.data.byteLength };
            case "sled.blob.commit.v1":
              keys.add(uploads.get(message.uploadId)!);
              return {};
            case "sled.blob.delete.v1":
              keys.delete(message.key);
              return {};
            default:
              throw new BallastError(ErrorCode.Internal, `unexpected ${message.type}`);
          }
        },
      },
      logger: {
        info: () => undefined,
        warn: () => undefined,
        debug: () => undefined,
        error: (fields: unknown) => errors.push(fields),
      },
    } as never,
    heartbeats: {
      list: () =>
        [...blobs.keys()].map(
          (id) => ({ id, kind: "sled", alive: true, pid: 1, startedAtMs: 1 }) as Member,
        ),
    },
    tenures: { current: () => tenure },
    catalogue,
    storeId: ours,
  });
  return {
    marks,
    blobs,
    catalogue,
    errors,
    depose: () => {
      tenure = undefined;
    },
  };
}

describe("the marks on the sleds", () => {
  test("clean sleds get our mark, and deletion is allowed once all are read", async () => {
    const { marks, blobs } = harness({ "sled-1": [], "sled-2": [storeMarkKeyOf(ours)] });
    expect(marks.refusal()).toContain("not read yet");
    await marks.check();
    expect(marks.refusal()).toBeUndefined();
    expect([...blobs.get("sled-1")!]).toEqual([storeMarkKeyOf(ours)]);
    expect(marks.foreign()).toEqual([]);
  });

  test("a sled holding another store's mark refuses deletion and is logged as an error", async () => {
    const { marks, errors } = harness({ "sled-1": [], "sled-2": [storeMarkKeyOf(theirs)] });
    await marks.check();
    expect(marks.refusal()).toContain("sled-2");
    expect(marks.foreign()).toEqual([{ sled: "sled-2", stores: [theirs] }]);
    expect(errors).toHaveLength(1);
  });

  test("a follower reads nothing", async () => {
    const { marks, depose, blobs } = harness({ "sled-1": [] });
    depose();
    await marks.check();
    expect(marks.refusal()).toContain("not read yet");
    expect([...blobs.get("sled-1")!]).toEqual([]);
  });
});

describe("the catalogue's sequence on the sleds", () => {
  test("a create raises the sequence and leaves it on every live sled, in place of the older", async () => {
    const { marks, blobs, catalogue } = harness({ "sled-1": [], "sled-2": [] });
    await marks.witnessCreate("a");
    await marks.witnessCreate("b");
    expect(await catalogue.sequence()).toBe(2);
    for (const sled of ["sled-1", "sled-2"]) {
      const held = [...blobs.get(sled)!];
      expect(held).toHaveLength(1);
      expect(witnessedSequenceOf(held, ours)).toBe(2);
      // The mark names the raise's nonce, as the catalogue's history keeps it.
      const history = await catalogue.sequenceHistory();
      expect(held[0]).toBe(sequenceMarkKeyOf(ours, 2, history.recent.at(-1)![1]));
    }
    await marks.check();
    expect(marks.refusal()).toBeUndefined();
    expect(marks.statusOf().sequence).toEqual({ catalogue: 2, witnessed: 2 });
  });

  test("a catalogue behind a sled's witness (an older copy restored) refuses deletion and creates", async () => {
    // The copy was taken at sequence 2; a create after it left 3 on sled-2.
    const catalogue = new Catalogue(new FakeStore());
    const refusal = () => undefined;
    await catalogue.nextSequence(refusal);
    await catalogue.nextSequence(refusal);
    const { marks, errors } = harness(
      { "sled-1": [sequenceMarkKeyOf(ours, 2)], "sled-2": [sequenceMarkKeyOf(ours, 3)] },
      { catalogue },
    );
    await marks.check();
    expect(marks.refusal()).toContain("sled-2 witnessed catalogue sequence 3");
    expect(marks.statusOf().sequence).toEqual({ catalogue: 2, witnessed: 3 });
    expect(errors).toHaveLength(1);
    // A create would raise the old copy's sequence to the witness and lift the refusal.
    const refused = await marks.witnessCreate("c").catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(BallastError);
    expect((refused as BallastError).code).toBe(ErrorCode.Unavailable);
    expect((refused as BallastError).message).toContain("older than the data");
    expect(await catalogue.sequence()).toBe(2);
    expect(marks.refusal()).toContain("older than the data");
  });

  test("a create before the marks check has read the sleds still reads their witness first", async () => {
    const catalogue = new Catalogue(new FakeStore());
    const { marks } = harness({ "sled-1": [sequenceMarkKeyOf(ours, 4)] }, { catalogue });
    await expect(marks.witnessCreate("c")).rejects.toThrow(/older than the data/);
    expect(await catalogue.sequence()).toBe(0);
  });

  test("a create no live sled witnesses fails; one sled down of two does not stop it", async () => {
    const none = harness({ "sled-1": [], "sled-2": [] }, { down: ["sled-1", "sled-2"] });
    await expect(none.marks.witnessCreate("c")).rejects.toThrow(/no live sled/);
    const one = harness({ "sled-1": [], "sled-2": [] }, { down: ["sled-1"] });
    await one.marks.witnessCreate("c");
    expect(witnessedSequenceOf([...one.blobs.get("sled-2")!], ours)).toBe(1);
    expect([...one.blobs.get("sled-1")!]).toEqual([]);
  });
});

describe("the witness when sleds are down at creates or at the restore", () => {
  const heldOf = (blobs: Map<string, Set<string>>) =>
    Object.fromEntries([...blobs].map(([sled, keys]) => [sled, [...keys]]));

  test("creates on an old copy that pass the witness while its sleds are down are caught when one returns", async () => {
    const store = new FakeStore();
    const down: string[] = [];
    const newer = harness(
      { "sled-1": [], "sled-2": [] },
      { catalogue: new Catalogue(store), down },
    );
    await newer.marks.witnessCreate("volume a");
    await newer.marks.witnessCreate("volume b");
    // The copy, taken at sequence 2; then a create with sled-2 down: only sled-1 holds 3.
    const copy = new FakeStore();
    copy.put(keys.sequence, store.value(keys.sequence));
    down.push("sled-2");
    await newer.marks.witnessCreate("volume late");
    // The copy restored while sled-1 is down: sled-2 witnesses 2, as the copy holds.
    const restoredDown = ["sled-1"];
    const restored = harness(heldOf(newer.blobs), {
      catalogue: new Catalogue(copy),
      down: restoredDown,
    });
    await restored.marks.check();
    // Two creates on the copy raise it to 4, past sled-1's 3, before sled-1 returns.
    await restored.marks.witnessCreate("volume x");
    await restored.marks.witnessCreate("volume y");
    restoredDown.splice(0);
    await restored.marks.check();
    // Sequence 3 on sled-1 was raised by another create than this catalogue's 3.
    expect(restored.marks.refusal()).toContain("another create");
    expect(restored.marks.mismatch()).toBeDefined();
    await expect(restored.marks.witnessCreate("volume z")).rejects.toThrow(/another create/);
    expect(restored.errors).toHaveLength(1);
  });

  test("a sled down at a create gets the sequence when it is read again, and witnesses for it", async () => {
    const store = new FakeStore();
    const down = ["sled-2"];
    const newer = harness(
      { "sled-1": [], "sled-2": [] },
      { catalogue: new Catalogue(store), down },
    );
    // The copy, taken before any create.
    const copy = new FakeStore();
    await newer.marks.check();
    await newer.marks.witnessCreate("volume late");
    expect(witnessedSequenceOf([...newer.blobs.get("sled-2")!], ours)).toBe(0);
    down.splice(0);
    await newer.marks.check();
    expect(witnessedSequenceOf([...newer.blobs.get("sled-2")!], ours)).toBe(1);
    expect(newer.marks.refusal()).toBeUndefined();
    // The copy restored while sled-1, which took the create, is down: sled-2 shows it.
    const restored = harness(heldOf(newer.blobs), {
      catalogue: new Catalogue(copy),
      down: ["sled-1"],
    });
    await restored.marks.check();
    expect(restored.marks.refusal()).toContain("sled-2 witnessed catalogue sequence 1");
  });
});

describe("a live sled whose marks cannot be read (fake clock, captured log)", () => {
  test("warned when it begins, then once per interval, not every storeMarkCheckMs; its read is said once", async () => {
    const lines: { level: string; fields: Record<string, unknown>; message: string }[] = [];
    const at = (level: string) => (fields: Record<string, unknown>, message: string) => {
      lines.push({ level, fields, message });
    };
    let nowMs = 0;
    let answers = false;
    const tenure = { ready: true, behind: new Map(), records: new Map() } as unknown as Tenure;
    const marks = new StoreMarks({
      service: {
        bus: {
          request: async (_subject: string, message: Message) => {
            if (!answers) throw new BallastError(ErrorCode.Timeout, "no answer in time");
            if (message.type === "sled.blob.list.v1") {
              const keys = message.prefix === storeMarkPrefix ? [storeMarkKeyOf(ours)] : [];
              return { blobs: keys.map((key) => ({ key, bytes: 1 })), truncated: false };
            }
            throw new BallastError(ErrorCode.Internal, `unexpected ${message.type}`);
          },
        },
        logger: { info: at("info"), warn: at("warn"), error: at("error") },
      } as never,
      heartbeats: {
        list: () => [{ id: "sled-1", kind: "sled", alive: true, pid: 1, startedAtMs: 1 } as Member],
      },
      tenures: { current: () => tenure },
      catalogue: new Catalogue(new FakeStore()),
      storeId: ours,
      clock: () => nowMs,
      logRepeatIntervalMs: 5 * 60_000,
    });
    const hourMs = 60 * 60_000;
    for (; nowMs < hourMs; nowMs += storeMarkCheckMs) await marks.check();
    const warned = lines.filter((line) => line.message.startsWith("could not read the control"));
    // Old: one a check, 3600 an hour.
    expect(warned).toHaveLength(12);
    expect(warned.every((line) => line.level === "warn")).toBe(true);
    expect(marks.refusal()).toContain("not read yet");
    answers = true;
    await marks.check();
    await marks.check();
    expect(marks.refusal()).toBeUndefined();
    expect(
      lines.filter((line) => line.message.startsWith("read the control store's")),
    ).toHaveLength(1);
  });
});
