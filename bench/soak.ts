// The storage soak (issue 12, "Done when"): a local cluster with small sleds, one volume
// overwritten through NBD by random 4 KiB–1 MiB writes and trims at random sector-aligned
// offsets, for a long time and many times the sleds' capacity. It samples every sled's
// used bytes as it goes (the usage curve), then reads the whole volume back and compares
// it with an in-memory model of what was acknowledged.
//
//   npm run soak -- --minutes 30                 30 minutes and >= 10x capacity written
//   npm run soak -- --minutes 5 --time-only      stop on time alone
//   npm run soak -- --help                       every option
//
// It fails (exit 1) on a read that does not match the model, on a write or trim that
// fails or stalls (answered after more than `stallLimitMs`, or not at all), and, unless
// --no-usage-check, on sled usage above `usageLimitFraction` of capacity at the end.
// Progress and the usage curve go to stderr; the JSON results to stdout (and --json-out).
//
// The model is exact because one request is in flight at a time: each reply says what
// the volume holds (a trim reads as zeros). The first failed request ends the write phase,
// since what a failed write left behind is unknown; the read-back still runs.
//
// The cluster is the one `ballast up` starts (LocalCluster), in a temporary directory
// that is deleted at the end (sleds preallocate their devices).

import { randomFillSync } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { LocalCluster } from "@ballast/cli";
import { Command } from "@ballast/nbd/wire";
import { subjects } from "@ballast/protocol";
import { TestNbdClient } from "../packages/nbd/test/nbd-test-client.ts";
import {
  connectTestBus,
  temporaryDirectory,
  testPasswords,
  waitFor,
  waitUntilHealthy,
} from "../test/support/cluster.ts";

const kibibyte = 1024;
const mebibyte = 1024 * kibibyte;
const sectorBytes = 512;

/** A request answered later than this counts as stalled (the soak fails). */
export const stallLimitMs = 10_000;
/** A request not answered at all by this long is abandoned: the soak stops there. */
export const abandonAfterMs = 120_000;
/** The bounds of one write's (and one trim's) length. */
export const requestBytesMin = 4 * kibibyte;
export const requestBytesMax = 1 * mebibyte;
/** The share of requests that are trims; the rest are writes. */
export const trimShare = 0.15;
/** Sled usage at the end must stay below this share of capacity. */
export const usageLimitFraction = 0.6;

/**
 * How long after the read-back the final usage is measured at the latest (see the sweep
 * settings): with the usage check on, it is judged as soon as a sample is below the
 * limit, one every `settleSampleMs`.
 */
export const settleMs = 15_000;
/** Between the usage samples taken while reclamation catches up after the read-back. */
export const settleSampleMs = 1000;
/** Cumulative writes must reach this multiple of the sleds' total capacity. */
export const capacityMultipleDefault = 10;
/** Reads of the final check, in pieces of this size. */
const readBackBytes = 1 * mebibyte;
/** NBD_ENOSPC, named in failures. */
const nbdEnospc = 28;

export interface SoakOptions {
  /** Write for at least this long. */
  minutes: number;
  /** … and until cumulative writes reach this multiple of total capacity (unless timeOnly). */
  capacityMultiple: number;
  timeOnly: boolean;
  /** Give up on the capacity multiple after this long (a failure). */
  maxMinutes: number;
  sleds: number;
  headNodes: number;
  devicesPerSled: number;
  deviceBytes: number;
  volumeBytes: number;
  replicas: 2 | 3;
  sampleIntervalMs: number;
  /**
   * Writes are paced to this rate on average (0: as fast as the cluster answers). A soak
   * models a disk in use for months, not a bulk import: sleds of a few MiB absorb only
   * seconds of unpaced writes, less than reclamation's own delays (flush, checkpoint,
   * sweep grace), whereas real sleds hold hours.
   */
  bytesPerSecond: number;
  /** Fail when usage at the end is above usageLimitFraction (the issue's plateau). */
  checkUsage: boolean;
  seed: number;
  /** Extra environment for every service. */
  env: Record<string, string>;
  /** Progress lines (the usage curve); stderr by default. */
  log: (line: string) => void;
}

export const soakDefaults: SoakOptions = {
  minutes: 30,
  capacityMultiple: capacityMultipleDefault,
  timeOnly: false,
  maxMinutes: 120,
  sleds: 3,
  headNodes: 3,
  devicesPerSled: 1,
  deviceBytes: 64 * mebibyte,
  volumeBytes: 16 * mebibyte,
  replicas: 2,
  sampleIntervalMs: 10_000,
  bytesPerSecond: 1.5 * mebibyte,
  checkUsage: true,
  seed: 1,
  env: {},
  log: (line) => process.stderr.write(`${line}\n`),
};

export interface UsageSample {
  /** Since the writes began. */
  atMs: number;
  bytesWritten: number;
  /** Used bytes per sled, by sled id. */
  usedBytes: Record<string, number>;
  usedFraction: number;
}

export interface SoakResult {
  ok: boolean;
  failures: string[];
  /** The request that failed and ended the write phase, if one did. */
  failedRequest: { what: string; nbdError: number; elapsedMs: number } | null;
  /** Requests answered, but later than stallLimitMs. */
  stalledRequests: number;
  durationMs: number;
  writes: number;
  trims: number;
  bytesWritten: number;
  bytesTrimmed: number;
  capacityBytes: number;
  capacityMultiple: number;
  slowestRequestMs: number;
  mismatchedBytes: number;
  firstMismatchOffset: number | null;
  finalUsedFraction: number;
  peakUsedFraction: number;
  samples: UsageSample[];
}

/** A small deterministic generator (xorshift32), so that a run can be repeated by seed. */
class Random {
  private state: number;
  constructor(seed: number) {
    this.state = (seed * 2654435761) >>> 0 || 1;
  }
  next(): number {
    this.state ^= this.state << 13;
    this.state ^= this.state >>> 17;
    this.state ^= this.state << 5;
    return (this.state >>> 0) / 0x1_0000_0000;
  }
  /** An integer in [low, high]. */
  between(low: number, high: number): number {
    return low + Math.floor(this.next() * (high - low + 1));
  }
}

export async function runSoak(partial: Partial<SoakOptions> = {}): Promise<SoakResult> {
  const options = { ...soakDefaults, ...partial };
  const { log } = options;
  const random = new Random(options.seed);
  const directory = await temporaryDirectory("ballast-soak-");
  const failures: string[] = [];
  const samples: UsageSample[] = [];
  let cluster: LocalCluster | undefined;
  let bus: Awaited<ReturnType<typeof connectTestBus>> | undefined;
  let client: TestNbdClient | undefined;
  let sampler: NodeJS.Timeout | undefined;
  const startedAtMs = Date.now();
  /** The usage curve's time origin and the soak's clock: when the writes begin. */
  let writesStartedAtMs = startedAtMs;
  const counters = { writes: 0, trims: 0, bytesWritten: 0, bytesTrimmed: 0, slowestMs: 0 };
  let failedRequest: SoakResult["failedRequest"] = null;
  let stalledRequests = 0;
  let mismatchedBytes = 0;
  let firstMismatchOffset: number | null = null;
  let capacityBytes = 0;
  try {
    cluster = await LocalCluster.start({
      dataDir: directory.path,
      coordinators: 1,
      headNodes: options.headNodes,
      sleds: options.sleds,
      gateways: 1,
      nbdPortFirst: 0,
      // The passwords connectTestBus uses (this process is the cluster's operator).
      natsPasswords: testPasswords,
      env: {
        BALLAST_LOG_LEVEL: "info",
        BALLAST_HEARTBEAT_INTERVAL_MS: "200",
        BALLAST_HEARTBEAT_TIMEOUT_MS: "1500",
        BALLAST_SLED_DEVICES: String(options.devicesPerSled),
        BALLAST_SLED_DEVICE_BYTES: String(options.deviceBytes),
        // Sleds of a few MiB hold only seconds of writes: garbage must be swept within
        // seconds too (the defaults, 30 s and 60 s, suit sleds of gigabytes and more).
        BALLAST_SWEEP_INTERVAL_MS: "2000",
        BALLAST_SWEEP_GRACE_MS: "4000",
        BALLAST_CHECKPOINT_INTERVAL_MS: "2000",
        ...options.env,
      },
    });
    bus = await connectTestBus(cluster.natsUrl);
    await waitUntilHealthy(bus.bus, cluster.ids());
    const sleds = cluster.ids("sled");
    const stat = (sled: string) =>
      bus!.bus.request(
        subjects.node.build("sled", sled),
        { type: "sled.stat.v1" },
        { deadlineMs: 5000 },
      );
    capacityBytes = (await Promise.all(sleds.map(stat))).reduce(
      (sum, one) => sum + one.capacityBytes,
      0,
    );
    const sample = async (): Promise<UsageSample> => {
      const stats = await Promise.all(sleds.map(stat));
      const usedBytes = Object.fromEntries(
        sleds.map((sled, index) => [sled, stats[index]!.usedBytes]),
      );
      const used = stats.reduce((sum, one) => sum + one.usedBytes, 0);
      const point = {
        atMs: Date.now() - writesStartedAtMs,
        bytesWritten: counters.bytesWritten,
        usedBytes,
        usedFraction: used / capacityBytes,
      };
      samples.push(point);
      log(
        `${(point.atMs / 1000).toFixed(0).padStart(6)} s  written ${mib(point.bytesWritten).padStart(9)} (${(point.bytesWritten / capacityBytes).toFixed(2)}x)  used ${sleds.map((sled) => mib(usedBytes[sled]!)).join(" ")}  ${(point.usedFraction * 100).toFixed(1)} %`,
      );
      return point;
    };

    await bus.bus.request(subjects.coordinator.build(), {
      type: "volume.create.v1",
      name: "soak",
      sizeBytes: options.volumeBytes,
      partitionBytes: options.volumeBytes,
      replicaCount: options.replicas,
    });
    const address = await waitFor("the gateway's NBD address", async () => {
      const info = await bus!.bus.request(subjects.node.build("gateway", "gateway-1"), {
        type: "node.info.v1",
      });
      return typeof info.details.nbd === "string" ? (info.details.nbd as string) : undefined;
    });
    const port = Number(new URL(address).port);
    client = (await TestNbdClient.open({ port }, "soak")).client;
    log(
      `soak: ${options.sleds} sleds x ${options.devicesPerSled} x ${mib(options.deviceBytes)} (capacity ${mib(capacityBytes)}), volume ${mib(options.volumeBytes)}, ${options.minutes} min${options.timeOnly ? "" : ` and ${options.capacityMultiple}x capacity`}`,
    );
    log("     time  written               used per sled                 used");
    writesStartedAtMs = Date.now();
    await sample();
    sampler = setInterval(() => {
      sample().catch((error) => log(`sample failed: ${String(error)}`));
    }, options.sampleIntervalMs);

    const model = Buffer.alloc(options.volumeBytes);
    let handle = 0n;
    const request = async (command: number, offset: number, length: number, data?: Buffer) => {
      handle += 1n;
      const sentAtMs = Date.now();
      client!.sendRequest({ command, handle, offset, length, ...(data ? { data } : {}) });
      const reply = await client!.readReply(abandonAfterMs).catch((error) => {
        stalledRequests++; // never answered: the worst stall
        throw error;
      });
      const elapsedMs = Date.now() - sentAtMs;
      counters.slowestMs = Math.max(counters.slowestMs, elapsedMs);
      const what = `${command === Command.Write ? "write" : command === Command.Trim ? "trim" : "flush"} of ${length} at ${offset}`;
      if (reply.handle !== handle) throw new Error(`${what}: reply for handle ${reply.handle}`);
      if (elapsedMs > stallLimitMs) {
        stalledRequests++;
        failures.push(`${what} stalled: answered after ${elapsedMs} ms (limit ${stallLimitMs})`);
      }
      if (reply.error !== 0) {
        failedRequest = { what, nbdError: reply.error, elapsedMs };
        throw new Error(
          `${what} failed with NBD error ${reply.error}${reply.error === nbdEnospc ? " (ENOSPC)" : ""} after ${elapsedMs} ms`,
        );
      }
    };

    const minimumMs = options.minutes * 60_000;
    const maximumMs = Math.max(minimumMs, options.maxMinutes * 60_000);
    const targetBytes = options.capacityMultiple * capacityBytes;
    const done = () => {
      const elapsedMs = Date.now() - writesStartedAtMs;
      if (elapsedMs < minimumMs) return false;
      if (options.timeOnly || counters.bytesWritten >= targetBytes) return true;
      if (elapsedMs >= maximumMs) {
        failures.push(
          `wrote ${(counters.bytesWritten / capacityBytes).toFixed(2)}x capacity in ${options.maxMinutes} min, short of ${options.capacityMultiple}x`,
        );
        return true;
      }
      return false;
    };
    const sectorsMax = options.volumeBytes / sectorBytes;
    try {
      while (!done() && failures.length === 0) {
        const length =
          random.between(
            requestBytesMin / sectorBytes,
            Math.min(requestBytesMax, options.volumeBytes) / sectorBytes,
          ) * sectorBytes;
        const offset = random.between(0, sectorsMax - length / sectorBytes) * sectorBytes;
        const aheadMs =
          options.bytesPerSecond > 0
            ? (counters.bytesWritten / options.bytesPerSecond) * 1000 -
              (Date.now() - writesStartedAtMs)
            : 0;
        if (aheadMs > 0) await new Promise((resolve) => setTimeout(resolve, aheadMs));
        if (random.next() < trimShare) {
          await request(Command.Trim, offset, length);
          model.fill(0, offset, offset + length);
          counters.trims++;
          counters.bytesTrimmed += length;
        } else {
          const data = Buffer.alloc(length);
          randomFillSync(data);
          await request(Command.Write, offset, length, data);
          data.copy(model, offset);
          counters.writes++;
          counters.bytesWritten += length;
        }
      }
      await request(Command.Flush, 0, 0);
    } catch (error) {
      failures.push(String((error as Error).message ?? error));
    }
    clearInterval(sampler);
    sampler = undefined;

    // The read-back, against the model. A request left unanswered above leaves the
    // connection unusable: a fresh one reads.
    client.destroy();
    client = (await TestNbdClient.open({ port }, "soak")).client;
    for (let offset = 0; offset < options.volumeBytes; offset += readBackBytes) {
      const length = Math.min(readBackBytes, options.volumeBytes - offset);
      handle += 1n;
      client.sendRequest({ command: Command.Read, handle, offset, length });
      const reply = await client.readReply(abandonAfterMs);
      if (reply.error !== 0) {
        failures.push(`read of ${length} at ${offset} failed with NBD error ${reply.error}`);
        continue;
      }
      const expected = model.subarray(offset, offset + length);
      if (reply.data.equals(expected)) continue;
      for (let at = 0; at < length; at++) {
        if (reply.data[at] === expected[at]) continue;
        mismatchedBytes++;
        firstMismatchOffset ??= offset + at;
      }
    }
    if (mismatchedBytes > 0) {
      failures.push(
        `the volume does not match the model: ${mismatchedBytes} bytes differ, the first at ${firstMismatchOffset}`,
      );
    }
    // The plateau is judged once reclamation has caught up with the last writes: a
    // checkpoint, then two sweep passes a grace apart (the intervals set above). Nothing
    // writes any more, so with the check on, a sample below the limit is the answer and
    // the wait ends there; without it, the figure reported is the one settleMs on.
    const settledBy = Date.now() + settleMs;
    let last = await sample();
    while (
      Date.now() < settledBy &&
      !(options.checkUsage && last.usedFraction <= usageLimitFraction)
    ) {
      await new Promise((resolve) => setTimeout(resolve, settleSampleMs));
      last = await sample();
    }
    if (options.checkUsage && last.usedFraction > usageLimitFraction) {
      failures.push(
        `sled usage at the end is ${(last.usedFraction * 100).toFixed(1)} % of capacity, above ${usageLimitFraction * 100} %`,
      );
    }
  } catch (error) {
    failures.push(`the soak could not run: ${String(error)}`);
  } finally {
    if (sampler !== undefined) clearInterval(sampler);
    client?.destroy();
    await bus?.close();
    await cluster?.stop();
    await directory.remove();
  }
  return {
    ok: failures.length === 0,
    failures,
    failedRequest,
    stalledRequests,
    durationMs: Date.now() - startedAtMs,
    writes: counters.writes,
    trims: counters.trims,
    bytesWritten: counters.bytesWritten,
    bytesTrimmed: counters.bytesTrimmed,
    capacityBytes,
    capacityMultiple: capacityBytes === 0 ? 0 : counters.bytesWritten / capacityBytes,
    slowestRequestMs: counters.slowestMs,
    mismatchedBytes,
    firstMismatchOffset,
    finalUsedFraction: samples.at(-1)?.usedFraction ?? 0,
    peakUsedFraction: Math.max(0, ...samples.map((one) => one.usedFraction)),
    samples,
  };
}

function mib(bytes: number): string {
  return `${(bytes / mebibyte).toFixed(1)} MiB`;
}

const usage = `npm run soak -- [options]
  --minutes N          write for at least N minutes (default ${soakDefaults.minutes})
  --capacity-multiple K  and until K x the sleds' capacity is written (default ${capacityMultipleDefault})
  --time-only          stop on time alone
  --max-minutes N      give up on the capacity multiple after N minutes (default ${soakDefaults.maxMinutes})
  --sleds N            sleds (default ${soakDefaults.sleds}); --head-nodes N (default ${soakDefaults.headNodes})
  --device-mib N       each sled's device size (default ${soakDefaults.deviceBytes / mebibyte}); --devices N (default ${soakDefaults.devicesPerSled})
  --volume-mib N       the volume's size (default ${soakDefaults.volumeBytes / mebibyte})
  --mib-per-second N   pace writes to N MiB/s on average, 0 for unpaced (default ${soakDefaults.bytesPerSecond / mebibyte})
  --sample-seconds N   the usage curve's interval (default ${soakDefaults.sampleIntervalMs / 1000})
  --no-usage-check     do not fail on usage above ${usageLimitFraction * 100} % at the end
  --seed N             the request generator's seed (default ${soakDefaults.seed})
  --json-out PATH      also write the JSON results to PATH`;

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      minutes: { type: "string" },
      "capacity-multiple": { type: "string" },
      "time-only": { type: "boolean" },
      "max-minutes": { type: "string" },
      sleds: { type: "string" },
      "head-nodes": { type: "string" },
      "device-mib": { type: "string" },
      devices: { type: "string" },
      "volume-mib": { type: "string" },
      "sample-seconds": { type: "string" },
      "mib-per-second": { type: "string" },
      "no-usage-check": { type: "boolean" },
      seed: { type: "string" },
      "json-out": { type: "string" },
      help: { type: "boolean" },
    },
  });
  if (values.help) {
    process.stdout.write(`${usage}\n`);
    return 0;
  }
  const number = (value: string | undefined, fallback: number) => {
    if (value === undefined) return fallback;
    const parsed = Number(value);
    if (!Number.isFinite(parsed) || parsed <= 0) throw new Error(`not a positive number: ${value}`);
    return parsed;
  };
  const minutes = number(values.minutes, soakDefaults.minutes);
  const result = await runSoak({
    minutes,
    capacityMultiple: number(values["capacity-multiple"], capacityMultipleDefault),
    timeOnly: values["time-only"] === true,
    maxMinutes: number(values["max-minutes"], Math.max(soakDefaults.maxMinutes, minutes * 4)),
    sleds: number(values.sleds, soakDefaults.sleds),
    headNodes: number(values["head-nodes"], soakDefaults.headNodes),
    deviceBytes: number(values["device-mib"], soakDefaults.deviceBytes / mebibyte) * mebibyte,
    devicesPerSled: number(values.devices, soakDefaults.devicesPerSled),
    volumeBytes: number(values["volume-mib"], soakDefaults.volumeBytes / mebibyte) * mebibyte,
    sampleIntervalMs: number(values["sample-seconds"], soakDefaults.sampleIntervalMs / 1000) * 1000,
    bytesPerSecond:
      values["mib-per-second"] === "0"
        ? 0
        : number(values["mib-per-second"], soakDefaults.bytesPerSecond / mebibyte) * mebibyte,
    checkUsage: values["no-usage-check"] !== true,
    seed: number(values.seed, soakDefaults.seed),
  });
  const json = `${JSON.stringify(result, null, 2)}\n`;
  process.stdout.write(json);
  if (values["json-out"] !== undefined) await writeFile(values["json-out"], json);
  for (const failure of result.failures) process.stderr.write(`FAILED: ${failure}\n`);
  process.stderr.write(result.ok ? "soak: ok\n" : "soak: FAILED\n");
  return result.ok ? 0 : 1;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().then(
    (code) => process.exit(code),
    (error) => {
      process.stderr.write(`soak: ${String(error)}\n${usage}\n`);
      process.exit(2);
    },
  );
}
