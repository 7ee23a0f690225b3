import { describe, expect, test } from "vitest";
import {
  adminRequests,
  adminRequestTypes,
  coordinatorSubjectOf,
  extraFamilies,
  familyPatterns,
  isNatsRole,
  linkScopePrefixes,
  linkScopes,
  natsRoles,
  permissionsOf,
  permissionTable,
  replyInboxOf,
  replyInboxPrefix,
  serviceKinds,
  subjects,
} from "../src/index.ts";

/** NATS subject matching: `*` is one token, `>` the rest. */
function matches(pattern: string, subject: string): boolean {
  const p = pattern.split(".");
  const s = subject.split(".");
  for (let index = 0; index < p.length; index++) {
    if (p[index] === ">") return s.length > index;
    if (index >= s.length) return false;
    if (p[index] !== "*" && p[index] !== s[index]) return false;
  }
  return p.length === s.length;
}
const allowed = (patterns: string[], subject: string) => patterns.some((p) => matches(p, subject));

describe("the NATS permission table", () => {
  test("assigns every subject family to every role", () => {
    // A new entry in `subjects` must be added to the table deliberately.
    const families = [...Object.keys(subjects), ...extraFamilies].sort();
    expect(Object.keys(permissionTable).sort()).toEqual(families);
    for (const family of families) {
      expect(Object.keys(permissionTable[family as keyof typeof permissionTable]).sort()).toEqual(
        [...natsRoles].sort(),
      );
    }
  });

  test("the patterns match what the builders build", () => {
    expect(allowed(familyPatterns("node"), subjects.node.build("sled", "sled-1"))).toBe(true);
    for (const kind of serviceKinds) {
      expect(allowed([subjects.node.kindPattern(kind)], subjects.node.build(kind, "n"))).toBe(true);
    }
    expect(allowed(familyPatterns("volume"), subjects.volume.build("demo", 3))).toBe(true);
    expect(allowed(familyPatterns("replica"), subjects.replica.build("demo", 0, "h"))).toBe(true);
    expect(allowed(familyPatterns("heartbeat"), subjects.heartbeat.build("sled", "s"))).toBe(true);
    expect(allowed(familyPatterns("volume"), subjects.replica.build("demo", 0, "h"))).toBe(false);
    expect(
      allowed(
        familyPatterns("coordinatorServices"),
        subjects.coordinatorServices.build("headnode"),
      ),
    ).toBe(true);
    expect(allowed(familyPatterns("coordinator"), subjects.coordinatorServices.build("sled"))).toBe(
      false,
    );
  });

  test("a client reaches volume I/O and the coordinator, and nothing of the control plane", () => {
    const client = permissionsOf("client");
    expect(allowed(client.publish, subjects.volume.build("demo", 0))).toBe(true);
    expect(allowed(client.publish, subjects.coordinator.build())).toBe(true);
    expect(allowed(client.subscribe, `${replyInboxOf("client")}.abc.1`)).toBe(true);
    for (const subject of [
      subjects.replica.build("demo", 0, "head-1"),
      subjects.node.build("sled", "sled-1"),
      subjects.node.build("headnode", "head-1"),
      subjects.heartbeat.build("headnode", "head-1"),
      subjects.coordinatorServices.build("headnode"),
      "$JS.API.STREAM.INFO.KV_ballast-control",
      "$KV.ballast-control.volume.demo",
      "_INBOX.someone-else",
    ]) {
      expect(allowed(client.publish, subject), subject).toBe(false);
    }
    expect(allowed(client.subscribe, subjects.volume.build("demo", 0))).toBe(false);
    expect(allowed(client.subscribe, subjects.replica.build("demo", 0, "head-1"))).toBe(false);
  });

  test("a link scope is one family, and node inboxes (linked to sleds) take only trusted services", () => {
    for (const scope of linkScopes) {
      expect(familyPatterns(scope).every((p) => p.startsWith(linkScopePrefixes[scope]))).toBe(true);
    }
    const publishers = natsRoles.filter((role) =>
      ["publish", "both"].includes(permissionTable.node[role]),
    );
    expect(publishers).toEqual(["coordinator", "headnode", "operator"]);
  });

  test("a service listens only on its own kind's inboxes, and answers only what it received", () => {
    // A gateway's credentials (every `ballast nbd` user's) could subscribe to every
    // node inbox and publish on every _INBOX: it answered a head node's link offer for
    // sled-1 and acknowledged chunk writes it never stored.
    const inboxes = {
      coordinator: subjects.node.build("coordinator", "coordinator-1"),
      headnode: subjects.node.build("headnode", "head-1"),
      sled: subjects.node.build("sled", "sled-1"),
      gateway: subjects.node.build("gateway", "gateway-1"),
    };
    for (const role of serviceKinds) {
      const { subscribe, publish, responses } = permissionsOf(role);
      for (const kind of serviceKinds) {
        expect(allowed(subscribe, inboxes[kind]), `${role} subscribes ${kind}`).toBe(kind === role);
      }
      // A sled or a gateway answers only what it received (allow_responses): it may not
      // publish on anyone's _INBOX. The coordinator and head nodes may.
      const byPermission = role === "sled" || role === "gateway";
      expect(allowed(publish, "_INBOX.headnode.Nuid.1"), role).toBe(!byPermission);
      expect(responses?.max, role).toBe(byPermission ? 1 : undefined);
    }
    expect(permissionsOf("client").responses).toBeUndefined();
    // Who sends to which kind's inboxes.
    const coordinator = permissionsOf("coordinator").publish;
    for (const subject of Object.values(inboxes)) expect(allowed(coordinator, subject)).toBe(true);
    const headnode = permissionsOf("headnode").publish;
    expect(allowed(headnode, inboxes.sled)).toBe(true);
    expect(allowed(headnode, inboxes.headnode)).toBe(false);
    for (const role of ["sled", "gateway", "client"] as const) {
      for (const subject of Object.values(inboxes)) {
        expect(allowed(permissionsOf(role).publish, subject), role).toBe(false);
      }
    }
  });

  test("each role reads only its own role's replies", () => {
    // The client role could subscribe to _INBOX.>: every reply of every role, the
    // coordinator's control-bucket traffic included.
    for (const role of natsRoles) {
      const { subscribe } = permissionsOf(role);
      for (const other of natsRoles) {
        const reply = `${replyInboxOf(other)}.Nuid123.7`;
        expect(allowed(subscribe, reply), `${role} reads ${other}'s replies`).toBe(
          role === other || role === "operator",
        );
      }
      expect(isNatsRole(role)).toBe(true);
      expect(replyInboxOf(role).startsWith(replyInboxPrefix)).toBe(true);
    }
    expect(isNatsRole("alice")).toBe(false);
  });

  test("a service beats only as its own kind", () => {
    const sled = permissionsOf("sled");
    expect(allowed(sled.publish, subjects.heartbeat.build("sled", "sled-1"))).toBe(true);
    expect(allowed(sled.publish, subjects.heartbeat.build("headnode", "sled-1"))).toBe(false);
    expect(allowed(sled.publish, subjects.replica.build("demo", 0, "head-1"))).toBe(false);
    const coordinator = permissionsOf("coordinator");
    expect(allowed(coordinator.subscribe, subjects.heartbeat.build("sled", "s"))).toBe(true);
    expect(allowed(coordinator.publish, subjects.heartbeat.build("sled", "s"))).toBe(false);
    expect(allowed(coordinator.publish, "$KV.ballast-control.x")).toBe(true);
  });

  test("only a head node reports to the coordinator, and only as a head node", () => {
    const headnode = permissionsOf("headnode");
    expect(allowed(headnode.publish, subjects.coordinatorServices.build("headnode"))).toBe(true);
    expect(allowed(headnode.publish, subjects.coordinatorServices.build("sled"))).toBe(false);
    // The client subject is not a head node's: it asks the coordinator nothing there.
    expect(allowed(headnode.publish, subjects.coordinator.build())).toBe(false);
    for (const role of ["client", "gateway", "sled"] as const) {
      const publish = permissionsOf(role).publish;
      expect(allowed(publish, subjects.coordinatorServices.build("headnode")), role).toBe(false);
    }
    const coordinator = permissionsOf("coordinator");
    expect(allowed(coordinator.subscribe, subjects.coordinatorServices.build("headnode"))).toBe(
      true,
    );
  });

  test("only the operator may send the destructive control requests", () => {
    const admin = subjects.coordinatorAdmin.build();
    for (const role of natsRoles) {
      expect(allowed(permissionsOf(role).publish, admin), role).toBe(role === "operator");
    }
    expect(allowed(permissionsOf("coordinator").subscribe, admin)).toBe(true);
    // Nor does the clients' subject's pattern reach it.
    expect(allowed(familyPatterns("coordinator"), admin)).toBe(false);
    for (const type of adminRequests) expect(coordinatorSubjectOf(type)).toBe(admin);
    for (const type of ["volume.create.v1", "volume.list.v1", "snapshot.create.v1"] as const) {
      expect(coordinatorSubjectOf(type)).toBe(subjects.coordinator.build());
      expect(adminRequestTypes.has(type)).toBe(false);
    }
  });
});
