// `ballast snapshot create|list|delete`: a volume's snapshots, through the leading
// coordinator. A snapshot is a crash-consistent point in time of the whole volume,
// read-only, served over NBD as the export VOLUME@NAME; it costs metadata, not a copy of
// the data. `--json` prints the coordinator's answers as they are.

import { type ParseArgsConfig, parseArgs } from "node:util";
import { coordinatorSubjectOf, type Message, type ResultOf, subjects } from "@ballast/protocol";
import { adminErrorOf, connectCli, findCluster, findClusterAsAdmin } from "./connect.ts";
import { dataDirDefault } from "./constants.ts";
import { CliError, exitCodes } from "./errors.ts";
import { deleteSnapshot } from "./retried-delete.ts";
import { formatBytes } from "./sizes.ts";
import { table } from "./table.ts";

export const snapshotHelp = `Usage: ballast snapshot <create|list|delete> [options]

  ballast snapshot create VOLUME NAME [--json]
  ballast snapshot list VOLUME [--json]
  ballast snapshot delete VOLUME NAME

A snapshot holds every write acknowledged before create began, across all partitions
of the volume. Read it over NBD as the read-only export VOLUME@NAME.
Names are 1-63 of a-z, 0-9 and '-'.
A delete whose answer is lost is retried; a retry that finds the snapshot gone reports
it deleted (an earlier attempt deleted it). It names the snapshot's id, so a retry never
deletes another taken under the name since. Delete takes the operator's credentials
(operator.json next to cluster.json, or BALLAST_NATS_CREDS naming it); create and list
the client's.
Common options: --data-dir <dir> (default ${dataDirDefault}), --nats <url>.
`;

type SnapshotState = ResultOf<"snapshot.create.v1">;

const options: ParseArgsConfig["options"] = {
  "data-dir": { type: "string" },
  nats: { type: "string" },
  json: { type: "boolean" },
};

/**
 * How long the CLI waits for the coordinator: a create may retry inside its own deadline
 * (10 s) after a failover, so this is longer.
 */
const snapshotRequestDeadlineMs = 30_000;

export async function snapshotCommand(argv: string[]): Promise<number> {
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: argv, options, strict: true, allowPositionals: true });
  } catch (error) {
    throw new CliError(exitCodes.usage, `${(error as Error).message} (see ballast help snapshot)`);
  }
  const flags = parsed.values as Record<string, string | boolean | undefined>;
  const [action, volume, name, ...extra] = parsed.positionals;
  if (extra.length > 0)
    throw new CliError(exitCodes.usage, `unexpected arguments: ${extra.join(" ")}`);
  if (action !== "create" && action !== "list" && action !== "delete") {
    throw new CliError(
      exitCodes.usage,
      `unknown snapshot action ${JSON.stringify(action ?? "")} (see ballast help snapshot)`,
    );
  }
  if (volume === undefined || (action !== "list" && name === undefined)) {
    throw new CliError(
      exitCodes.usage,
      `ballast snapshot ${action} needs ${action === "list" ? "a volume" : "a volume and a snapshot name"} (see ballast help snapshot)`,
    );
  }
  if (action === "list" && name !== undefined) {
    throw new CliError(exitCodes.usage, `unexpected arguments: ${name}`);
  }
  const dataDir = (flags["data-dir"] as string | undefined) ?? dataDirDefault;
  const nats = flags.nats as string | undefined;
  // A delete drops the snapshot's data: it takes the operator's credentials
  // (permissions.ts `adminRequestTypes`), create and list the client's.
  const what = `snapshot ${action}`;
  const address =
    action === "delete"
      ? await findClusterAsAdmin(what, { nats, dataDir })
      : await findCluster({ nats, dataDir });
  const client = await connectCli(address);
  const coordinator = subjects.coordinator.build();
  const deadline = { deadlineMs: snapshotRequestDeadlineMs };
  try {
    switch (action) {
      case "create": {
        const startedMs = performance.now();
        const state = await client.bus.request(
          coordinator,
          { type: "snapshot.create.v1", volume, name: name! },
          deadline,
        );
        const tookMs = Math.round(performance.now() - startedMs);
        process.stdout.write(
          flags.json
            ? `${JSON.stringify(state, null, 2)}\n`
            : `created snapshot ${volume}@${state.name} (id ${state.id}) in ${tookMs} ms\n`,
        );
        return exitCodes.ok;
      }
      case "list": {
        const { snapshots } = await client.bus.request(
          coordinator,
          { type: "snapshot.list.v1", volume },
          deadline,
        );
        if (flags.json) process.stdout.write(`${JSON.stringify(snapshots, null, 2)}\n`);
        else if (snapshots.length === 0)
          process.stdout.write(`volume ${volume} has no snapshots\n`);
        else process.stdout.write(`${listTable(snapshots).join("\n")}\n`);
        return exitCodes.ok;
      }
      case "delete": {
        // Names the snapshot id it lists first, and is retried while its outcome is
        // unknown; a retry's NotFound means an earlier attempt deleted that snapshot
        // (retried-delete.ts).
        const outcome = await deleteSnapshot(
          (message) =>
            client.bus.request(coordinatorSubjectOf((message as Message).type), message, deadline),
          volume,
          name!,
        );
        process.stdout.write(
          `deleted snapshot ${volume}@${name}${outcome.kind === "goneBefore" ? " (an earlier attempt whose answer was lost deleted it)" : ""}\n`,
        );
        return exitCodes.ok;
      }
      default: {
        const unreachable: never = action;
        throw new Error(`unknown action ${unreachable}`);
      }
    }
  } catch (error) {
    throw await adminErrorOf(error, what, address, dataDir);
  } finally {
    await client.close();
  }
}

export function listTable(snapshots: readonly SnapshotState[]): string[] {
  return table([
    ["NAME", "EXPORT", "CREATED", "ID", "UNIQUE", "CLONES"],
    ...snapshots.map((snapshot) => [
      snapshot.name,
      `${snapshot.volume}@${snapshot.name}`,
      new Date(snapshot.createdAtMs).toISOString(),
      snapshot.id,
      uniqueText(snapshot),
      clonesText(snapshot),
    ]),
  ]);
}

/** The clones the answer names, and how many more it has when it names only the first. */
export function clonesText(snapshot: SnapshotState): string {
  const clones = snapshot.clones ?? [];
  if (clones.length === 0) return "-";
  const more = (snapshot.cloneCount ?? clones.length) - clones.length;
  return `${clones.join(", ")}${more > 0 ? ` and ${more} more` : ""}`;
}

/**
 * The bytes only this snapshot holds (what deleting it would free, per copy), with how
 * many of its partitions have reported when not all have; "-" before any has.
 */
export function uniqueText(snapshot: SnapshotState): string {
  if (snapshot.uniqueBytes === undefined) return "-";
  // The answer names the first partitions only; older coordinators named them all.
  const count = snapshot.partitionCount ?? snapshot.partitions.length;
  const reported = snapshot.uniqueBytesPartitions ?? count;
  const partial = reported < count ? ` (${reported} of ${count} partitions)` : "";
  return `${formatBytes(snapshot.uniqueBytes)}${partial}`;
}
