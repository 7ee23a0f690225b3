// The `ballast` commands and their help texts, in one table: main.ts dispatches on these
// names (a switch with a never-check, so a command added here and not handled there is a
// type error), the top-level help is built from the same table, and the README test
// (test/readme.test.ts) compares the README's command list against it. Nothing here
// runs a command, so tests can import it without starting one.

import { nbdPortDefault } from "@ballast/gateway";
import { benchHelp } from "./bench.ts";
import { chaosHelp } from "./chaos/command.ts";
import {
  cliConnectTimeoutMs,
  coordinatorCountDefault,
  dataDirDefault,
  gatewayCountDefault,
  headNodeCountDefault,
  natsFileStoreBytesDefault,
  sledCountDefault,
} from "./constants.ts";
import { exitCodes } from "./errors.ts";
import { ioHelp } from "./io.ts";
import { nbdHelp } from "./nbd.ts";
import { scrubHelp } from "./scrub.ts";
import { formatSize } from "./sizes.ts";
import { snapshotHelp } from "./snapshot.ts";
import { volumeHelp } from "./volume.ts";

/** Every command, with the one line the top-level help shows for it. */
export const commands = [
  { name: "up", summary: "start a local cluster in the foreground (Ctrl-C stops it)" },
  {
    name: "status",
    summary: "show services and volumes with their health (--json, --check for scripts)",
  },
  {
    name: "volume",
    summary: "create, clone, list, describe, resize, roll back and delete volumes",
  },
  { name: "snapshot", summary: "create, list and delete a volume's point-in-time snapshots" },
  { name: "write", summary: "write a file or stdin into a volume at an offset" },
  { name: "read", summary: "read a range of a volume to a file or stdout" },
  { name: "import", summary: "copy a whole image file into a volume (with progress)" },
  { name: "export", summary: "copy a whole volume into an image file (with progress)" },
  { name: "nbd", summary: "serve volumes over NBD from this terminal" },
  { name: "scrub", summary: "verify every chunk and blob on the sleds and report damage" },
  { name: "bench", summary: "run fio through the NBD gateway and against nbdkit, in one table" },
  {
    name: "chaos",
    summary: "crash, freeze and hang a throwaway cluster under load; check no write is lost",
  },
  { name: "help", summary: "show this help, or a command's: ballast help <command>" },
  { name: "version", summary: "print the version" },
] as const;

export type CommandName = (typeof commands)[number]["name"];

/** What each first argument means: a command's name, or one of the usual aliases. */
export function commandOf(argument: string | undefined): CommandName | undefined {
  switch (argument) {
    case undefined:
    case "--help":
    case "-h":
      return "help";
    case "--version":
      return "version";
    default:
      return commands.find((command) => command.name === argument)?.name;
  }
}

const exitCodeLine = `Exit codes: ${exitCodes.ok} ok, ${exitCodes.failed} failed, ${exitCodes.usage} usage, ${exitCodes.unreachable} cluster unreachable, ${exitCodes.missingTool} missing tool, ${exitCodes.notFullStrength} not at full strength (status --check).`;

export const usage = `ballast: a replicated block store on NATS

Usage: ballast <command> [options]

Commands:
${commands.map((command) => `  ${command.name.padEnd(10)}${command.summary}`).join("\n")}

Every command finds the cluster from --nats URL, else BALLAST_NATS, else the
cluster.json that \`ballast up\` wrote in --data-dir (default ${dataDirDefault}), and its
NATS credentials from BALLAST_NATS_CREDS (a file) or BALLAST_NATS_USER and
BALLAST_NATS_PASSWORD, else from the files \`ballast up\` made next to cluster.json;
BALLAST_NATS_CA names the CA when NATS runs TLS. Volume delete, resize and rollback and
snapshot delete destroy data and need the operator's credentials (operator.json); the
client's (client.json) do everything else. A command waits up to
${cliConnectTimeoutMs / 1000} s for NATS (BALLAST_NATS_CONNECT_TIMEOUT_MS sets it).

${exitCodeLine}
`;

/** Each command's own help; a command absent here has only the top-level help. */
export const commandHelp: Partial<Record<CommandName, string>> = {
  bench: benchHelp,
  scrub: scrubHelp,
  chaos: chaosHelp,
  volume: volumeHelp,
  snapshot: snapshotHelp,
  nbd: nbdHelp,
  write: ioHelp,
  read: ioHelp,
  import: ioHelp,
  export: ioHelp,
  up: `Usage: ballast up [options]

Starts nats-server (unless --nats is given), the coordinator, head nodes and sleds as
separate processes, each with its own data directory and log under --data-dir, and
waits until all are healthy. Ctrl-C or SIGTERM stops every child. Running it again on
the same --data-dir brings back the same cluster. NATS refuses anonymous connections:
each role (coordinator, headnode, sled, gateway, client, operator) has its own user,
with credentials in --data-dir/credentials/ (mode 0600).

Options:
  --data-dir <dir>        where state and logs live (default ${dataDirDefault})
  --nats <url>            use this NATS server instead of starting one (its
                          credentials from BALLAST_NATS_CREDS or BALLAST_NATS_USER/_PASSWORD)
  --nats-cluster <n>      run n routed nats-servers with the control bucket replicated
                          n ways (default 1; 3 survives losing one)
  --nats-tls-cert <file>  TLS for NATS: the servers' certificate (PEM)...
  --nats-tls-key <file>   ...its key...
  --nats-tls-ca <file>    ...and the CA that signed it, which services and clients trust
  --nats-store-max <size> cap on each started nats-server's JetStream store, so that a
                          full store refuses writes at once (default ${formatSize(natsFileStoreBytesDefault)})
  --coordinators <n>      coordinator processes (default ${coordinatorCountDefault})
  --headnodes <n>         head node processes (default ${headNodeCountDefault})
  --sleds <n>             sled processes (default ${sledCountDefault})
  --gateways <n>          NBD gateway processes (default ${gatewayCountDefault})
  --nbd-port <port>       the first gateway's NBD port (default ${nbdPortDefault})
  --otlp-endpoint <url>   export traces by OTLP/HTTP (e.g. http://127.0.0.1:4318)
  --log-level <level>     services' log level (default info)
  --demo                  create a 1 GiB volume named demo with two replicas (unless
                          it exists) and print what to try with it
`,
  status: `Usage: ballast status [options]

Shows every service (kind, id, pid, health, last heartbeat) and every volume, with a
one-line health summary per volume: full strength, degraded (which partitions, which
members are missing, chunks short of copies, sleds in service that are down),
unavailable (no voting member alive) or rebuilding (with progress).

Options:
  --json                  print JSON (shape documented in the README)
  --check                 exit ${exitCodes.notFullStrength} unless every partition of every volume is at full
                          strength (all its replicas voting, none rebuilding or joining)
                          and every chunk has its copies on sleds that are alive, and the
                          control store is the one the sleds' data was made under
  --data-dir <dir>        find the cluster through this directory (default ${dataDirDefault})
  --nats <url>            find the cluster at this NATS URL

${exitCodeLine}
`,
};

/** The help for a topic: the command's own, else the top-level one. */
export function helpFor(topic: string | undefined): string {
  const command = commandOf(topic);
  return (command === undefined ? undefined : commandHelp[command]) ?? usage;
}
