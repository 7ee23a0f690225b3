// What to do with one request of the transmission phase, decided from its header and
// the export's geometry alone: no I/O, nothing to await. The transmission loop
// (transmission.ts) carries the decision out; this is where every rule about what a
// request may ask for lives.
//
// The rules, from the spec's "Block size constraints" and "Error values":
// - Offsets and lengths are multiples of the 512-byte minimum block, else NBD_EINVAL.
// - A read or trim past the end is NBD_EINVAL; a write or write-zeroes past the end is
//   NBD_ENOSPC, as the spec recommends.
// - A read longer than the maximum payload is NBD_EINVAL, and so is a write, its data
//   read and thrown away, up to 2^25 bytes: the spec says no length below that is a
//   denial of service, whatever maximum was advertised. A longer write closes the
//   connection without reading its data: the spec allows it, and reading (even to
//   throw away) up to 4 GiB a client should never have sent is the wrong kind of work.
// - Trim and write-zeroes carry no data, so only the export's size bounds them; the
//   Linux client sends both in lengths far above the maximum payload.
// - A zero length is NBD_EINVAL (the spec leaves it open, asking only that the server
//   not disconnect; the Ballast backend refuses it the same way).
// - An unknown command, or a command flag that is unknown or not valid for the command,
//   is NBD_EINVAL. NBD_CMD_FLAG_FUA is accepted on every command, as the spec requires
//   once it is advertised; it means something only for commands that write.
// - A refused write still has its data on the wire: the decision says how many bytes
//   to read and throw away before the next request.

import type { RequestHeader } from "./codec.ts";
import { blockBytesMin } from "./constants.ts";
import { assertNever } from "./errors.ts";
import { Command, CommandFlag, isCommand, payloadBytesPortableMax, ReplyError } from "./wire.ts";

export interface ExportGeometry {
  sizeBytes: number;
  /** The largest read or write the server takes (the advertised maximum block size). */
  payloadBytesMax: number;
  /** A read-only export (a snapshot): writes, trims and write-zeroes answer EPERM. */
  readOnly?: boolean;
}

/** Offsets and lengths past this point are checked and safe to use as numbers. */
interface Range {
  offset: number;
  length: number;
}

export type RequestDecision =
  | ({ kind: "read" } & Range)
  | ({ kind: "write"; forceUnitAccess: boolean } & Range)
  | ({ kind: "write-zeroes"; forceUnitAccess: boolean } & Range)
  | ({ kind: "trim"; forceUnitAccess: boolean } & Range)
  | { kind: "flush" }
  /** Reply with `error`, after reading and dropping `discardBytes` of write data. */
  | { kind: "refuse"; error: ReplyError; discardBytes: number; reason: string }
  /** NBD_CMD_DISC: finish what is in flight, then close. */
  | { kind: "disconnect" }
  /** The request cannot be answered or skipped: close the connection now. */
  | { kind: "abandon"; reason: string };

/** Command flags each command accepts. */
const flagsAllowed = {
  read: CommandFlag.ForceUnitAccess,
  write: CommandFlag.ForceUnitAccess,
  flush: CommandFlag.ForceUnitAccess,
  trim: CommandFlag.ForceUnitAccess,
  writeZeroes: CommandFlag.ForceUnitAccess | CommandFlag.NoHole,
} as const;

const blockBytesMinBig = BigInt(blockBytesMin);

export function decideRequest(request: RequestHeader, geometry: ExportGeometry): RequestDecision {
  const { command } = request;
  if (!isCommand(command)) {
    return refuse(ReplyError.InvalidArgument, `command ${command} is unknown`);
  }
  const forceUnitAccess = (request.flags & CommandFlag.ForceUnitAccess) !== 0;
  switch (command) {
    case Command.Read: {
      const fault =
        flagsFault(request, flagsAllowed.read) ??
        payloadFault(request, geometry) ??
        rangeFault(request, geometry, ReplyError.InvalidArgument);
      return fault ?? { kind: "read", ...checkedRange(request) };
    }
    case Command.Write: {
      if (request.length > Math.max(geometry.payloadBytesMax, payloadBytesPortableMax)) {
        return {
          kind: "abandon",
          reason: `a write of ${request.length} bytes is over the ${geometry.payloadBytesMax}-byte maximum payload`,
        };
      }
      const fault =
        payloadFault(request, geometry) ??
        readOnlyFault(request, geometry) ??
        flagsFault(request, flagsAllowed.write) ??
        rangeFault(request, geometry, ReplyError.NoSpace);
      if (fault !== undefined) return { ...fault, discardBytes: request.length };
      return { kind: "write", forceUnitAccess, ...checkedRange(request) };
    }
    case Command.Disconnect:
      return { kind: "disconnect" };
    case Command.Flush: {
      if (request.offset !== 0n || request.length !== 0) {
        return refuse(
          ReplyError.InvalidArgument,
          `a flush must have offset and length 0, got offset ${request.offset} and length ${request.length}`,
        );
      }
      return flagsFault(request, flagsAllowed.flush) ?? { kind: "flush" };
    }
    case Command.Trim: {
      const fault =
        readOnlyFault(request, geometry) ??
        flagsFault(request, flagsAllowed.trim) ??
        rangeFault(request, geometry, ReplyError.InvalidArgument);
      return fault ?? { kind: "trim", forceUnitAccess, ...checkedRange(request) };
    }
    case Command.WriteZeroes: {
      const fault =
        readOnlyFault(request, geometry) ??
        flagsFault(request, flagsAllowed.writeZeroes) ??
        rangeFault(request, geometry, ReplyError.NoSpace);
      return fault ?? { kind: "write-zeroes", forceUnitAccess, ...checkedRange(request) };
    }
    case Command.Cache:
    case Command.BlockStatus:
    case Command.Resize:
      return refuse(
        ReplyError.InvalidArgument,
        `command ${command} is not offered by this server (its transmission flag is not set)`,
      );
    default:
      return assertNever(command, "command");
  }
}

type Refusal = Extract<RequestDecision, { kind: "refuse" }>;

function refuse(error: ReplyError, reason: string): Refusal {
  return { kind: "refuse", error, discardBytes: 0, reason };
}

/** A mutation of a read-only export: NBD_EPERM (the export was offered NBD_FLAG_READ_ONLY). */
function readOnlyFault(request: RequestHeader, geometry: ExportGeometry): Refusal | undefined {
  if (geometry.readOnly !== true) return undefined;
  return refuse(
    ReplyError.NotPermitted,
    `command ${request.command} changes data, and this export is read-only (a snapshot)`,
  );
}

function flagsFault(request: RequestHeader, allowed: number): Refusal | undefined {
  const unexpected = request.flags & ~allowed;
  if (unexpected === 0) return undefined;
  return refuse(
    ReplyError.InvalidArgument,
    `command ${request.command} does not take flags 0x${unexpected.toString(16)}`,
  );
}

function payloadFault(request: RequestHeader, geometry: ExportGeometry): Refusal | undefined {
  if (request.length <= geometry.payloadBytesMax) return undefined;
  return refuse(
    ReplyError.InvalidArgument,
    `a ${request.command === Command.Write ? "write" : "read"} of ${request.length} bytes is over the ${geometry.payloadBytesMax}-byte maximum payload`,
  );
}

/** Why `[offset, offset + length)` cannot be served, with `pastEnd` for a range past the end. */
function rangeFault(
  request: RequestHeader,
  geometry: ExportGeometry,
  pastEnd: ReplyError,
): Refusal | undefined {
  const { offset, length } = request;
  if (length === 0) {
    return refuse(ReplyError.InvalidArgument, `command ${request.command} has length 0`);
  }
  if (offset % blockBytesMinBig !== 0n || length % blockBytesMin !== 0) {
    return refuse(
      ReplyError.InvalidArgument,
      `offset ${offset} and length ${length} must be multiples of the ${blockBytesMin}-byte block`,
    );
  }
  if (offset + BigInt(length) > BigInt(geometry.sizeBytes)) {
    return refuse(
      pastEnd,
      `the range [${offset}, ${offset + BigInt(length)}) is past the export's end at ${geometry.sizeBytes}`,
    );
  }
  return undefined;
}

/** The request's range as numbers; only after `rangeFault` found none (so it is inside the export). */
function checkedRange(request: RequestHeader): Range {
  return { offset: Number(request.offset), length: request.length };
}
