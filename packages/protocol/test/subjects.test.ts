import { describe, expect, test } from "vitest";
import {
  checkNodeId,
  checkVolumeName,
  parseHeartbeatSubject,
  SubjectTokenError,
  subjects,
} from "../src/index.ts";

describe("subjects", () => {
  test("builders produce versioned subjects", () => {
    expect(subjects.heartbeat.build("sled", "sled-1")).toBe("ballast.v1.heartbeat.sled.sled-1");
    expect(subjects.node.build("headnode", "head-2")).toBe("ballast.v1.node.headnode.head-2");
    expect(subjects.node.kindPattern("sled")).toBe("ballast.v1.node.sled.*");
    expect(subjects.volume.build("demo", 3)).toBe("ballast.v1.volume.demo.3");
    expect(subjects.replica.build("demo", 0, "head-1")).toBe("ballast.v1.replica.demo.0.head-1");
    expect(subjects.coordinator.build()).toBe("ballast.v1.coordinator");
    expect(subjects.coordinatorServices.build("headnode")).toBe(
      "ballast.v1.coordinator.from.headnode",
    );
  });

  test("tokens that would change routing are refused", () => {
    for (const bad of ["", "a.b", "a*", ">", "a b", "A", "-a", "a".repeat(64), "é"]) {
      expect(() => checkNodeId(bad)).toThrow(SubjectTokenError);
      expect(() => checkVolumeName(bad)).toThrow(SubjectTokenError);
    }
    expect(() => subjects.volume.build("demo", -1)).toThrow(SubjectTokenError);
    expect(() => subjects.volume.build("demo", 1.5)).toThrow(SubjectTokenError);
    // biome-ignore lint/suspicious/noExplicitAny: feeding a wrong kind on purpose
    expect(() => subjects.heartbeat.build("router" as any, "x")).toThrow(SubjectTokenError);
    // biome-ignore lint/suspicious/noExplicitAny: feeding a wrong kind on purpose
    expect(() => subjects.coordinatorServices.build("*" as any)).toThrow(SubjectTokenError);
    // biome-ignore lint/suspicious/noExplicitAny: feeding a wrong kind on purpose
    expect(() => subjects.node.build("*" as any, "sled-1")).toThrow(SubjectTokenError);
    // biome-ignore lint/suspicious/noExplicitAny: feeding a wrong kind on purpose
    expect(() => subjects.node.kindPattern(">" as any)).toThrow(SubjectTokenError);
    expect(() => subjects.node.build("sled", "sled.1")).toThrow(SubjectTokenError);
  });

  test("heartbeat subjects parse back to kind and node id", () => {
    expect(parseHeartbeatSubject(subjects.heartbeat.build("headnode", "head-1"))).toEqual({
      kind: "headnode",
      nodeId: "head-1",
    });
    expect(parseHeartbeatSubject("ballast.v1.heartbeat.router.x")).toBeUndefined();
    expect(parseHeartbeatSubject("ballast.v1.node.headnode.head-1")).toBeUndefined();
    expect(parseHeartbeatSubject("ballast.v2.heartbeat.sled.s")).toBeUndefined();
  });
});
