// Every bound and default of the NBD server, in one place. Numbers the protocol itself
// fixes (magics, header sizes, the 4096-byte string bound) live in wire.ts; the ones
// here are choices of this server. A caller may change the limits (tests shrink them to
// make the bounds easy to reach); `checkLimits` refuses combinations that cannot work.
// Names carry their unit last.

import { limits } from "@ballast/protocol";
import { constants as runtimeConstants } from "@ballast/runtime";
import { NbdLimitsError } from "./errors.ts";
import { exportRequestFixedBytes, lengthMax, requestHeaderBytes, stringBytesMax } from "./wire.ts";

const kibibyte = 1024;
const mebibyte = 1024 * kibibyte;

/**
 * The minimum block size the server advertises: every offset and length must be a
 * multiple of it. It is the Ballast sector, which the backend insists on anyway.
 */
export const blockBytesMin = limits.sectorBytes;

/** The preferred block size advertised: I/O in multiples of it avoids read-modify-write. */
export const blockBytesPreferred = 4 * kibibyte;

export interface NbdLimits {
  /** Connections open at once; one more is closed as soon as it is accepted. */
  connectionsMax: number;
  /** Time from accept to the end of option haggling; a slower client is disconnected. */
  handshakeDeadlineMs: number;
  /** Data bytes of one option. A longer option closes the connection unread. */
  optionBytesMax: number;
  /** Names one NBD_OPT_LIST may return; with more, the list is refused as too big. */
  exportsListedMax: number;
  /**
   * The largest read or write, advertised as the maximum block size. A longer read is
   * answered NBD_EINVAL; a longer write closes the connection without reading its data.
   */
  payloadBytesMax: number;
  /**
   * Requests read from one connection and not yet answered. At the limit the server
   * stops taking requests from that socket until one is answered.
   */
  requestsInflightPerConnectionMax: number;
  /**
   * Read and write data held for one connection's requests in flight (write data
   * received, read data not yet sent). Like the request count, it stops the reading.
   */
  payloadBytesInflightPerConnectionMax: number;
  /**
   * The same bytes summed over every connection of the server. At the limit every
   * connection's next read or write waits (first come, first served) until requests
   * are answered, so the server's memory for payloads is bounded whatever the number
   * of connections.
   */
  payloadBytesInflightMax: number;
  /**
   * Bytes read from a socket ahead of the request parser. Past it the socket is paused,
   * so that a client that sends faster than the backend serves fills TCP windows, not
   * the server's memory.
   */
  readAheadBytesMax: number;
  /** Idle time before TCP keep-alive probes start, so that dead clients are noticed. */
  keepAliveInitialDelayMs: number;
  /**
   * How long the server's close lets requests in flight finish and their replies flush.
   * Past it, what is still in flight is aborted and the connections left are destroyed:
   * a client that stops reading (a paused VM, a stopped nbd-client) or a backend that
   * does not answer would otherwise keep the gateway from ever stopping.
   */
  closeGraceMs: number;
  /**
   * How long a client may leave a transfer it is part of without moving a byte: the
   * replies waiting for it to take them, or the data of a write it has begun to send.
   * A client that moves none for this long (a stopped process, a paused VM, a client
   * that never reads) is disconnected and what it has in flight aborted: replies hold
   * their read data, and a write its bytes from before its data is read, all counted in
   * the server's shared budget, and a few such clients would otherwise stall every
   * other connection's reads and writes for ever. The socket reports bytes taken a
   * write at a time, and the replies of one turn leave in one write (socket-writer.ts),
   * so a client must take what it has in flight within this time: 32 MiB (qemu's 16
   * reads of 2 MiB) in 60 s is about 0.5 MiB/s. An idle client, between requests, is
   * not stalled.
   */
  clientStallMs: number;
}

export const nbdLimitsDefault: NbdLimits = {
  connectionsMax: 1024,
  handshakeDeadlineMs: 10_000,
  // The longest name the spec allows, its framing, and room for many information requests.
  optionBytesMax: 8 * kibibyte,
  exportsListedMax: limits.statusEntriesMax,
  // 2^25: the size the spec says no client should be refused below.
  payloadBytesMax: 32 * mebibyte,
  // qemu keeps 16 requests in flight per connection and nbdcopy 64.
  requestsInflightPerConnectionMax: 64,
  payloadBytesInflightPerConnectionMax: 128 * mebibyte,
  // Eight connections at their own limit; 1,024 connections could otherwise hold 128 GiB.
  payloadBytesInflightMax: 1024 * mebibyte,
  readAheadBytesMax: 256 * kibibyte,
  keepAliveInitialDelayMs: 60_000,
  // Two of the client library's request deadlines (5 s): an attempt underway when the
  // stop began ends, and one retry (after a failover, say) gets its own attempt. It
  // matches the runtime's grace for in-flight handlers, which runs before this one, so a
  // stop takes about 20 s at worst: inside the 30 s an orchestrator commonly waits
  // between SIGTERM and SIGKILL. A request cut off is never an acknowledged write lost:
  // a write is acknowledged only once durable; the client sees its connection drop and
  // retries on its next one, or fails the I/O.
  closeGraceMs: 10_000,
  // Far past any pause of a working client (a garbage collection, a busy host, a slow
  // link), and still a bound: the kernel's NBD client gives up on a request after 30 s.
  clientStallMs: 60_000,
};

/**
 * The upper bounds of the time limits. The handshake deadline, the close grace and the
 * client stall limit run on `setTimeout`, which fires a delay past `timerDelayMsMax`
 * after 1 ms (a handshake cut at once, a close that never waits). Keep-alive's idle time
 * becomes TCP_KEEPIDLE in whole seconds, which Linux bounds at 32,767 s.
 */
export const timerLimitsMsMax = {
  handshakeDeadlineMs: runtimeConstants.timerDelayMsMax,
  closeGraceMs: runtimeConstants.timerDelayMsMax,
  clientStallMs: runtimeConstants.timerDelayMsMax,
  keepAliveInitialDelayMs: 32_767 * 1000,
} as const satisfies Partial<Record<keyof NbdLimits, number>>;

/** The default limits with `overrides` applied; throws NbdLimitsError if they cannot work. */
export function resolveLimits(overrides: Partial<NbdLimits> = {}): NbdLimits {
  const resolved: NbdLimits = { ...nbdLimitsDefault, ...overrides };
  const problems = checkLimits(resolved);
  if (problems.length > 0) throw new NbdLimitsError(problems);
  return resolved;
}

/** Every reason `candidate` cannot be used, one sentence each; empty when it can. */
export function checkLimits(candidate: NbdLimits): string[] {
  const problems: string[] = [];
  for (const [name, value] of Object.entries(candidate)) {
    if (!Number.isSafeInteger(value) || value <= 0) {
      problems.push(`${name} must be a positive integer, got ${String(value)}`);
    }
  }
  if (problems.length > 0) return problems;

  for (const [name, max] of Object.entries(timerLimitsMsMax)) {
    const value = candidate[name as keyof typeof timerLimitsMsMax];
    if (value > max) problems.push(`${name} must be at most ${max}, got ${value}`);
  }
  const optionBytesMin = exportRequestFixedBytes + stringBytesMax;
  if (candidate.optionBytesMax < optionBytesMin) {
    problems.push(
      `optionBytesMax must be at least ${optionBytesMin} so that every legal export name fits, got ${candidate.optionBytesMax}`,
    );
  }
  const { payloadBytesMax } = candidate;
  if (payloadBytesMax % blockBytesMin !== 0) {
    problems.push(
      `payloadBytesMax must be a multiple of the ${blockBytesMin}-byte minimum block, got ${payloadBytesMax}`,
    );
  }
  if (payloadBytesMax < blockBytesPreferred || payloadBytesMax > lengthMax) {
    problems.push(
      `payloadBytesMax must be from ${blockBytesPreferred} (the preferred block) to ${lengthMax}, got ${payloadBytesMax}`,
    );
  }
  if (candidate.payloadBytesInflightPerConnectionMax < payloadBytesMax) {
    problems.push(
      `payloadBytesInflightPerConnectionMax must be at least payloadBytesMax (${payloadBytesMax}) so that the largest request fits, got ${candidate.payloadBytesInflightPerConnectionMax}`,
    );
  }
  if (candidate.payloadBytesInflightMax < payloadBytesMax) {
    problems.push(
      `payloadBytesInflightMax must be at least payloadBytesMax (${payloadBytesMax}) so that the largest request fits, got ${candidate.payloadBytesInflightMax}`,
    );
  }
  if (candidate.readAheadBytesMax < requestHeaderBytes) {
    problems.push(
      `readAheadBytesMax must hold at least one ${requestHeaderBytes}-byte request header, got ${candidate.readAheadBytesMax}`,
    );
  }
  return problems;
}
