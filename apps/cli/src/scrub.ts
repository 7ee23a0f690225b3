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
//
// Without `--repair` scrub only reads. With it, each damaged chunk is repaired from
// another sled's copy of the same chunk id and owner, and the JSON gains
// `"repairs": [ { "sled", "kind", "id", "owner", "from", "repaired", "error" } ]` and
// `"unrepaired": N`; the exit code is then 0 when every damaged object was repaired.
//
// What scrub can prove, and so what it repairs: it sees only the sleds, not the head
// nodes' chunk tables, so it knows neither which chunks should exist (a missing copy is
// invisible to it) nor the CRC32C a flush record kept. It repairs a copy only when
// another sled holds the same id for the same owner and that copy passes its own block
// checks and its whole CRC32C as that sled recorded it. Missing copies, and copies that
// pass their own checks but differ from the flush record, are repaired by the head
// node's read path (services/headnode/src/sled-client.ts), which has the record.
// Damaged blobs (checkpoints) are reported, not repaired: a checkpoint is replaced by
// the next one its replica publishes.
//
// Repair order: a sled keeps chunks write-once and answers AlreadyExists or
// ChecksumMismatch to a write over a copy it holds, so the new copy is written first and
// the damaged one is dropped (then written again) only when the sled refuses and shows
// room for it. The source is read and proven before anything is changed; a repair that
// fails before the drop leaves the damaged copy in place, and every failure is reported.

import { parseArgs } from "node:util";
import {
  BallastError,
  checkNodeId,
  crc32c,
  ErrorCode,
  type ResultOf,
  SubjectTokenError,
  sledLimits,
  subjects,
} from "@ballast/protocol";
import type { Bus } from "@ballast/runtime";
import { connectCli, findCluster } from "./connect.ts";
import { dataDirDefault, statusDeadlineMs } from "./constants.ts";
import { CliError, exitCodes } from "./errors.ts";
import { formatBytes } from "./sizes.ts";
import { formatDuration } from "./status.ts";
import { table } from "./table.ts";

/**
 * How long one sled may take to scrub: it reads every stored byte. The bus's upper bound
 * on any request deadline; a sled of a few GiB finishes well within it.
 */
const scrubDeadlineMs = 300_000;
/** One chunk read or write during a repair: a chunk is at most 4 MiB. */
const repairRequestDeadlineMs = 10_000;

export const scrubHelp = `Usage: ballast scrub [--sled ID | --all] [options]

Verifies every chunk and blob stored on sleds against their CRC32C checksums, and lists
what is damaged (kind, id, owner, device and byte offset of the first bad block).
Exits 1 when anything is damaged or a sled could not be scrubbed. With --repair,
damaged chunks are rewritten from a sound copy on another sled (the new copy is written
first; the damaged one is dropped only when the sled will not take it otherwise), and
the exit code is 1 only for what could not be repaired.

Options:
  --sled <id>             scrub this sled only
  --all                   scrub every healthy sled (the default)
  --repair                repair damaged chunks from sound copies on other sleds
  --json                  print JSON (shape documented in apps/cli/src/scrub.ts)
  --data-dir <dir>        find the cluster through this directory (default ${dataDirDefault})
  --nats <url>            find the cluster at this NATS URL
`;

type ScrubReport = ResultOf<"sled.scrub.v1">;
type SledOutcome = ScrubReport | { sled: string; error: { code: string; message: string } };

type SledDamage = ScrubReport["damaged"][number];

/** What `--repair` did with one damaged object. */
export interface ScrubRepair {
  sled: string;
  kind: SledDamage["kind"];
  id: string;
  owner?: SledDamage["owner"];
  /** The sled whose copy the new one was made from. */
  from?: string;
  repaired: boolean;
  /** Why not, and whether the damaged copy is still in place. */
  error?: string;
}

export interface ScrubSummary {
  nats: string;
  sleds: SledOutcome[];
  /** Damaged objects over all sleds. */
  damaged: number;
  /** With --repair only: one entry per damaged object. */
  repairs?: ScrubRepair[];
  /** With --repair only: damaged objects not repaired. */
  unrepaired?: number;
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
  const address = await findCluster({
    nats: flags.nats,
    dataDir: flags.dataDir ?? dataDirDefault,
    // Scrubbing talks to every sled's inbox, which the client role may not.
    role: "operator",
  });
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
    if (flags.repair) {
      // Sources may be on any healthy sled, not only the ones scrubbed.
      const sources = flags.sled === undefined ? sleds : await healthySleds(client.bus);
      summary.repairs = await repairDamage(client.bus, outcomes, sources);
      summary.unrepaired = summary.repairs.filter((repair) => !repair.repaired).length;
    }
    process.stdout.write(
      flags.json ? `${JSON.stringify(summary, null, 2)}\n` : formatScrub(summary),
    );
    const remaining = summary.unrepaired ?? summary.damaged;
    const failed = remaining > 0 || outcomes.some((outcome) => "error" in outcome);
    return failed ? exitCodes.failed : exitCodes.ok;
  } finally {
    await client.close();
  }
}

interface ScrubFlags {
  sled: string | undefined;
  all: boolean;
  json: boolean;
  repair: boolean;
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
        repair: { type: "boolean" },
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
      repair: values.repair === true,
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
      subjects.node.build("sled", sled),
      { type: "sled.scrub.v1" },
      { deadlineMs: scrubDeadlineMs },
    );
  } catch (error) {
    if (!(error instanceof BallastError)) throw error;
    return { sled, error: { code: error.code, message: error.message } };
  }
}

/**
 * Repairs each damaged chunk the scrub found from a sound copy on another of `sources`
 * (see the header for what counts as sound and for the order). One at a time: a repair
 * reads and writes a whole chunk, and the scrub has just read every byte.
 */
export async function repairDamage(
  bus: Bus,
  outcomes: readonly SledOutcome[],
  sources: readonly string[],
): Promise<ScrubRepair[]> {
  const damagedOn = new Map<string, Set<string>>();
  for (const outcome of outcomes) {
    if (!("damaged" in outcome)) continue;
    for (const damage of outcome.damaged) {
      const key = `${damage.kind}/${damage.id}`;
      damagedOn.set(key, (damagedOn.get(key) ?? new Set()).add(outcome.sled));
    }
  }
  const repairs: ScrubRepair[] = [];
  for (const outcome of outcomes) {
    if (!("damaged" in outcome)) continue;
    for (const damage of outcome.damaged) {
      const base = {
        sled: outcome.sled,
        kind: damage.kind,
        id: damage.id,
        ...(damage.owner === undefined ? {} : { owner: damage.owner }),
      };
      if (damage.kind !== "chunk" || damage.owner === undefined) {
        repairs.push({
          ...base,
          repaired: false,
          error: "blobs are not repaired by scrub; the replica's next checkpoint replaces it",
        });
        continue;
      }
      const others = sources.filter(
        (sled) => sled !== outcome.sled && !damagedOn.get(`chunk/${damage.id}`)?.has(sled),
      );
      repairs.push({ ...base, ...(await repairChunk(bus, outcome.sled, damage, others)) });
    }
  }
  return repairs;
}

type Owner = NonNullable<SledDamage["owner"]>;

async function repairChunk(
  bus: Bus,
  sled: string,
  damage: SledDamage,
  sources: readonly string[],
): Promise<{ from?: string; repaired: boolean; error?: string }> {
  const owner = damage.owner as Owner;
  const problems: string[] = [];
  let source: { from: string; data: Uint8Array; checksum: number } | undefined;
  for (const from of sources) {
    try {
      source = { from, ...(await soundCopy(bus, from, owner, damage.id)) };
      break;
    } catch (error) {
      if (!(error instanceof BallastError)) throw error;
      if (error.code !== ErrorCode.NotFound) problems.push(`${from}: ${error.message}`);
    }
  }
  if (source === undefined) {
    return {
      repaired: false,
      error: `no other sled holds a sound copy, so the damaged copy is left in place${problems.length > 0 ? ` (${problems.join("; ")})` : ""}`,
    };
  }
  const error = await replaceCopy(bus, sled, owner, damage.id, source.data, source.checksum);
  return error === undefined
    ? { from: source.from, repaired: true }
    : { from: source.from, repaired: false, error };
}

/** A whole copy that passes the sled's block checks and the sled's CRC32C of the whole. */
async function soundCopy(
  bus: Bus,
  sled: string,
  owner: Owner,
  chunkId: string,
): Promise<{ data: Uint8Array; checksum: number }> {
  const subject = subjects.node.build("sled", sled);
  const stat = await bus.request(subject, { type: "sled.chunk.stat.v1", owner, chunkId });
  const parts: Uint8Array[] = [];
  for (let offset = 0; offset < stat.bytes; offset += sledLimits.readBytesMax) {
    const length = Math.min(sledLimits.readBytesMax, stat.bytes - offset);
    const { data } = await bus.request(
      subject,
      { type: "sled.chunk.read.v1", owner, chunkId, offset, length },
      { deadlineMs: repairRequestDeadlineMs },
    );
    parts.push(data); // Buffer.concat below copies it out of the message buffer
  }
  const data = Buffer.concat(parts);
  if (crc32c(data) !== stat.checksum) {
    throw new BallastError(
      ErrorCode.ChecksumMismatch,
      `its blocks pass but the whole does not match the CRC32C the sled recorded`,
    );
  }
  return { data, checksum: stat.checksum };
}

/** Puts the sound copy on `sled`; returns why it could not, or undefined. */
async function replaceCopy(
  bus: Bus,
  sled: string,
  owner: Owner,
  chunkId: string,
  data: Uint8Array,
  checksum: number,
): Promise<string | undefined> {
  const subject = subjects.node.build("sled", sled);
  const write = async () => {
    const written = await bus.request(
      subject,
      { type: "sled.chunk.write.v1", owner, chunkId, data },
      { deadlineMs: repairRequestDeadlineMs },
    );
    if (written.checksum !== checksum) {
      throw new BallastError(
        ErrorCode.ChecksumMismatch,
        `the sled stored CRC32C ${written.checksum}, not ${checksum}`,
      );
    }
  };
  try {
    await write();
    return undefined;
  } catch (error) {
    if (!(error instanceof BallastError)) throw error;
    const refused =
      error.code === ErrorCode.AlreadyExists || error.code === ErrorCode.ChecksumMismatch;
    if (!refused)
      return `writing the copy failed (the damaged copy is untouched): ${error.message}`;
  }
  try {
    const stat = await bus.request(subject, { type: "sled.stat.v1" });
    const room = stat.devices.some(
      (device) => !device.failed && device.largestFreeBytes >= data.byteLength,
    );
    if (!room) return "the sled has no room for a new copy, so the damaged copy is left in place";
    await bus.request(subject, { type: "sled.chunk.delete.v1", owner, chunkId });
  } catch (error) {
    if (!(error instanceof BallastError)) throw error;
    return `dropping the damaged copy failed (it may still be in place): ${error.message}`;
  }
  try {
    await write();
    return undefined;
  } catch (error) {
    if (!(error instanceof BallastError)) throw error;
    return `the damaged copy was dropped but writing the new one failed, so the copy is missing until the head node's read path repairs it: ${error.message}`;
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
  const repairs = (summary.repairs ?? []).map(
    (repair) =>
      `  ${repair.sled}  ${repair.kind} ${repair.id}: ${repair.repaired ? `repaired from ${repair.from}` : `not repaired: ${repair.error}`}`,
  );
  const lines = [
    ...table([header, ...rows]),
    "",
    summary.damaged === 0 ? "No damage found." : `DAMAGED (${summary.damaged})`,
    ...damaged,
    ...(summary.repairs === undefined || summary.repairs.length === 0
      ? []
      : [
          "",
          `REPAIRED (${summary.repairs.length - (summary.unrepaired ?? 0)} of ${summary.repairs.length})`,
          ...repairs,
        ]),
  ];
  return `${lines.join("\n")}\n`;
}
