// A volume attached through the gateway, on real processes, with a real NBD client
// (libnbd, from Python) that stays connected, and the real `ballast` command.
// review-nbd.md items 4 and 5: a shrink under an attached client was accepted, and the
// client's writes past the new end (its connection keeps the old size) were
// acknowledged, FUA included, then read as zeros after a grow; a delete under one was
// accepted too. Now a shrink and a delete are refused while attached (the error names
// the gateway and its connections, and says to disconnect or --force); after a forced
// shrink the gateway learns the new size, so the old connection's writes past the new
// end fail with ENOSPC rather than vanish; once the client is gone, both go through.

import { type ChildProcess, spawn } from "node:child_process";
import { type BallastError, ErrorCode, subjects } from "@ballast/protocol";
import { afterAll, beforeAll, expect, test } from "vitest";
import { runCli } from "../support/cli.ts";
import { startTestCluster, type TestCluster, waitFor } from "../support/cluster.ts";
import { describeVolume, gatewayUrl, hasLibnbd, libnbdPython } from "../support/faults.ts";

const mebibyte = 1024 * 1024;
/** Each client's deadline: a failure or a hang fails the test, never stalls it. */
const clientTimeoutMs = 60_000;
let cluster: TestCluster;
let nats: string[];

beforeAll(async () => {
  cluster = await startTestCluster({ headNodes: 2, sleds: 2, gateways: 1, nbdPortFirst: 0 });
  nats = ["--nats", cluster.cluster.natsUrl];
}, 60_000);
afterAll(() => cluster?.stop());

function create(name: string, sizeBytes: number) {
  return cluster.bus.request(subjects.coordinator.build(), {
    type: "volume.create.v1",
    name,
    sizeBytes,
    partitionBytes: mebibyte,
    replicaCount: 2,
  });
}

/**
 * A client that stays connected to `name` and runs the steps the test sends it, one
 * JSON line each on stdin ({step, op: write|read|flush, offset, length, byte, fua}),
 * saying each outcome as a JSON line (`read` says whether every byte was `byte`).
 */
class HeldClient {
  private readonly child: ChildProcess;
  private text = "";
  private readonly exited: Promise<number | null>;
  private readonly timer: NodeJS.Timeout;

  constructor(url: string) {
    this.child = spawn(
      libnbdPython,
      [
        "-c",
        `
import json, sys, nbd
def say(**fields):
    print(json.dumps(fields), flush=True)
h = nbd.NBD()
h.connect_uri(${JSON.stringify(url)})
say(step="ready", size=h.get_size())
for line in sys.stdin:
    cmd = json.loads(line)
    try:
        if cmd["op"] == "write":
            h.pwrite(bytes([cmd["byte"]]) * cmd["length"], cmd["offset"],
                     nbd.CMD_FLAG_FUA if cmd.get("fua") else 0)
            say(step=cmd["step"], ok=True)
        elif cmd["op"] == "read":
            data = h.pread(cmd["length"], cmd["offset"])
            say(step=cmd["step"], ok=True, same=data == bytes([cmd["byte"]]) * cmd["length"])
        elif cmd["op"] == "flush":
            h.flush()
            say(step=cmd["step"], ok=True)
    except nbd.Error as error:
        say(step=cmd["step"], ok=False, errno=error.errno)
h.shutdown()
`,
      ],
      { stdio: ["pipe", "pipe", "pipe"] },
    );
    this.child.stdout?.on("data", (chunk) => {
      this.text += chunk;
    });
    this.child.stderr?.on("data", (chunk) => {
      this.text += chunk;
    });
    this.exited = new Promise((resolve) => this.child.once("close", resolve));
    this.timer = setTimeout(() => this.child.kill("SIGKILL"), clientTimeoutMs);
  }

  /** Sends one step and waits for its outcome line. */
  async run(step: Record<string, unknown> & { step: string }): Promise<Record<string, unknown>> {
    if (step.step !== "ready") this.child.stdin?.write(`${JSON.stringify(step)}\n`);
    let done = false;
    void this.exited.then(() => {
      done = true;
    });
    for (;;) {
      const said = this.lines().find((line) => line.step === step.step);
      if (said !== undefined) return said;
      if (done) throw new Error(`the client exited before it said ${step.step}: ${this.text}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /** Disconnects (NBD_CMD_DISC) and waits for the process to end. */
  async quit(): Promise<void> {
    this.child.stdin?.end();
    const code = await this.exited;
    clearTimeout(this.timer);
    expect(code, this.text).toBe(0);
  }

  kill(): void {
    clearTimeout(this.timer);
    this.child.kill("SIGKILL");
  }

  private lines(): Record<string, unknown>[] {
    return this.text
      .split("\n")
      .filter((line) => line.startsWith("{"))
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  }
}

/** Waits until gateway-1 reports no NBD connection to `name`. */
function detached(name: string) {
  return waitFor(`gateway-1 to report ${name} detached`, async () => {
    const info = await cluster.bus.request(subjects.node.build("gateway", "gateway-1"), {
      type: "node.info.v1",
    });
    const attached = (info.details.attached ?? {}) as Record<string, number>;
    return (attached[name] ?? 0) === 0 ? true : undefined;
  });
}

test.skipIf(!hasLibnbd())(
  "a shrink is refused while attached; forced, the old connection's writes past the new end fail with ENOSPC; detached, it goes through",
  async () => {
    const name = "shrinks";
    await create(name, 4 * mebibyte);
    const url = await gatewayUrl(cluster.bus, "gateway-1", name);
    const held = new HeldClient(url);
    try {
      expect(await held.run({ step: "ready" })).toEqual({ step: "ready", size: 4 * mebibyte });
      // The connection's GO is answered before the gateway counts it attached: a write
      // answered means the connection is past its handshake.
      const first = { op: "write", offset: 0, length: mebibyte, byte: 0x11 };
      expect(await held.run({ step: "first", ...first })).toEqual({ step: "first", ok: true });

      // Refused, by the request and by the CLI, and nothing changed.
      const refused = await cluster.bus
        .request(
          subjects.coordinatorAdmin.build(),
          {
            type: "volume.resize.v1",
            name,
            sizeBytes: 2 * mebibyte,
            allowShrink: true,
          },
          { deadlineMs: 30_000 },
        )
        .catch((error: BallastError) => error);
      expect(refused).toMatchObject({ code: ErrorCode.InvalidArgument });
      expect((refused as BallastError).message).toContain(
        `cannot shrink volume ${name} to ${2 * mebibyte} bytes: volume ${name} is attached (1 NBD connection(s) through gateway gateway-1)`,
      );
      const cliRefused = await runCli([
        "volume",
        "resize",
        name,
        "--size",
        "2MiB",
        "--allow-shrink",
        ...nats,
      ]);
      expect(cliRefused.code).not.toBe(0);
      expect(cliRefused.stderr).toContain("is attached");
      expect(cliRefused.stderr).toContain("--force");
      expect((await describeVolume(cluster.bus, name)).sizeBytes).toBe(4 * mebibyte);

      // Forced: the volume shrinks under the client.
      const forced = await runCli([
        "volume",
        "resize",
        name,
        "--size",
        "2MiB",
        "--allow-shrink",
        "--force",
        ...nats,
      ]);
      expect(forced.stderr).toBe("");
      expect(forced.code).toBe(0);
      expect((await describeVolume(cluster.bus, name)).sizeBytes).toBe(2 * mebibyte);

      // The old connection (still 4 MiB to its client) writes past the new end: refused,
      // not acknowledged (the old code acknowledged it, FUA and all, and it was lost).
      const past = { op: "write", offset: 3 * mebibyte, length: 65_536, byte: 0x22, fua: true };
      expect(await held.run({ step: "past", ...past })).toEqual({
        step: "past",
        ok: false,
        errno: "ENOSPC",
      });
      // Inside the new end it writes and reads as before.
      const inside = { op: "write", offset: mebibyte, length: 65_536, byte: 0x33, fua: true };
      expect(await held.run({ step: "inside", ...inside })).toEqual({ step: "inside", ok: true });
      expect(
        await held.run({ step: "check", op: "read", offset: 0, length: mebibyte, byte: 0x11 }),
      ).toEqual({ step: "check", ok: true, same: true });
      await held.quit();
    } finally {
      held.kill();
    }

    // Detached: a shrink needs no --force.
    await detached(name);
    const shrunk = await runCli([
      "volume",
      "resize",
      name,
      "--size",
      "1MiB",
      "--allow-shrink",
      ...nats,
    ]);
    expect(shrunk.stderr).toBe("");
    expect(shrunk.code).toBe(0);
    expect((await describeVolume(cluster.bus, name)).sizeBytes).toBe(mebibyte);
    // A grow is never refused, and what was kept is there.
    const grown = await runCli(["volume", "resize", name, "--size", "4MiB", ...nats]);
    expect(grown.code).toBe(0);
    const after = new HeldClient(url);
    try {
      expect(await after.run({ step: "ready" })).toEqual({ step: "ready", size: 4 * mebibyte });
      expect(
        await after.run({ step: "kept", op: "read", offset: 0, length: mebibyte, byte: 0x11 }),
      ).toEqual({ step: "kept", ok: true, same: true });
      expect(
        await after.run({
          step: "cut",
          op: "read",
          offset: mebibyte,
          length: 3 * mebibyte,
          byte: 0,
        }),
      ).toEqual({ step: "cut", ok: true, same: true });
      await after.quit();
    } finally {
      after.kill();
    }
  },
  180_000,
);

test.skipIf(!hasLibnbd())(
  "a delete is refused while attached; forced, or once detached, it goes through",
  async () => {
    for (const [name, how] of [
      ["kept", "detach"],
      ["forced", "force"],
    ] as const) {
      await create(name, 2 * mebibyte);
      const url = await gatewayUrl(cluster.bus, "gateway-1", name);
      const held = new HeldClient(url);
      try {
        await held.run({ step: "ready" });
        const write = { op: "write", offset: 0, length: 65_536, byte: 0x44 };
        expect(await held.run({ step: "write", ...write })).toEqual({ step: "write", ok: true });

        const refused = await runCli(["volume", "delete", name, ...nats]);
        expect(refused.code).not.toBe(0);
        expect(refused.stderr).toContain(
          `cannot delete volume ${name}: volume ${name} is attached (1 NBD connection(s) through gateway gateway-1)`,
        );
        expect((await describeVolume(cluster.bus, name)).sizeBytes).toBe(2 * mebibyte);
        // The client's volume is still there, its data with it.
        expect(
          await held.run({ step: "read", op: "read", offset: 0, length: 65_536, byte: 0x44 }),
        ).toEqual({ step: "read", ok: true, same: true });

        if (how === "detach") {
          await held.quit();
          await detached(name);
        }
        const deleted = await runCli([
          "volume",
          "delete",
          name,
          ...(how === "force" ? ["--force"] : []),
          ...nats,
        ]);
        expect(deleted.stderr).toBe("");
        expect(deleted.code).toBe(0);
        await expect(describeVolume(cluster.bus, name)).rejects.toMatchObject({
          code: ErrorCode.NotFound,
        });
        if (how === "force") {
          // Deleted from under it: its I/O fails, it is not served from nowhere.
          const after = await held.run({ step: "after", ...write });
          expect(after).toMatchObject({ step: "after", ok: false });
          await held.quit();
        }
      } finally {
        held.kill();
      }
    }
  },
  180_000,
);
