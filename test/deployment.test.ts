import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import {
  cliConstants,
  natsAuthorizationConfig,
  natsPasswordVariable,
  routeUser,
} from "@ballast/cli";
import { nbdLimitsDefault } from "@ballast/gateway";
import { buckets, limits, natsRoles, permissionsOf, serviceKinds } from "@ballast/protocol";
import { constants as runtimeConstants } from "@ballast/runtime";
import { expect, test } from "vitest";

const root = fileURLToPath(new URL("../", import.meta.url));
const read = (path: string) => readFileSync(`${root}${path}`, "utf8");

test("a service is given longer to stop than its own bounds let it take, by the CLI and by compose", () => {
  // A service's stop: in-flight handlers, then its closers (a gateway's NBD connections
  // among them, bounded on their own within the closers' grace), then NATS, each bounded.
  // The launcher's kill came at 15 s and compose's at its default 10 s, inside that.
  expect(nbdLimitsDefault.closeGraceMs).toBeLessThan(runtimeConstants.closersGraceMs);
  const slowestStopMs =
    runtimeConstants.shutdownGraceMs +
    runtimeConstants.closersGraceMs +
    runtimeConstants.natsCloseGraceMs;
  expect(cliConstants.childStopGraceMs).toBeGreaterThan(slowestStopMs);
  const anchor = /^x-ballast: &ballast\n(?: {2}.*\n)*? {2}stop_grace_period: (\d+)s$/m.exec(
    read("docker-compose.yml"),
  );
  expect(Number(anchor?.[1]) * 1000).toBe(cliConstants.childStopGraceMs);
});

test("the compose NATS config allows the protocol's largest message", () => {
  const match = /^max_payload:\s*(\d+)/m.exec(read("deploy/nats-server.conf"));
  expect(Number(match?.[1])).toBe(limits.natsPayloadBytesMax);
});

test("the compose NATS config caps the JetStream store as `ballast up` does", () => {
  const config = read("deploy/nats-server.conf");
  const jetstream = /^jetstream \{\n((?: {2}.*\n)*)\}/m.exec(config)?.[1] ?? "";
  expect(Number(/^ {2}max_file_store:\s*(\d+)$/m.exec(jetstream)?.[1])).toBe(
    cliConstants.natsFileStoreBytesDefault,
  );
  expect(Number(/^ {2}max_memory_store:\s*(\d+)$/m.exec(jetstream)?.[1])).toBe(
    cliConstants.natsMemoryStoreBytes,
  );
});

test("docker-compose runs every service kind from the bundles the image installs", () => {
  const compose = read("docker-compose.yml");
  const dockerfile = read("Dockerfile");
  // The image builds the bundles (apps/cli/src/install-bundles.ts) into one directory...
  const install = /^RUN node --import tsx (\S+) (\/\S+)$/m.exec(dockerfile);
  expect(install?.[1]).toBe("apps/cli/src/install-bundles.ts");
  expect(existsSync(`${root}${install?.[1]}`)).toBe(true);
  const directory = install![2]!;
  // ...that the services run from, every kind of them...
  const commands = [
    ...compose.matchAll(/^ {2}[a-z0-9-]+:\n {4}<<: \*ballast\n {4}command: \["([^"]+)"/gm),
  ].map((match) => match[1]!);
  expect(commands.length).toBe([...compose.matchAll(/^ {4}<<: \*ballast$/gm)].length);
  const kinds = commands.map((file) => {
    expect(file.startsWith(`${directory}/`)).toBe(true);
    return /^([a-z]+)\.mjs$/.exec(file.slice(directory.length + 1))?.[1];
  });
  expect(new Set(kinds)).toEqual(new Set(serviceKinds));
  // ...with node alone (no loader), and the CLI on PATH too.
  expect(dockerfile).not.toMatch(/--import",? "?tsx/);
  expect(dockerfile).toContain(`exec node --enable-source-maps ${directory}/cli.mjs "$@"`);
  expect(dockerfile).toContain("> /usr/local/bin/ballast && chmod 755 /usr/local/bin/ballast");
  expect(compose).toContain("OTEL_EXPORTER_OTLP_ENDPOINT: http://jaeger:4318");
  // Every Ballast service gets all three NATS servers, through the shared anchor.
  expect(compose).toContain(
    "BALLAST_NATS: nats://nats-1:4222,nats://nats-2:4222,nats://nats-3:4222",
  );
});

test("the compose NATS users are the permission table's (vitest -u rewrites the file)", async () => {
  const users = natsRoles.map((role) => ({
    user: role,
    password: `$${natsPasswordVariable(role)}`,
    permissions: permissionsOf(role),
  }));
  const generated = [
    "# Generated from packages/protocol/src/permissions.ts by test/deployment.test.ts",
    "# (`npx vitest run test/deployment.test.ts -u` rewrites it): one user per role,",
    "# each password from the server's environment.",
    natsAuthorizationConfig(users),
    "",
  ].join("\n");
  await expect(generated).toMatchFileSnapshot("../deploy/nats-auth.conf");
});

test("every role's password variable is given to the NATS servers", () => {
  const compose = read("docker-compose.yml");
  for (const role of natsRoles) expect(compose).toContain(`${natsPasswordVariable(role)}:`);
});

test("nats-init makes the control bucket the coordinators open, with the launcher's history", () => {
  const compose = read("docker-compose.yml");
  expect(compose).toContain(`nats kv info ${buckets.control} `);
  expect(compose).toContain(
    `nats kv add ${buckets.control} --history=${cliConstants.controlBucketHistory} --replicas=3`,
  );
});

test("Prometheus scrapes every Ballast service of the compose file on its metrics port", () => {
  const compose = read("docker-compose.yml");
  const port = /BALLAST_METRICS_PORT: "(\d+)"/.exec(compose)?.[1];
  const services = [...compose.matchAll(/^ {2}([a-z0-9-]+):\n {4}<<: \*ballast\n/gm)].map(
    (match) => `${match[1]}:${port}`,
  );
  expect(services.length).toBeGreaterThan(0);
  const targets = [...read("deploy/prometheus.yml").matchAll(/"([a-z0-9-]+:\d+)"/g)].map(
    (match) => match[1],
  );
  expect(targets.sort()).toEqual(services.sort());
});

test("the compose NATS monitoring is on the container's loopback, and routes authenticate as ballast up's do", () => {
  const config = read("deploy/nats-server.conf");
  const compose = read("docker-compose.yml");
  // /connz and /subsz answer whoever reaches the port; the healthcheck asks from inside.
  expect(config).toMatch(/^http: "127\.0\.0\.1:8222"$/m);
  expect(compose).toContain('"http://127.0.0.1:8222/healthz"');
  // Routes are bound by no user's permissions: each must prove the route password.
  const cluster = /^cluster \{\n((?: {2}.*\n)*)\}/m.exec(config)?.[1] ?? "";
  expect(cluster).toContain(
    `  authorization {\n    user: ${routeUser}\n    password: $BALLAST_NATS_PASSWORD_ROUTE\n  }\n`,
  );
  expect(cluster).toMatch(/^ {2}routes: \$NATS_ROUTES$/m);
  const servers = [...compose.matchAll(/^ {2}(nats-\d):\n {4}<<: \*nats-server$/gm)].map(
    (match) => match[1],
  );
  expect(servers).toEqual(["nats-1", "nats-2", "nats-3"]);
  const passwords = /^x-nats-passwords: &nats-passwords\n((?: {2}.*\n)+)/m.exec(compose)?.[1] ?? "";
  expect(passwords).toMatch(/^ {2}BALLAST_NATS_PASSWORD_ROUTE: \$\{BALLAST_NATS_PASSWORD_ROUTE:-/m);
  for (const server of servers) {
    expect(passwords).toContain(
      `"nats-route://${routeUser}:\${BALLAST_NATS_PASSWORD_ROUTE:-example-route-password-change-me}@${server}:6222"`,
    );
  }
});
