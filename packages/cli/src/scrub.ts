// `ballast scrub`: asks sleds to verify every stored chunk and blob against its
// checksums, and reports what is damaged. With `--sled ID` one sled is scrubbed; with
// `--all` (the default) every sled the coordinator reports healthy, in parallel. Each
// sled reads its objects one at a time, so a scrub slows a sled's other work but does
// not stop it. `--json` prints a stable shape for scripts:
//
//   { "nats": "nats://127.0.0.1:4222",
//     "sleds": [ { "sled": "sled-1", "chunksChecked": 12, "blobsChecked": 3,
//                  "bytesChecked": 50331648, "durationMs": 310,
//                  "damaged": [ { "kind": "chunk", "id": "c-6",
//                                 "owner": { "volume": "vol-1", "partition": 0 },
//                                 "device": 0, "offset": 1318912, "badBlocks": 1,
//                                 "reason": "1 of 8 blocks fail their checksum" } ],
//                  "damagedTruncated": false },
//                { "sled": "sled-2", "error": { "code": "Timeout", "message": "…" } } ],
//     "damaged": 1 }
//
// Exit codes: 0 when every sled answered and nothing is damaged, 1 when something is
// damaged or a sled could not be scrubbed, 2 for a usage mistake, 3 when the cluster
// cannot be reached.

import { parseArgs } from "node:util";
import {
  BallastError,
  checkNodeId,
  ErrorCode,
  type ResultOf,
  SubjectTokenError,
  subjects,
} from "@ballast/protocol";
import type { Bus } from "@ballast/runtime";
import { connectCli, findCluster } from "./connect.ts";
import { dataDirDefault, statusDeadlineMs } from "./constants.ts";
import { CliError, exitCodes } from "./errors.ts";
import { formatDuration } from "./status.ts";
import { table } from "./table.ts";

/**
 * How long one sled may take to scrub: it reads every stored byte. The bus's upper bound
 * on any request deadline; a sled of a few GiB finishes well within it.
 */
const scrubDeadlineMs = 300_000;

export const scrubHelp = `Usage: ballast scrub [--sled ID | --all] [options]

Verifies every chunk and blob stored on sleds against their CRC32C checksums, and lists
what is damaged (kind, id, owner, device and byte offset of the first bad block).
Exits 1 when anything is damaged or a sled could not be scrubbed.

Options:
  --sled <id>             scrub this sled only
  --all                   scrub every healthy sled (the default)
  --json                  print JSON (shape documented in packages/cli/src/scrub.ts)
  --data-dir <dir>        find the cluster through this directory (default ${dataDirDefault})
  --nats <url>            find the cluster at this NATS URL
`;

type ScrubReport = ResultOf<"sled.scrub.v1">;
type SledOutcome = ScrubReport | { sled: string; error: { code: string; message: string } };

export interface ScrubSummary {
  nats: string;
  sleds: SledOutcome[];
  /** Damaged objects over all sleds. */
  damaged: number;
}

export async function scrubCommand(argv: string[]): Promise<number> {
  const flags = parseFlags(argv);
  if (flags.help) {
    process.stdout.write(scrubHelp);
    return exitCodes.ok;
  }
  if (flags.sled !== undefined && flags.all) {
    throw new CliError(
      exitCodes.usage,
      "give --sled ID or --all, not both (see ballast help scrub)",
    );
  }
  if (flags.sled !== undefined) {
    try {
      checkNodeId(flags.sled);
    } catch (error) {
      if (error instanceof SubjectTokenError) {
        throw new CliError(exitCodes.usage, `--sled: ${error.message}`);
      }
      throw error;
    }
  }
  const address = await findCluster({ nats: flags.nats, dataDir: flags.dataDir ?? dataDirDefault });
  const client = await connectCli(address);
  try {
    const sleds = flags.sled !== undefined ? [flags.sled] : await healthySleds(client.bus);
    const outcomes = await Promise.all(sleds.map((sled) => scrubSled(client.bus, sled)));
    const summary: ScrubSummary = {
      nats: address.natsUrl,
      sleds: outcomes,
      damaged: outcomes.reduce(
        (total, outcome) => total + ("damaged" in outcome ? outcome.damaged.length : 0),
        0,
      ),
    };
    process.stdout.write(
      flags.json ? `${JSON.stringify(summary, null, 2)}\n` : formatScrub(summary),
    );
    const failed = summary.damaged > 0 || outcomes.some((outcome) => "error" in outcome);
    return failed ? exitCodes.failed : exitCodes.ok;
  } finally {
    await client.close();
  }
}

interface ScrubFlags {
  sled: string | undefined;
  all: boolean;
  json: boolean;
  help: boolean;
  dataDir: string | undefined;
  nats: string | undefined;
}

function parseFlags(argv: string[]): ScrubFlags {
  try {
    const { values } = parseArgs({
      args: argv,
      options: {
        sled: { type: "string" },
        all: { type: "boolean" },
        json: { type: "boolean" },
        help: { type: "boolean" },
        "data-dir": { type: "string" },
        nats: { type: "string" },
      },
      strict: true,
      allowPositionals: false,
    });
    return {
      sled: values.sled,
      all: values.all === true,
      json: values.json === true,
      help: values.help === true,
      dataDir: values["data-dir"],
      nats: values.nats,
    };
  } catch (error) {
    throw new CliError(exitCodes.usage, `${(error as Error).message} (see ballast help scrub)`);
  }
}

/** The sleds the coordinator reports healthy, sorted by id. */
async function healthySleds(bus: Bus): Promise<string[]> {
  let status: ResultOf<"cluster.status.v1">;
  try {
    status = await bus.request(
      subjects.coordinator.build(),
      { type: "cluster.status.v1" },
      { deadlineMs: statusDeadlineMs },
    );
  } catch (error) {
    if (
      error instanceof BallastError &&
      (error.code === ErrorCode.Unavailable || error.code === ErrorCode.Timeout)
    ) {
      throw new CliError(
        exitCodes.unreachable,
        `no coordinator answered, so the sleds are unknown (name one with --sled): ${error.message}`,
        { cause: error },
      );
    }
    throw error;
  }
  const sleds = status.services
    .filter((service) => service.kind === "sled" && service.healthy)
    .map((service) => service.id)
    .sort();
  if (sleds.length === 0) throw new CliError(exitCodes.failed, "the cluster has no healthy sled");
  return sleds;
}

async function scrubSled(bus: Bus, sled: string): Promise<SledOutcome> {
  try {
    return await bus.request(
      subjects.node.build(sled),
      { type: "sled.scrub.v1" },
      { deadlineMs: scrubDeadlineMs },
    );
  } catch (error) {
    if (!(error instanceof BallastError)) throw error;
    return { sled, error: { code: error.code, message: error.message } };
  }
}

export function formatScrub(summary: ScrubSummary): string {
  const header = ["SLED", "CHUNKS", "BLOBS", "BYTES", "TIME", "DAMAGED"];
  const rows = summary.sleds.map((outcome) =>
    "error" in outcome
      ? [
          outcome.sled,
          "-",
          "-",
          "-",
          "-",
          `scrub failed: ${outcome.error.code}: ${outcome.error.message}`,
        ]
      : [
          outcome.sled,
          String(outcome.chunksChecked),
          String(outcome.blobsChecked),
          formatBytes(outcome.bytesChecked),
          formatDuration(outcome.durationMs),
          outcome.damagedTruncated ? `${outcome.damaged.length}+` : String(outcome.damaged.length),
        ],
  );
  const damaged = summary.sleds.flatMap((outcome) =>
    "damaged" in outcome
      ? outcome.damaged.map(
          (damage) =>
            `  ${outcome.sled}  ${damage.kind} ${damage.id}${damage.owner === undefined ? "" : ` (${damage.owner.volume}/${damage.owner.partition})`}  device ${damage.device} offset ${damage.offset}: ${damage.reason}`,
        )
      : [],
  );
  const lines = [
    ...table([header, ...rows]),
    "",
    summary.damaged === 0 ? "No damage found." : `DAMAGED (${summary.damaged})`,
    ...damaged,
  ];
  return `${lines.join("\n")}\n`;
}

function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[unit]}`;
}
