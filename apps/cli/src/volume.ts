// `ballast volume create|clone|list|describe|resize|rollback|delete`: the volume catalogue,
// through the leading coordinator. `--json` prints the coordinator's VolumeState objects as they are.
// Describe also shows what the volume's incarnation stores on sleds (every copy of every
// chunk), or why it could not be counted.

import { type ParseArgsConfig, parseArgs } from "node:util";
import { describeVolumeWhole } from "@ballast/client";
import {
  adminRequestTypes,
  coordinatorSubjectOf,
  limits,
  type Message,
  type ResultOf,
  subjects,
} from "@ballast/protocol";
import { adminErrorOf, connectCli, findCluster, findClusterAsAdmin } from "./connect.ts";
import { dataDirDefault } from "./constants.ts";
import { CliError, exitCodes } from "./errors.ts";
import { deleteRetryPolicyDefault, deleteVolume } from "./retried-delete.ts";
import { formatBytes, formatSize, parseSize, SizeError } from "./sizes.ts";
import { uniqueText } from "./snapshot.ts";
import { wholeNumber } from "./whole-number.ts";

export const volumeHelp = `Usage: ballast volume <create|clone|list|describe|resize|rollback|delete> [options]

  ballast volume create NAME --size 10GiB [--replicas 2|3] [--partition-size 1GiB]
  ballast volume clone VOLUME@SNAPSHOT NAME [--replicas 2|3]
  ballast volume list [--json]
  ballast volume describe NAME [--json]
  ballast volume resize NAME --size 20GiB [--allow-shrink [--force]]
  ballast volume rollback NAME SNAPSHOT [--force]
  ballast volume delete NAME [--force]

Resize grows a volume online; NBD clients see the new size on their next connection.
Shrinking discards the data past the new end, so it is refused without --allow-shrink.
A shrink is refused too while an NBD client is connected to the volume (a connection
keeps its size, and would go on writing past the new end): disconnect it first.
--force skips that check, for when nothing writes past the new end.

Rollback makes the volume's data that of its snapshot SNAPSHOT again (the snapshot
stays; what was written since is discarded). It is refused while an NBD client is
connected to the volume; --force skips that check (for client-library users who know
nothing writes to it). The volume must be at the snapshot's size: resize it back first.
A rollback that fails part-way says so; rolling back to the same snapshot again is
safe. The snapshot cannot be deleted while a rollback to it runs.

Clone makes NAME a writable volume that reads as snapshot SNAPSHOT of VOLUME until
written, with no copy of data; the two are independent from then on. The snapshot (and
VOLUME) cannot be deleted while clones of it exist: delete the clones first.

Delete is refused while an NBD client is connected to the volume (or a gateway does not
say); disconnect it first, or pass --force to delete it from under its clients.
Delete names the volume's incarnation (its id) and is retried when its answer is lost;
a retry that finds it gone reports it deleted, and never deletes a volume created again
under the name since.

Resize, rollback and delete can destroy data: they take the operator's credentials
(operator.json next to cluster.json, or BALLAST_NATS_CREDS naming it), the rest the
client's.

Names are 1-63 of a-z, 0-9 and '-'. Sizes take KiB, MiB, GiB or TiB.
Common options: --data-dir <dir> (default ${dataDirDefault}), --nats <url>.
`;

export type VolumeState = ResultOf<"volume.describe.v1">;

const options: ParseArgsConfig["options"] = {
  "data-dir": { type: "string" },
  nats: { type: "string" },
  json: { type: "boolean" },
  size: { type: "string" },
  replicas: { type: "string" },
  "partition-size": { type: "string" },
  "allow-shrink": { type: "boolean" },
  force: { type: "boolean" },
};

export async function volumeCommand(argv: string[]): Promise<number> {
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: argv, options, strict: true, allowPositionals: true });
  } catch (error) {
    throw new CliError(exitCodes.usage, `${(error as Error).message} (see ballast help volume)`);
  }
  const flags = parsed.values as Record<string, string | boolean | undefined>;
  const [action, name, ...rest] = parsed.positionals;
  // Rollback names the snapshot after the volume, clone the new volume after the
  // snapshot; no other action takes a second name.
  const second = action === "rollback" || action === "clone" ? rest[0] : undefined;
  const snapshot = action === "rollback" ? second : undefined;
  const extra = action === "rollback" || action === "clone" ? rest.slice(1) : rest;
  if (extra.length > 0)
    throw new CliError(exitCodes.usage, `unexpected arguments: ${extra.join(" ")}`);
  const needsName = ["create", "clone", "describe", "resize", "rollback", "delete"].includes(
    action ?? "",
  );
  if (needsName && name === undefined) {
    throw new CliError(
      exitCodes.usage,
      `ballast volume ${action} needs a volume name (see ballast help volume)`,
    );
  }
  if (action === "rollback" && snapshot === undefined) {
    throw new CliError(
      exitCodes.usage,
      "ballast volume rollback needs a volume and a snapshot name (see ballast help volume)",
    );
  }
  const source = action === "clone" ? parseCloneSource(name!, second) : undefined;
  if (
    !["create", "clone", "list", "describe", "resize", "rollback", "delete"].includes(action ?? "")
  ) {
    throw new CliError(
      exitCodes.usage,
      `unknown volume action ${JSON.stringify(action ?? "")} (see ballast help volume)`,
    );
  }
  let request: Parameters<typeof send>[1];
  try {
    request =
      action === "create"
        ? {
            type: "volume.create.v1",
            name: name!,
            sizeBytes: parseSize(requireFlag(flags.size, "--size"), "--size"),
            ...replicaCountOf(flags.replicas),
            ...(flags["partition-size"] === undefined
              ? {}
              : { partitionBytes: parseSize(String(flags["partition-size"]), "--partition-size") }),
          }
        : source !== undefined
          ? {
              type: "volume.clone.v1",
              ...source,
              ...replicaCountOf(flags.replicas),
            }
          : action === "list"
            ? { type: "volume.list.v1" }
            : action === "describe"
              ? { type: "volume.describe.v1", name: name!, stored: true }
              : action === "resize"
                ? {
                    type: "volume.resize.v1",
                    name: name!,
                    sizeBytes: parseSize(requireFlag(flags.size, "--size"), "--size"),
                    ...(flags["allow-shrink"] === true ? { allowShrink: true } : {}),
                    ...(flags.force === true ? { force: true } : {}),
                  }
                : action === "rollback"
                  ? {
                      type: "volume.rollback.v1",
                      volume: name!,
                      snapshot: snapshot!,
                      ...(flags.force === true ? { force: true } : {}),
                    }
                  : {
                      type: "volume.delete.v1",
                      name: name!,
                      ...(flags.force === true ? { force: true } : {}),
                    };
  } catch (error) {
    if (error instanceof SizeError) throw new CliError(exitCodes.usage, error.message);
    throw error;
  }
  const dataDir = (flags["data-dir"] as string | undefined) ?? dataDirDefault;
  const nats = flags.nats as string | undefined;
  // Delete, resize and rollback can destroy data: they take the operator's credentials
  // (permissions.ts `adminRequestTypes`), the rest the client's.
  const admin = adminRequestTypes.has(request.type);
  const what = `volume ${action}`;
  const address = admin
    ? await findClusterAsAdmin(what, { nats, dataDir })
    : await findCluster({ nats, dataDir });
  const client = await connectCli(address);
  try {
    // A delete names the incarnation it read first and is retried while its outcome is
    // unknown; a retry's NotFound means an earlier attempt deleted that incarnation
    // (retried-delete.ts), and answers as that attempt would have.
    const result =
      request.type === "volume.delete.v1"
        ? await deleteVolume(
            (message) =>
              client.bus.request(coordinatorSubjectOf((message as Message).type), message, {
                deadlineMs: answerDeadlineOf(message),
              }),
            request.name,
            deleteRetryPolicyDefault,
            request.force === true,
          ).then((outcome) =>
            outcome.kind === "deleted" ? outcome.answer : { name: request.name, deleted: true },
          )
        : request.type === "volume.describe.v1"
          ? // Every page of a large volume's partitions.
            await describeVolumeWhole(client.bus, request.name, {
              deadlineMs: answerDeadlineOf(request),
              stored: request.stored,
            })
          : await send(client.bus, request);
    if (flags.json) {
      process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    } else if ("volumes" in result) {
      process.stdout.write(
        result.volumes.length === 0 ? "no volumes\n" : result.volumes.map(summary).join(""),
      );
    } else if ("snapshot" in result) {
      process.stdout.write(rolledBackLine(result));
    } else if ("deleted" in result) {
      process.stdout.write(`deleted volume ${result.name} from the catalogue\n`);
    } else if (action === "resize") {
      process.stdout.write(`resized volume ${result.name}\n${summary(result)}`);
    } else if (action === "clone") {
      process.stdout.write(`cloned volume ${result.name}\n${summary(result)}${parentLine(result)}`);
    } else {
      const space = await spaceLines(client.bus, result as VolumeState);
      process.stdout.write(
        `${summary(result)}${parentLine(result)}${storedLine(result)}${space}${result.partitions.map(partitionLine).join("")}`,
      );
    }
    return exitCodes.ok;
  } catch (error) {
    throw await adminErrorOf(error, what, address, dataDir);
  } finally {
    await client.close();
  }
}

/**
 * `--replicas`: nothing when absent (the coordinator's default), else a replica count the
 * protocol allows. Anything else is a usage error here, before the cluster is looked for,
 * not a request the coordinator refuses (exit 1) or that cannot be sent (exit 3).
 */
export function replicaCountOf(value: string | boolean | undefined): { replicaCount?: number } {
  if (value === undefined) return {};
  const { replicaCountMin, replicaCountMax } = limits;
  return {
    replicaCount: wholeNumber(
      value,
      "--replicas",
      replicaCountMin,
      replicaCountMin,
      replicaCountMax,
    ),
  };
}

/** `VOLUME@SNAPSHOT NAME` of a clone, or a usage error that says what is missing. */
export function parseCloneSource(
  source: string,
  name: string | undefined,
): { volume: string; snapshot: string; name: string } {
  const at = source.indexOf("@");
  if (at <= 0 || at === source.length - 1 || name === undefined) {
    throw new CliError(
      exitCodes.usage,
      "ballast volume clone needs VOLUME@SNAPSHOT and a name for the clone (see ballast help volume)",
    );
  }
  return { volume: source.slice(0, at), snapshot: source.slice(at + 1), name };
}

/** A clone's parent snapshot, on its own line; nothing for a volume that is no clone. */
/**
 * What the volume, its snapshots and its clones hold on sleds (per copy), and so what
 * deleting each would free: the volume's own chunk bytes; each snapshot's bytes no other
 * tree refers to; each clone's own chunk bytes (a clone shares no chunk with its parent:
 * its reads fall through instead). From what the primaries last reported to the leader;
 * best effort: nothing is printed for what the leader does not know.
 */
async function spaceLines(
  bus: Awaited<ReturnType<typeof connectCli>>["bus"],
  volume: VolumeState,
): Promise<string> {
  const [listed, status] = await Promise.all([
    bus
      .request(
        subjects.coordinator.build(),
        { type: "snapshot.list.v1", volume: volume.name },
        { deadlineMs: answerDeadlineMs },
      )
      .catch(() => undefined),
    bus
      .request(
        subjects.coordinator.build(),
        { type: "cluster.status.v1" },
        { deadlineMs: answerDeadlineMs },
      )
      .catch(() => undefined),
  ]);
  const chunkBytesOf = (name: string): number | undefined => {
    const entry = status?.volumes?.find((each) => each.name === name) as
      | { reported?: { chunkBytes?: number } }
      | undefined;
    return entry?.reported?.chunkBytes;
  };
  const lines: string[] = [];
  const own = chunkBytesOf(volume.name);
  if (own !== undefined) lines.push(`  on sleds: ${formatBytes(own)} of chunks (per copy)\n`);
  for (const snapshot of listed?.snapshots ?? []) {
    const clones = (snapshot.clones ?? []).map((clone) => {
      const bytes = chunkBytesOf(clone);
      return bytes === undefined ? clone : `${clone} (${formatBytes(bytes)} of its own)`;
    });
    // The answer names the first clones only, and how many there are in all.
    const more = (snapshot.cloneCount ?? clones.length) - clones.length;
    const named = `${clones.join(", ")}${more > 0 ? ` and ${more} more` : ""}`;
    lines.push(
      `  snapshot ${snapshot.name}: ${uniqueText(snapshot)} only it holds (deleting it frees that)${clones.length === 0 ? "" : `; clones: ${named}`}\n`,
    );
  }
  return lines.join("");
}

export function parentLine(volume: VolumeState): string {
  const parent = volume.parent;
  if (parent === undefined) return "";
  return `  clone of ${parent.volume}@${parent.snapshot}, reads through it below ${formatSize(parent.overlap)}\n`;
}

function requireFlag(value: string | boolean | undefined, flag: string): string {
  if (typeof value !== "string") throw new CliError(exitCodes.usage, `${flag} is required`);
  return value;
}

/**
 * How long the CLI waits for the coordinator's answer: a resize may spend up to 20 s
 * trimming a partition that fails over meanwhile (the coordinator's
 * resizeTrimDeadlineMs), so it waits longer than the other requests.
 */
const answerDeadlineMs = 15_000;
const resizeAnswerDeadlineMs = 30_000;
/**
 * What a create waits longer per partition: the coordinator writes each partition's
 * record (a few KV requests, a bounded number at once) before it answers, so a volume
 * of 16,384 partitions took 8-15 s on a loaded machine, and the 65,536 the limits allow
 * would outlast answerDeadlineMs; the create then went on to succeed after the CLI had
 * said it failed.
 */
export const createAnswerMsPerPartition = 2;

/**
 * How long the CLI waits for the answer to `request`: a create longer the more
 * partitions it makes (those of the partition size it names, else the default one).
 */
export function answerDeadlineOf(request: {
  type: string;
  sizeBytes?: number;
  partitionBytes?: number;
}): number {
  if (request.type === "volume.resize.v1") return resizeAnswerDeadlineMs;
  if (request.type !== "volume.create.v1" || request.sizeBytes === undefined) {
    return answerDeadlineMs;
  }
  const partitionBytes = request.partitionBytes ?? limits.partitionBytesDefault;
  const partitions = Math.min(
    Math.ceil(request.sizeBytes / Math.max(partitionBytes, limits.partitionBytesMin)),
    limits.partitionsPerVolumeMax,
  );
  return answerDeadlineMs + partitions * createAnswerMsPerPartition;
}

// biome-ignore lint/suspicious/noExplicitAny: one sender for the seven request shapes
async function send(bus: Awaited<ReturnType<typeof connectCli>>["bus"], request: any) {
  const deadlineMs = answerDeadlineOf(request);
  return (await bus.request(coordinatorSubjectOf(request.type), request, { deadlineMs })) as
    | VolumeState
    | ResultOf<"volume.list.v1">
    | ResultOf<"volume.delete.v1">
    | ResultOf<"volume.rollback.v1">;
}

/**
 * A rollback's outcome: every partition of the volume rolled back (the answer names the
 * first partitions' ops and the count of all; older coordinators named them all).
 */
export function rolledBackLine(result: ResultOf<"volume.rollback.v1">): string {
  const count = result.partitionCount ?? result.partitions.length;
  return `rolled volume ${result.volume} back to snapshot ${result.snapshot} (${count} partitions)\n`;
}

/** One line per volume: a described one (its partitions) or a listed one (their count). */
export function summary(
  volume: VolumeState | ResultOf<"volume.list.v1">["volumes"][number],
): string {
  // The incarnation last: a volume deleted and created again keeps its name, not its id.
  const id = volume.id === undefined ? "" : `  id ${volume.id}`;
  // An answer that lists one page of a large volume counts all of them.
  const partitions =
    volume.partitionCount ?? ("partitions" in volume ? volume.partitions.length : 0);
  // A shrink begun and not finished: its tail is refused already, inside the size shown.
  const shrinking =
    volume.shrinkingTo === undefined
      ? ""
      : `  SHRINKING to ${formatSize(volume.shrinkingTo)}: begun, not finished (the coordinator finishes it; I/O past ${formatSize(volume.shrinkingTo)} is refused)\n`;
  return `${volume.name}  ${formatSize(volume.sizeBytes)}  ${volume.replicaCount} replicas  ${partitions} partitions of ${formatSize(volume.partitionBytes)}${id}\n${shrinking}`;
}

/**
 * What the volume stores on sleds, on its own line; nothing when it was not asked for
 * (volume list). Each sled's share is shown, and a sled that could not be counted says why.
 */
export function storedLine(volume: VolumeState): string {
  const stored = volume.stored;
  if (stored === undefined) return "";
  const shares = stored.sleds
    .map((sled) =>
      sled.error === undefined
        ? `${sled.sled} ${formatBytes(sled.bytes ?? 0)} in ${sled.chunks ?? 0}`
        : `${sled.sled} not counted: ${sled.error}`,
    )
    .join(", ");
  const total =
    stored.bytes === undefined
      ? `stored on sleds: unknown (${stored.reason ?? "not every sled was counted"})`
      : `stored on sleds ${formatBytes(stored.bytes)} in ${stored.chunks ?? 0} chunks (all copies)`;
  return `  ${total}\n${shares === "" ? "" : `    ${shares}\n`}`;
}

export function partitionLine(partition: VolumeState["partitions"][number]): string {
  // Joiners count for commit but cannot be promoted until the next epoch makes them
  // secondaries: shown apart from both.
  const joining = partition.joining ?? [];
  const joiners = joining.length === 0 ? "" : `  joining ${joining.join(", ")}`;
  const learners =
    partition.learners.length === 0
      ? ""
      : `  rebuilding ${partition.learners
          .map((node) => {
            const progress = partition.rebuilds.find((entry) => entry.node === node);
            return progress === undefined
              ? node
              : `${node} (op ${progress.matchOpNum} of ${progress.targetOpNum})`;
          })
          .join(", ")}`;
  const checkpoints = partition.checkpoints
    .map(
      (checkpoint) =>
        `${checkpoint.node} op ${checkpoint.opNum} (${Math.round(checkpoint.ageMs / 1000)}s old)`,
    )
    .join(", ");
  // Replicas that reported themselves failed, and the leader's judgement that nothing
  // can serve: both say more than the membership, whose nodes may all be alive.
  const failed = partition.failed ?? [];
  const failures = failed.length === 0 ? "" : `  FAILED ${failed.join(", ")}`;
  const unavailable =
    partition.unavailable === true
      ? "    UNAVAILABLE: no member can serve it (the coordinator's log says why)\n"
      : "";
  // Its end inside the volume, when short of the partition's own.
  const served =
    partition.servedBytes === undefined
      ? ""
      : `  serves ${formatSize(partition.servedBytes)} of ${formatSize(partition.partitionBytes)}`;
  return `  partition ${partition.partition}  epoch ${partition.epoch}  primary ${partition.primary}  secondaries ${partition.secondaries.join(", ") || "(none: degraded)"}${served}${joiners}${learners}${failures}\n${unavailable}${checkpoints === "" ? "" : `    checkpoints: ${checkpoints}\n`}`;
}
