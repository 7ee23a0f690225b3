// The `ballast` command line. Each command parses its own flags (strictly: an unknown
// flag is a usage error), errors go to stderr, and the exit code says what kind of
// failure it was (see errors.ts).

import { type ParseArgsConfig, parseArgs } from "node:util";
import { constants as runtimeConstants } from "@ballast/runtime";
import { connectCli, findCluster } from "./connect.ts";
import {
  coordinatorCountDefault,
  dataDirDefault,
  headNodeCountDefault,
  serviceCountMax,
  sledCountDefault,
} from "./constants.ts";
import { CliError, exitCodes } from "./errors.ts";
import { ioCommand, ioHelp } from "./io.ts";
import { nbdCommand, nbdHelp } from "./nbd.ts";
import { scrubCommand, scrubHelp } from "./scrub.ts";
import { fetchStatus, formatStatus } from "./status.ts";
import { up } from "./up.ts";
import { volumeCommand, volumeHelp } from "./volume.ts";

const usage = `ballast: a replicated block store on NATS

Usage: ballast <command> [options]

Commands:
  up        start a local cluster in the foreground (Ctrl-C stops it)
  status    show services and volumes (--json for scripts)
  volume    create, list, describe and delete volumes
  write     write a file or stdin into a volume at an offset
  read      read a range of a volume to a file or stdout
  import    copy a whole image file into a volume (with progress)
  export    copy a whole volume into an image file (with progress)
  nbd       serve volumes over NBD from this terminal
  scrub     verify every chunk and blob on the sleds and report damage
  help      show this help, or a command's: ballast help <command>
  version   print the version

Every command finds the cluster from --nats URL, else BALLAST_NATS, else the
cluster.json that \`ballast up\` wrote in --data-dir (default ${dataDirDefault}).

Exit codes: 0 ok, 1 failed, 2 usage, 3 cluster unreachable, 4 missing tool.
`;

const commandHelp: Record<string, string> = {
  scrub: scrubHelp,
  volume: volumeHelp,
  nbd: nbdHelp,
  write: ioHelp,
  read: ioHelp,
  import: ioHelp,
  export: ioHelp,
  up: `Usage: ballast up [options]

Starts nats-server (unless --nats is given), the coordinator, head nodes and sleds as
separate processes, each with its own data directory and log under --data-dir, and
waits until all are healthy. Ctrl-C or SIGTERM stops every child. Running it again on
the same --data-dir brings back the same cluster.

Options:
  --data-dir <dir>        where state and logs live (default ${dataDirDefault})
  --nats <url>            use this NATS server instead of starting one
  --coordinators <n>      coordinator processes (default ${coordinatorCountDefault})
  --headnodes <n>         head node processes (default ${headNodeCountDefault})
  --sleds <n>             sled processes (default ${sledCountDefault})
  --gateways <n>          NBD gateway processes (default 1)
  --nbd-port <port>       the first gateway's NBD port (default 10809)
  --otlp-endpoint <url>   export traces by OTLP/HTTP (e.g. http://127.0.0.1:4318)
  --log-level <level>     services' log level (default info)
  --demo                  print what to try once the cluster is up
`,
  status: `Usage: ballast status [options]

Shows every service (kind, id, pid, health, last heartbeat) and every volume.

Options:
  --json                  print JSON (shape documented in the README)
  --data-dir <dir>        find the cluster through this directory (default ${dataDirDefault})
  --nats <url>            find the cluster at this NATS URL
`,
};

type Flags = Record<string, string | boolean | undefined>;

function parse(argv: string[], options: ParseArgsConfig["options"]): Flags {
  try {
    return parseArgs({ args: argv, options, strict: true, allowPositionals: false })
      .values as Flags;
  } catch (error) {
    throw new CliError(exitCodes.usage, `${(error as Error).message} (see ballast help)`);
  }
}

function count(value: unknown, flag: string, fallback: number, min: number): number {
  if (value === undefined) return fallback;
  const number = Number(value);
  if (!Number.isSafeInteger(number) || number < min || number > serviceCountMax) {
    throw new CliError(
      exitCodes.usage,
      `--${flag} must be a whole number from ${min} to ${serviceCountMax}, got ${JSON.stringify(value)}`,
    );
  }
  return number;
}

function port(value: unknown): number {
  if (value === undefined) return 10_809;
  const number = Number(value);
  if (!Number.isSafeInteger(number) || number < 1 || number > 65_535) {
    throw new CliError(
      exitCodes.usage,
      `--nbd-port must be a port from 1 to 65535, got ${JSON.stringify(value)}`,
    );
  }
  return number;
}

const print = (line: string) => process.stdout.write(`${line}\n`);

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case undefined:
    case "help":
    case "--help":
    case "-h": {
      const topic = rest[0];
      process.stdout.write(topic !== undefined && commandHelp[topic] ? commandHelp[topic] : usage);
      return exitCodes.ok;
    }
    case "version":
    case "--version":
      print(runtimeConstants.ballastVersion);
      return exitCodes.ok;
    case "up": {
      if (rest.includes("--help")) return help("up");
      const flags = parse(rest, {
        "data-dir": { type: "string" },
        nats: { type: "string" },
        coordinators: { type: "string" },
        headnodes: { type: "string" },
        sleds: { type: "string" },
        gateways: { type: "string" },
        "nbd-port": { type: "string" },
        "otlp-endpoint": { type: "string" },
        "log-level": { type: "string" },
        demo: { type: "boolean" },
      });
      return up({
        dataDir: (flags["data-dir"] as string | undefined) ?? dataDirDefault,
        nats: flags.nats as string | undefined,
        coordinators: count(flags.coordinators, "coordinators", coordinatorCountDefault, 1),
        headNodes: count(flags.headnodes, "headnodes", headNodeCountDefault, 1),
        sleds: count(flags.sleds, "sleds", sledCountDefault, 1),
        gateways: count(flags.gateways, "gateways", 1, 0),
        nbdPort: port(flags["nbd-port"]),
        demo: flags.demo === true,
        otlpEndpoint:
          (flags["otlp-endpoint"] as string | undefined) ??
          (process.env.OTEL_EXPORTER_OTLP_ENDPOINT || undefined),
        logLevel: flags["log-level"] as string | undefined,
        print,
      });
    }
    case "status": {
      if (rest.includes("--help")) return help("status");
      const flags = parse(rest, {
        "data-dir": { type: "string" },
        nats: { type: "string" },
        json: { type: "boolean" },
      });
      const address = await findCluster({
        nats: flags.nats as string | undefined,
        dataDir: (flags["data-dir"] as string | undefined) ?? dataDirDefault,
      });
      const client = await connectCli(address);
      try {
        const status = await fetchStatus(client.bus, address.natsUrl);
        process.stdout.write(
          flags.json ? `${JSON.stringify(status, null, 2)}\n` : formatStatus(status, Date.now()),
        );
      } finally {
        await client.close();
      }
      return exitCodes.ok;
    }
    case "volume":
      if (rest.includes("--help")) return help("volume");
      return volumeCommand(rest);
    case "write":
    case "read":
    case "import":
    case "export":
      if (rest.includes("--help")) return help(command);
      return ioCommand(command, rest);
    case "nbd":
      if (rest.includes("--help")) return help("nbd");
      return nbdCommand(rest);
    case "scrub":
      if (rest.includes("--help")) return help("scrub");
      return scrubCommand(rest);
    default:
      throw new CliError(
        exitCodes.usage,
        `unknown command ${JSON.stringify(command)} (see ballast help)`,
      );
  }
}

function help(command: string): number {
  process.stdout.write(commandHelp[command] ?? usage);
  return exitCodes.ok;
}

try {
  process.exitCode = await main(process.argv.slice(2));
} catch (error) {
  if (error instanceof CliError) {
    process.stderr.write(`ballast: ${error.message}\n`);
    process.exitCode = error.exitCode;
  } else {
    process.stderr.write(`ballast: unexpected failure: ${(error as Error).stack ?? error}\n`);
    process.exitCode = exitCodes.failed;
  }
}
// Timers of libraries (the OTLP exporter, NATS) must not keep a finished command alive.
setTimeout(() => process.exit(), 100).unref();
