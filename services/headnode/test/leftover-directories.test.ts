// The head node's decisions about leftover directories (leftover-directories.ts): which
// to ask the coordinator about, in how many requests, and which of its answer to remove.

import { describe, expect, test } from "vitest";
import { leftoverCandidatesOf, removableOf, requestsOf } from "../src/leftover-directories.ts";

const goneId = "1-aaaaaaaaaaaa";
const hostedId = "3-bbbbbbbbbbbb";
const otherId = "2-cccccccccccc";

describe("which directories are asked about", () => {
  test("issued ids not hosted, sorted, each once; static names and hosted ids never", () => {
    const onDisk = [otherId, "vol", "vol-a", hostedId, goneId, "1-data", goneId];
    expect(leftoverCandidatesOf(onDisk, new Set([hostedId]))).toEqual([goneId, otherId]);
  });

  test("nothing on disk, nothing to ask", () => {
    expect(leftoverCandidatesOf([], new Set())).toEqual([]);
  });
});

describe("requests", () => {
  test("at most the limit each, every id once, in order", () => {
    const ids = Array.from({ length: 7 }, (_, index) => `${index}-aaaaaaaaaaaa`);
    const requests = requestsOf(ids, 3);
    expect(requests.map((request) => request.length)).toEqual([3, 3, 1]);
    expect(requests.flat()).toEqual(ids);
    expect(requestsOf([], 3)).toEqual([]);
  });

  test("a limit below one is a programming error", () => {
    expect(() => requestsOf([goneId], 0)).toThrow(/positive integer/);
  });
});

describe("which of the answer is removed", () => {
  test("only ids asked in this request, of the issued shape, not hosted now", () => {
    const asked = [goneId, otherId, hostedId];
    const gone = [goneId, hostedId, "9-999999999999", "vol", goneId];
    expect(removableOf(asked, gone, new Set([hostedId]))).toEqual([goneId]);
  });

  test("an id asked about that a replica opened since is kept", () => {
    expect(removableOf([goneId], [goneId], new Set([goneId]))).toEqual([]);
  });

  test("a static name is never removed, whatever the answer says", () => {
    expect(removableOf(["vol"], ["vol"], new Set())).toEqual([]);
  });
});
