// `ballast nbd`: serves the cluster's volumes over NBD from this terminal, until Ctrl-C.
// It runs the gateway service in this process (heartbeats, node info and all), with an
// id of its own and a throwaway data directory, so it can run beside `ballast up`'s.

import { mkdtemp, rm } from "node:fs/promises";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { type ParseArgsConfig, parseArgs } from "node:util";
import { exportListProblem, gatewayDefinition, nbdPortDefault } from "@ballast/gateway";
import { runService } from "@ballast/runtime";
import { findCluster } from "./connect.ts";
import { dataDirDefault } from "./constants.ts";
import { CliError, exitCodes } from "./errors.ts";

export const nbdHelp = `Usage: ballast nbd [--port ${nbdPortDefault}] [--host 127.0.0.1] [--socket PATH] [options]

Serves every volume over NBD (the export name is the volume name) until Ctrl-C:
  nbdinfo nbd://127.0.0.1:${nbdPortDefault}/VOLUME
NBD has no access control: whoever reaches the port reads and writes every volume served.
Keep --host on loopback (or use --socket) unless a firewall guards the port.
Options: --data-dir <dir> (default ${dataDirDefault}), --nats <url>,
  --exports a,b (serve only these volumes and their snapshots).
`;

const options: ParseArgsConfig["options"] = {
  "data-dir": { type: "string" },
  nats: { type: "string" },
  port: { type: "string" },
  host: { type: "string" },
  socket: { type: "string" },
  exports: { type: "string" },
};

export async function nbdCommand(argv: string[]): Promise<number> {
  let flags: Record<string, string | boolean | undefined>;
  try {
    flags = parseArgs({ args: argv, options, strict: true, allowPositionals: false })
      .values as typeof flags;
  } catch (error) {
    throw new CliError(exitCodes.usage, `${(error as Error).message} (see ballast help nbd)`);
  }
  const port = portOf(flags.port);
  if (flags.exports !== undefined) {
    // Checked here so that the error names the flag the user typed (not --nbd-exports).
    const problem = exportListProblem(String(flags.exports));
    if (problem !== undefined) throw new CliError(exitCodes.usage, `--exports ${problem}`);
  }
  const address = await findCluster({
    nats: flags.nats as string | undefined,
    dataDir: (flags["data-dir"] as string | undefined) ?? dataDirDefault,
    role: "gateway",
  });
  const directory = await mkdtemp(join(tmpdir(), "ballast-nbd-"));
  const id = `gateway-${hostname()
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, "-")
    .slice(0, 30)}-${process.pid}`;
  const serviceArgv = ["--id", id, "--data-dir", directory, "--nats", address.natsUrl];
  if (address.credentialsFile !== undefined) {
    serviceArgv.push("--nats-creds", address.credentialsFile);
  }
  if (address.access?.caFile !== undefined) serviceArgv.push("--nats-ca", address.access.caFile);
  if (port !== undefined) serviceArgv.push("--nbd-port", String(port));
  if (flags.host !== undefined) serviceArgv.push("--nbd-host", String(flags.host));
  if (flags.socket !== undefined) serviceArgv.push("--nbd-socket", String(flags.socket));
  if (flags.exports !== undefined) serviceArgv.push("--nbd-exports", String(flags.exports));
  process.stderr.write(
    `starting NBD for the cluster at ${address.natsUrl} on ${flags.socket ?? `${flags.host ?? "127.0.0.1"}:${port ?? nbdPortDefault}`}; Ctrl-C stops\n`,
  );
  try {
    const code = await runService(gatewayDefinition, {
      argv: serviceArgv,
      env: { BALLAST_LOG_LEVEL: "warn" },
    });
    return code === 0 ? exitCodes.ok : code === 2 ? exitCodes.usage : exitCodes.failed;
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
}

/**
 * `--port`, checked here so that the error names the flag the user typed (the gateway
 * would name its own, --nbd-port). Port 0 (any free port) is refused: the port chosen
 * is logged at a level this command does not show, so nobody could connect.
 */
function portOf(value: string | boolean | undefined): number | undefined {
  if (value === undefined) return undefined;
  const text = String(value).trim();
  const port = /^\d+$/.test(text) ? Number(text) : Number.NaN;
  if (!(port >= 1 && port <= 65_535)) {
    throw new CliError(
      exitCodes.usage,
      `--port must be a port from 1 to 65535, got ${JSON.stringify(String(value))}`,
    );
  }
  return port;
}
