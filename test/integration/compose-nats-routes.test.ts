// The compose NATS servers' routes, on real nats-servers: deploy/nats-server.conf and the
// route URLs docker-compose.yml builds, run as compose would run them except that every
// address is this host's loopback and every port a free one (no Docker engine here). The
// servers route to each other with the route password; a route opened without it, or
// with another, is refused, as a container on the compose network would be. A route is
// bound by no user's permissions, so an open route port was full access to the cluster.

import { type ChildProcess, spawn } from "node:child_process";
import { copyFile, readFile, writeFile } from "node:fs/promises";
import { createConnection } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { findNatsServer, freePort, natsPasswordVariable, stopChild } from "@ballast/cli";
import { natsRoles } from "@ballast/protocol";
import { afterAll, beforeAll, expect, test } from "vitest";
import { temporaryDirectory } from "../support/cluster.ts";

const root = fileURLToPath(new URL("../../", import.meta.url));
const routePassword = "test-route-password";

interface Server {
  name: string;
  routePort: number;
  monitorPort: number;
  child?: ChildProcess;
}

let directory: Awaited<ReturnType<typeof temporaryDirectory>>;
const servers: Server[] = [];

/** `text` with `pattern` replaced once; fails if the file no longer has it. */
function replaceOnce(text: string, pattern: RegExp, replacement: string): string {
  expect(text, String(pattern)).toMatch(pattern);
  return text.replace(pattern, replacement);
}

/**
 * NATS_ROUTES as docker-compose.yml sets it, with the route password put in
 * where compose would, and each `nats-N:6222` replaced by that server's loopback port.
 */
async function composeRoutes(routePorts: readonly number[]): Promise<string> {
  const compose = await readFile(join(root, "docker-compose.yml"), "utf8");
  const block = /^ {2}NATS_ROUTES: >-\n((?: {4}.*\n)+)/m.exec(compose)?.[1];
  expect(block).toBeDefined();
  const value = block!
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "")
    .join(" ")
    .replaceAll(/\$\{BALLAST_NATS_PASSWORD_ROUTE:-[^}]*\}/g, routePassword);
  expect(value.match(/nats-\d:6222/g)).toEqual(["nats-1:6222", "nats-2:6222", "nats-3:6222"]);
  return value.replaceAll(
    /nats-(\d):6222/g,
    (_, index: string) => `127.0.0.1:${routePorts[Number(index) - 1]}`,
  );
}

beforeAll(async () => {
  directory = await temporaryDirectory("ballast-compose-nats-");
  const binary = findNatsServer();
  expect(binary, "nats-server is installed").toBeDefined();
  await copyFile(join(root, "deploy", "nats-auth.conf"), join(directory.path, "nats-auth.conf"));
  // Three route ports as compose has three servers; two servers run (routing needs no
  // third), and the third port stays closed.
  const routePorts = [await freePort(), await freePort(), await freePort()];
  const routes = await composeRoutes(routePorts);
  const passwords = Object.fromEntries(
    natsRoles.map((role) => [natsPasswordVariable(role), `test-${role}-password`]),
  );
  for (const index of [0, 1]) {
    const server: Server = {
      name: `nats-${index + 1}`,
      routePort: routePorts[index]!,
      monitorPort: await freePort(),
    };
    let config = await readFile(join(root, "deploy", "nats-server.conf"), "utf8");
    config = replaceOnce(
      config,
      /^listen: "0\.0\.0\.0:4222"$/m,
      `listen: "127.0.0.1:${await freePort()}"`,
    );
    config = replaceOnce(
      config,
      /^http: "[^"]*:8222"$/m,
      `http: "127.0.0.1:${server.monitorPort}"`,
    );
    config = replaceOnce(
      config,
      /^ {2}listen: "0\.0\.0\.0:6222"$/m,
      `  listen: "127.0.0.1:${server.routePort}"`,
    );
    config = replaceOnce(
      config,
      /^ {2}store_dir: "\/data"$/m,
      `  store_dir: ${JSON.stringify(join(directory.path, server.name))}`,
    );
    const configPath = join(directory.path, `${server.name}.conf`);
    await writeFile(configPath, config);
    server.child = spawn(binary!, ["-c", configPath], {
      env: {
        ...process.env,
        ...passwords,
        NATS_SERVER_NAME: server.name,
        BALLAST_NATS_PASSWORD_ROUTE: routePassword,
        NATS_ROUTES: routes,
      },
      stdio: "ignore",
    });
    servers.push(server);
  }
}, 60_000);

afterAll(async () => {
  for (const server of servers) if (server.child !== undefined) await stopChild(server.child);
  await directory?.remove();
});

/** The routes a server reports on its monitoring port (loopback), once it answers. */
async function routeCount(server: Server): Promise<number | undefined> {
  try {
    const response = await fetch(`http://127.0.0.1:${server.monitorPort}/routez`);
    return ((await response.json()) as { num_routes: number }).num_routes;
  } catch {
    return undefined; // not listening yet
  }
}

/**
 * What a server answers a route that opens with `connect` (the fields of a route's
 * CONNECT) and a PING: PONG when it took the route, an -ERR when it refused it.
 */
async function openRoute(server: Server, connect: Record<string, unknown>): Promise<string> {
  const socket = createConnection({ host: "127.0.0.1", port: server.routePort });
  try {
    let received = "";
    const next = (pattern: RegExp) =>
      new Promise<string>((resolve, reject) => {
        const check = () => {
          const match = pattern.exec(received);
          if (match === null) return;
          socket.off("data", onData);
          resolve(match[0]);
        };
        const onData = (chunk: Buffer) => {
          received += chunk.toString("latin1");
          check();
        };
        socket.on("data", onData);
        socket.once("error", reject);
        socket.once("close", () => resolve(received));
        check();
      });
    expect(await next(/^INFO .*\r\n/)).toContain('"auth_required":true');
    socket.write(`CONNECT ${JSON.stringify(connect)}\r\nPING\r\n`);
    return await next(/(PONG|-ERR [^\r]*)\r\n/);
  } finally {
    socket.destroy();
  }
}

const routeConnect = {
  verbose: false,
  pedantic: false,
  tls_required: false,
  name: "intruder",
  cluster: "ballast",
};

test("the compose servers route to each other with the route password from the environment", async () => {
  for (const server of servers) {
    await expect.poll(() => routeCount(server), { timeout: 30_000, interval: 200 }).toBe(1);
  }
});

test("a route opened without the route password, or with another, is refused", async () => {
  // Once the server answers (its own routes need not be up for this).
  await expect
    .poll(() => routeCount(servers[0]!), { timeout: 30_000, interval: 200 })
    .toBeDefined();
  const before = await routeCount(servers[0]!);
  expect(await openRoute(servers[0]!, routeConnect)).toMatch(/^-ERR 'Authorization Violation'/);
  expect(
    await openRoute(servers[0]!, { ...routeConnect, user: "route", pass: "not-the-password" }),
  ).toMatch(/^-ERR 'Authorization Violation'/);
  // A client user's password is not a route's either.
  expect(
    await openRoute(servers[0]!, {
      ...routeConnect,
      user: "operator",
      pass: "test-operator-password",
    }),
  ).toMatch(/^-ERR 'Authorization Violation'/);
  // None of them became a route.
  expect(await routeCount(servers[0]!)).toBe(before);
});
