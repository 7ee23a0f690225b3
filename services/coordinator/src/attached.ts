// Whether a volume is attached: the probe the leader makes before an operation that an
// NBD client still writing to the volume would not survive (a rollback rewrites what
// it reads, a shrink drops what it writes past the new end, a delete takes the volume
// away). Each live gateway is asked `node.info.v1`; its details say how many NBD
// connections it has open to each volume (writable exports only, past the handshake).
//
// Failure model: a gateway that does not answer in time may have the volume open, so it
// counts as attached; the operator then disconnects, or forces if nothing writes. The
// probe is a point in time: a client that attaches after it is not seen (resize.ts and
// volumes.ts say what covers that for a shrink and a delete).

import { BallastError, ErrorCode, subjects } from "@ballast/protocol";
import type { Service } from "@ballast/runtime";
import { probeDeadlineMs, shrinkNoticeDeadlineMs } from "./constants.ts";

/** The cluster's members, as membership lists them. */
export interface Members {
  list(): readonly { kind: string; id: string; alive: boolean }[];
}

/** The gateways membership holds alive: those the probe asks and a shrink is told to. */
function liveGateways(members: Members | undefined): { id: string }[] {
  return (members?.list() ?? []).filter((member) => member.kind === "gateway" && member.alive);
}

/**
 * Why the volume may be attached: each live gateway that reports NBD connections to
 * it, or did not answer. Empty: no gateway has it open.
 */
export async function attachedThrough(
  bus: Pick<Service["bus"], "request">,
  members: Members | undefined,
  volumeName: string,
): Promise<string[]> {
  const answers = await Promise.all(
    liveGateways(members).map(async (gateway): Promise<string | undefined> => {
      try {
        const info = await bus.request(
          subjects.node.build("gateway", gateway.id),
          { type: "node.info.v1" },
          { deadlineMs: probeDeadlineMs },
        );
        const connections = attachedCount(info.details, volumeName);
        return connections > 0
          ? `${connections} NBD connection(s) through gateway ${gateway.id}`
          : undefined;
      } catch (error) {
        return `gateway ${gateway.id} did not say whether it has it open: ${(error as Error).message}`;
      }
    }),
  );
  return answers.filter((answer): answer is string => answer !== undefined);
}

/** Open NBD connections to `volume` in a gateway's node.info details (`attached`). */
export function attachedCount(details: Record<string, unknown>, volume: string): number {
  const attached = details.attached;
  if (typeof attached !== "object" || attached === null) return 0;
  const count = (attached as Record<string, unknown>)[volume];
  return typeof count === "number" ? count : 0;
}

/**
 * Refuses `action` (a rollback, a shrink, a delete) of `volume` unless `force`, when
 * the probe finds it attached: InvalidArgument naming the gateways and connections,
 * and how to go on. Asks the gateways only when not forced.
 */
export async function refuseWhileAttached(
  bus: Pick<Service["bus"], "request">,
  members: Members | undefined,
  volume: string,
  action: string,
  force: boolean | undefined,
): Promise<void> {
  if (force === true) return;
  const attached = await attachedThrough(bus, members, volume);
  if (attached.length === 0) return;
  throw new BallastError(
    ErrorCode.InvalidArgument,
    `cannot ${action}: volume ${volume} is attached (${attached.join("; ")}): disconnect its NBD clients and retry, or pass --force if you know nothing writes to it`,
    { details: { volume, attached } },
  );
}

/**
 * Tells each live gateway that `volume` shrank (its record already says so): one that
 * has it open describes it again, and from its answer on refuses writes past the new
 * end. What the probe cannot see is covered so: a client attached after it, or a shrink
 * forced over one. Answers the gateways that did not confirm (each logged); the shrink
 * stands either way, as its record is written, and their connections' writes past the
 * new end are refused by the partitions' primaries all the same (resize.ts, "The end on
 * the head nodes"): this only spares them the round trip.
 */
export async function tellShrunk(
  bus: Pick<Service["bus"], "request">,
  members: Members | undefined,
  logger: Pick<Service["logger"], "warn">,
  volume: string,
): Promise<string[]> {
  const untold = await Promise.all(
    liveGateways(members).map(async (gateway) => {
      try {
        await bus.request(
          subjects.node.build("gateway", gateway.id),
          { type: "gateway.volume.shrunk.v1", volume },
          { deadlineMs: shrinkNoticeDeadlineMs },
        );
        return undefined;
      } catch (error) {
        logger.warn(
          { gateway: gateway.id, volume, error: (error as Error).message },
          "a gateway did not confirm it learned a shrink: its connections opened before may still write past the new end until it describes the volume again",
        );
        return gateway.id;
      }
    }),
  );
  return untold.filter((id): id is string => id !== undefined);
}
