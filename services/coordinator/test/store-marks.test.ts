// The control store's marks on the sleds (store-marks.ts): the pure refusal, the store's
// identity on an in-memory KV store, and the shell against fake sleds (a fake bus).

import { BallastError, ErrorCode, type Message, subjects } from "@ballast/protocol";
import { describe, expect, test } from "vitest";
import { Catalogue } from "../src/catalogue.ts";
import { storeMarkCheckMs } from "../src/constants.ts";
import type { Member } from "../src/membership.ts";
import {
  foreignStoresOf,
  refusalOf,
  StoreMarks,
  storeMarkKeyOf,
  storeMarkPrefix,
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

function harness(held: Record<string, string[]>) {
  const blobs = new Map(Object.entries(held).map(([sled, keys]) => [sled, new Set(keys)]));
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
          switch (message.type) {
            case "sled.blob.list.v1":
              return {
                blobs: [...keys]
                  .filter((key) => key.startsWith(message.prefix ?? ""))
                  .map((key) => ({ key, bytes: 1 })),
                truncated: false,
              };
            case "sled.blob.begin.v1":
              return { uploadId: message.key.replaceAll("/", "-"), partBytesMax: 1 << 20 };
            case "sled.blob.part.v1":
              return { bytesReceived: message.data.byteLength };
            case "sled.blob.commit.v1":
              keys.add(message.uploadId.replace("control-store-", storeMarkPrefix));
              return {};
            default:
              throw new BallastError(ErrorCode.Internal, `unexpected ${message.type}`);
          }
        },
      },
      logger: {
        info: () => undefined,
        warn: () => undefined,
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
    storeId: ours,
  });
  return {
    marks,
    blobs,
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
              return { blobs: [{ key: storeMarkKeyOf(ours), bytes: 1 }], truncated: false };
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
