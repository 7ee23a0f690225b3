import fc from "fast-check";
import { describe, expect, test } from "vitest";
import { acceptHotPath, acceptHotReply, hotPathTypes, hotReplyTypes } from "../src/hot-path.ts";
import {
  decodeReply,
  decodeValue,
  encodeMessage,
  encodeValue,
  limits,
  Message,
  ReplyShape,
  type RequestType,
  resultSchemas,
} from "../src/index.ts";
import { messageArbitraries, plain } from "./arbitraries.ts";

const hotMessages = fc.oneof(
  messageArbitraries["volume.write.v1"],
  messageArbitraries["volume.read.v1"],
  messageArbitraries["replica.notes.v1"],
  messageArbitraries["replica.ack.v1"],
  messageArbitraries["sled.chunk.read.v1"],
  messageArbitraries["sled.chunk.read-many.v1"],
);

const range = fc.record({
  offset: fc.integer({ min: 0, max: limits.volumeBytesMax }),
  length: fc.integer({ min: 0, max: limits.volumeBytesMax }),
});
const safe = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER });

/** Successful replies of the types with a hand-checked reply, with their request type. */
const hotReplies: fc.Arbitrary<{ type: RequestType; reply: { ok: true; result: unknown } }> =
  fc.oneof(
    fc.record({
      type: fc.constant("volume.write.v1" as const),
      reply: fc.record({
        ok: fc.constant(true as const),
        result: fc.record({ opNumFirst: safe, opNumLast: safe }),
      }),
    }),
    fc.record({
      type: fc.constant("volume.read.v1" as const),
      reply: fc.record({
        ok: fc.constant(true as const),
        result: fc.record(
          {
            data: fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 4 }),
            unmapped: fc.array(fc.array(range, { maxLength: 3 }), { maxLength: 4 }),
          },
          { requiredKeys: ["data"] },
        ),
      }),
    }),
    fc.record({
      type: fc.constant("sled.chunk.read.v1" as const),
      reply: fc.record({
        ok: fc.constant(true as const),
        result: fc.record({ data: fc.uint8Array({ maxLength: 64 }) }),
      }),
    }),
    fc.record({
      type: fc.constant("sled.chunk.read-many.v1" as const),
      reply: fc.record({
        ok: fc.constant(true as const),
        result: fc.record({
          data: fc.array(fc.uint8Array({ maxLength: 64 }), { minLength: 1, maxLength: 4 }),
        }),
      }),
    }),
  );

/** What zod makes of a reply to `type`: the result, or undefined where it refuses. */
function zodResult(type: RequestType, value: unknown): { result: unknown } | undefined {
  const reply = ReplyShape.safeParse(value);
  if (!reply.success || !reply.data.ok) return undefined;
  const parsed = resultSchemas[type].safeParse(reply.data.result);
  return parsed.success ? { result: parsed.data } : undefined;
}

/** Values that break one bound or type or another. */
const oddValue = fc.constantFrom<unknown>(
  null,
  -1,
  -0,
  1.5,
  Number.NaN,
  Number.POSITIVE_INFINITY,
  2 ** 32,
  2 ** 50 + 1,
  2 ** 53,
  "",
  "Upper",
  "x".repeat(33),
  "x".repeat(64),
  "-leading",
  "ok-name",
  "0123456789abcdef0123456789abcdef",
  "0123456789ABCDEF0123456789ABCDEF",
  true,
  0,
  7,
  new Uint8Array(3),
  {},
  [],
  Array.from({ length: 1025 }, () => ({ offset: 0, data: new Uint8Array(0) })),
  "write",
  "flush",
  "bogus",
);

type Path = (string | number)[];

/** Every path to a field of `value` (top level, entries of arrays, their fields). */
function paths(value: unknown, prefix: Path = []): Path[] {
  if (value instanceof Uint8Array || value === null || typeof value !== "object") return [];
  const found: Path[] = [];
  for (const key of Object.keys(value)) {
    const at = Array.isArray(value) ? Number(key) : key;
    found.push([...prefix, at]);
    found.push(...paths((value as Record<string, unknown>)[key], [...prefix, at]));
  }
  return found;
}

/** A copy of `value` (through the wire) with the field at `path` replaced, deleted or joined by a stray key. */
function mutate(
  value: unknown,
  path: Path,
  how: "set" | "delete" | "extra",
  odd: unknown,
): unknown {
  const copy = decodeValue(encodeMessage(value as Message)) as Record<string, unknown>;
  let parent: Record<string | number, unknown> = copy;
  for (const key of path.slice(0, -1)) parent = parent[key] as Record<string | number, unknown>;
  const last = path[path.length - 1]!;
  if (how === "delete") delete parent[last];
  else if (how === "extra") {
    const target = parent[last];
    if (target !== null && typeof target === "object" && !(target instanceof Uint8Array)) {
      (target as Record<string, unknown>).stray = odd;
    } else parent.stray = odd;
  } else parent[last] = odd;
  return copy;
}

describe("hot-path validation", () => {
  test("covers the write and read paths' message types", () => {
    expect([...hotPathTypes].sort()).toEqual([
      "replica.ack.v1",
      "replica.notes.v1",
      "sled.chunk.read-many.v1",
      "sled.chunk.read.v1",
      "volume.read.v1",
      "volume.write.v1",
    ]);
  });

  test("accepts every valid message of its types, as the value itself, equal to zod's", () => {
    fc.assert(
      fc.property(hotMessages, (message) => {
        const decoded = decodeValue(encodeMessage(message));
        const accepted = acceptHotPath(decoded);
        expect(accepted).toBe(decoded);
        const parsed = Message.safeParse(decoded);
        expect(parsed.success).toBe(true);
        expect(plain(accepted)).toEqual(plain(parsed.data));
      }),
      { numRuns: 300 },
    );
  });

  test("never accepts what zod refuses, nor anything zod would return changed", () => {
    fc.assert(
      fc.property(
        hotMessages.chain((message) => {
          const all = paths(message);
          return fc.tuple(
            fc.constant(message),
            all.length === 0 ? fc.constant([] as Path) : fc.constantFrom(...all),
            fc.constantFrom("set" as const, "delete" as const, "extra" as const),
            oddValue,
          );
        }),
        ([message, path, how, odd]) => {
          if (path.length === 0) return;
          const value = mutate(message, path, how, odd);
          const accepted = acceptHotPath(value);
          if (accepted === undefined) return;
          const parsed = Message.safeParse(value);
          expect(parsed.success).toBe(true);
          expect(plain(accepted)).toEqual(plain(parsed.data));
        },
      ),
      { numRuns: 3000 },
    );
  });

  test("leaves every other message type to zod", () => {
    fc.assert(
      fc.property(messageArbitraries["volume.trim.v1"], (message) => {
        expect(acceptHotPath(decodeValue(encodeMessage(message)))).toBeUndefined();
      }),
      { numRuns: 50 },
    );
  });

  test("accepts every valid reply of its types, as the result itself, equal to zod's", () => {
    expect([...hotReplyTypes].sort()).toEqual([
      "sled.chunk.read-many.v1",
      "sled.chunk.read.v1",
      "volume.read.v1",
      "volume.write.v1",
    ]);
    fc.assert(
      fc.property(hotReplies, ({ type, reply }) => {
        const decoded = decodeValue(encodeValue(reply)) as { result: unknown };
        const accepted = acceptHotReply(type, decoded);
        expect(accepted).toBe(decoded.result);
        const parsed = zodResult(type, decoded);
        expect(parsed).toBeDefined();
        expect(plain(accepted)).toEqual(plain(parsed!.result));
        // And through the envelope's decoder, as the bus sees it.
        expect(plain(decodeReply(type, encodeValue(reply)))).toEqual(plain(parsed!.result));
      }),
      { numRuns: 300 },
    );
  });

  test("never accepts a reply zod refuses, nor one zod would return changed", () => {
    fc.assert(
      fc.property(
        hotReplies.chain(({ type, reply }) => {
          const all = paths(reply);
          return fc.tuple(
            fc.constant(type),
            fc.constant(reply),
            fc.constantFrom(...all),
            fc.constantFrom("set" as const, "delete" as const, "extra" as const),
            oddValue,
          );
        }),
        ([type, reply, path, how, odd]) => {
          const value = mutate(reply, path, how, odd);
          const accepted = acceptHotReply(type, value);
          if (accepted === undefined) return;
          const parsed = zodResult(type, value);
          expect(parsed).toBeDefined();
          expect(plain(accepted)).toEqual(plain(parsed!.result));
        },
      ),
      { numRuns: 3000 },
    );
  });

  test("error replies, and replies of other types, are left to zod", () => {
    const error = { ok: false, error: { code: "NotFound", message: "gone" } };
    for (const type of hotReplyTypes) expect(acceptHotReply(type, error)).toBeUndefined();
    expect(
      acceptHotReply("volume.trim.v1", { ok: true, result: { opNumFirst: 1, opNumLast: 2 } }),
    ).toBeUndefined();
    // A reply of the wrong shape for its type still fails as before, through zod.
    expect(() =>
      decodeReply("volume.read.v1", encodeValue({ ok: true, result: { data: [1] } })),
    ).toThrow(/refused the result of volume.read.v1/);
  });
});
