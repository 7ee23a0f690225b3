// The `ballast` command line. Each command parses its own flags (strictly: an unknown
// flag is a usage error), errors go to stderr, and the exit code says what kind of
// failure it was (see errors.ts).

import { type ParseArgsConfig, parseArgs } from "node:util";
import { constants as runtimeConstants } from "@ballast/runtime";
import { benchCommand } from "./bench.ts";
import { chaosCommand } from "./chaos/command.ts";
import { type CommandName, commandOf, helpFor } from "./commands.ts";
import { connectCli, findCluster } from "./connect.ts";
import { dataDirDefault } from "./constants.ts";
import { CliError, exitCodes } from "./errors.ts";
import { clusterHealth, healthLine } from "./health.ts";
import { ioCommand } from "./io.ts";
import { nbdCommand } from "./nbd.ts";
import { scrubCommand } from "./scrub.ts";
import { snapshotCommand } from "./snapshot.ts";
import { controlStoreLines, fetchStatus, formatStatus } from "./status.ts";
import { up } from "./up.ts";
import { upOptionsOf } from "./up-options.ts";
import { volumeCommand } from "./volume.ts";

type Flags = Record<string, string | boolean | undefined>;

function parse(argv: string[], options: ParseArgsConfig["options"]): Flags {
  try {
    return parseArgs({ args: argv, options, strict: true, allowPositionals: false })
      .values as Flags;
  } catch (error) {
    throw new CliError(exitCodes.usage, `${(error as Error).message} (see ballast help)`);
  }
}

const print = (line: string) => process.stdout.write(`${line}\n`);

async function main(argv: string[]): Promise<number> {
  const [argument, ...rest] = argv;
  const command = commandOf(argument);
  if (command === undefined) {
    throw new CliError(
      exitCodes.usage,
      `unknown command ${JSON.stringify(argument)} (see ballast help)`,
    );
  }
  switch (command) {
    case "help":
      process.stdout.write(helpFor(rest[0]));
      return exitCodes.ok;
    case "version":
      print(runtimeConstants.ballastVersion);
      return exitCodes.ok;
    case "up": {
      if (rest.includes("--help")) return help("up");
      return up({ ...upOptionsOf(rest, process.env), print });
    }
    case "status": {
      if (rest.includes("--help")) return help("status");
      const flags = parse(rest, {
        "data-dir": { type: "string" },
        nats: { type: "string" },
        json: { type: "boolean" },
        check: { type: "boolean" },
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
        if (flags.check) {
          // Scripts and health probes read the exit code; stderr says why for a person.
          const weak = clusterHealth(status).filter((volume) => volume.state !== "full");
          for (const volume of weak) {
            process.stderr.write(`ballast: volume ${volume.name} ${healthLine(volume)}\n`);
          }
          const storeLines = controlStoreLines(status);
          for (const line of storeLines) process.stderr.write(`ballast: ${line}\n`);
          if (weak.length > 0 || storeLines.length > 0) return exitCodes.notFullStrength;
        }
      } finally {
        await client.close();
      }
      return exitCodes.ok;
    }
    case "volume":
      if (rest.includes("--help")) return help("volume");
      return volumeCommand(rest);
    case "snapshot":
      if (rest.includes("--help")) return help("snapshot");
      return snapshotCommand(rest);
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
    case "bench":
      if (rest.includes("--help")) return help("bench");
      return benchCommand(rest);
    case "chaos":
      if (rest.includes("--help")) return help("chaos");
      return chaosCommand(rest);
    default: {
      const never: never = command;
      throw new Error(`unhandled command ${String(never)}`);
    }
  }
}

function help(command: CommandName): number {
  process.stdout.write(helpFor(command));
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
