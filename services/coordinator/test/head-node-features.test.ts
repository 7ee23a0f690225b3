// What head nodes' reports say they do (head-node-features.ts): the last word of each
// node counts, a node never heard is unknown, and the book is bounded.

import { expect, test } from "vitest";
import { HeadNodeFeatures } from "../src/head-node-features.ts";

test("the last report of each node counts; past the bound the longest silent is forgotten", () => {
  const features = new HeadNodeFeatures(2);
  expect(features.enforcesServedBytes("head-1")).toBeUndefined();
  features.heard({ node: "head-1", enforcesServedBytes: true });
  features.heard({ node: "head-2" });
  expect(features.enforcesServedBytes("head-1")).toBe(true);
  expect(features.enforcesServedBytes("head-2")).toBe(false);
  // Restarted on older code: its next report says nothing of it.
  features.heard({ node: "head-1" });
  expect(features.enforcesServedBytes("head-1")).toBe(false);
  // head-2 is now the longest silent: a third node pushes it out.
  features.heard({ node: "head-1", enforcesServedBytes: true });
  features.heard({ node: "head-3", enforcesServedBytes: true });
  expect(features.enforcesServedBytes("head-2")).toBeUndefined();
  expect(features.enforcesServedBytes("head-1")).toBe(true);
  expect(features.enforcesServedBytes("head-3")).toBe(true);
});
