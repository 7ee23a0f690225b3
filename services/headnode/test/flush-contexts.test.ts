// The trace contexts a primary keeps for a flush to link to (observability.ts): kept
// in op order until flushed, distinct per request, bounded in ops and in links.

import type { SpanContext } from "@ballast/runtime";
import { expect, test } from "vitest";
import { FlushContexts } from "../src/observability.ts";

function request(name: string): SpanContext {
  return { traceId: name.padEnd(32, "0"), spanId: name.padEnd(16, "0"), traceFlags: 1 };
}

test("a flush finds the distinct requests of its ops, and forgets them once flushed", () => {
  const contexts = new FlushContexts();
  const [a, b, c] = [request("a"), request("b"), request("c")];
  contexts.set(1, 3, a); // one request of three writes
  contexts.set(4, 4, b);
  contexts.set(5, 6, c);
  expect(contexts.between(2, 5, 128)).toEqual([a, b, c]);
  expect(contexts.between(4, 4, 128)).toEqual([b]);
  expect(contexts.between(1, 6, 2)).toEqual([a, b]);
  contexts.forgetThrough(4);
  expect(contexts.between(1, 6, 128)).toEqual([c]);
  expect(contexts.size).toBe(2);
});

test("past its bound the oldest ops are forgotten (a long sled outage holds no more)", () => {
  const contexts = new FlushContexts(4);
  for (let opNum = 1; opNum <= 10; opNum++) contexts.set(opNum, opNum, request(`r${opNum}`));
  expect(contexts.size).toBe(4);
  expect(contexts.between(1, 10, 128).map((one) => one.spanId.slice(0, 3))).toEqual([
    "r70",
    "r80",
    "r90",
    "r10",
  ]);
});
