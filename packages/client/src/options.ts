// The knobs of a BallastClient: its limits (defaults in constants.ts, the wire's own
// limits as ceilings) and its two ports to the outside world, a clock and a source of
// randomness, so that tests can run the retry logic in virtual time and pin the jitter.
// Options are checked once, when the client is built; past that, they are trusted.

import { limits } from "@ballast/protocol";
import { constants as runtimeConstants } from "@ballast/runtime";
import {
  describeDeadlineMs,
  requestDeadlineMs,
  requestsInflightPerQueueMax,
  requestsInflightPerVolumeMax,
  retryBudgetMs,
  retryDelayMsInitial,
  retryDelayMsMax,
} from "./constants.ts";
import { ClientOptionsError } from "./errors.ts";

/** Time as the client sees it. The default reads the monotonic clock and uses timers. */
export interface Clock {
  /** Milliseconds from an arbitrary origin; only differences are used. */
  nowMs(): number;
  /** Resolves after `delayMs` milliseconds. */
  sleep(delayMs: number): Promise<void>;
}

export interface ClientOptions {
  /** How long one request waits for its reply before it counts as a Timeout. */
  requestDeadlineMs: number;
  /** How long one describe of a volume waits for the coordinator. */
  describeDeadlineMs: number;
  /** Requests one volume has in flight at once. */
  requestsInflightPerVolumeMax: number;
  /** Requests one batch queue (one partition, one kind of request) has in flight at once. */
  requestsInflightPerQueueMax: number;
  /** Data bytes one read or write request carries, at most the wire's limit. */
  requestDataBytesMax: number;
  /** Entries one request carries, at most the wire's limit. */
  requestEntriesMax: number;
  /** Retry delays: the first, and the most any one may be before jitter. */
  retryDelayMsInitial: number;
  retryDelayMsMax: number;
  /** How long an operation keeps retrying, counted from when it was issued. */
  retryBudgetMs: number;
  /**
   * Send volume requests over direct links to primaries once their head nodes offer one
   * (runtime bus.ts, `enableLinks`), over NATS until then and as the fallback. On by
   * default; it sets the bus, so every user of the bus gets the links.
   */
  links: boolean;
  /** A uniform draw from [0, 1), for jitter. */
  random: () => number;
  clock: Clock;
}

export const systemClock: Clock = {
  nowMs: () => performance.now(),
  sleep: (delayMs) => new Promise((resolve) => setTimeout(resolve, delayMs)),
};

export const clientOptionsDefault: Readonly<ClientOptions> = {
  requestDeadlineMs,
  describeDeadlineMs,
  requestsInflightPerVolumeMax,
  requestsInflightPerQueueMax,
  requestDataBytesMax: limits.requestDataBytesMax,
  requestEntriesMax: limits.requestEntriesMax,
  retryDelayMsInitial,
  retryDelayMsMax,
  retryBudgetMs,
  links: true,
  random: Math.random,
  clock: systemClock,
};

/** Fills in defaults and checks every option, reporting all problems at once. */
export function resolveClientOptions(options: Partial<ClientOptions>): Readonly<ClientOptions> {
  const resolved: ClientOptions = { ...clientOptionsDefault };
  for (const [key, value] of Object.entries(options)) {
    // An explicit `undefined` means "the default", as it would for a missing key.
    if (value !== undefined) Object.assign(resolved, { [key]: value });
  }
  const problems: string[] = [];
  const checkInteger = (name: keyof ClientOptions, minimum: number, maximum: number): void => {
    const value = resolved[name];
    if (typeof value !== "number" || !Number.isSafeInteger(value)) {
      problems.push(`${name} must be an integer, got ${String(value)}`);
    } else if (value < minimum || value > maximum) {
      problems.push(`${name} must be from ${minimum} to ${maximum}, got ${value}`);
    }
  };
  // The bus refuses a request deadline past requestDeadlineMsMax: refused here, once,
  // rather than by every request the client would send.
  checkInteger("requestDeadlineMs", 1, runtimeConstants.requestDeadlineMsMax);
  checkInteger("describeDeadlineMs", 1, runtimeConstants.requestDeadlineMsMax);
  checkInteger("requestsInflightPerVolumeMax", 1, Number.MAX_SAFE_INTEGER);
  checkInteger("requestsInflightPerQueueMax", 1, Number.MAX_SAFE_INTEGER);
  checkInteger("requestDataBytesMax", limits.sectorBytes, limits.requestDataBytesMax);
  checkInteger("requestEntriesMax", 1, limits.requestEntriesMax);
  // Retries sleep on timers: past timerDelayMsMax a timer fires after 1 ms, which made a
  // tight retry loop of a long delay.
  checkInteger("retryDelayMsInitial", 1, runtimeConstants.timerDelayMsMax);
  checkInteger("retryDelayMsMax", resolved.retryDelayMsInitial, runtimeConstants.timerDelayMsMax);
  checkInteger("retryBudgetMs", 0, runtimeConstants.timerDelayMsMax);
  if (resolved.requestDataBytesMax % limits.sectorBytes !== 0) {
    problems.push(
      `requestDataBytesMax must be a multiple of ${limits.sectorBytes} bytes, got ${resolved.requestDataBytesMax}`,
    );
  }
  if (typeof resolved.links !== "boolean") problems.push("links must be true or false");
  if (typeof resolved.random !== "function") problems.push("random must be a function");
  if (typeof resolved.clock?.nowMs !== "function" || typeof resolved.clock?.sleep !== "function") {
    problems.push("clock must have nowMs() and sleep(delayMs)");
  }
  if (problems.length > 0) throw new ClientOptionsError(problems);
  return Object.freeze(resolved);
}
