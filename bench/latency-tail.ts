// What the slow writes of a QD1 run wait for: lines each write up with what else was
// going on in the cluster while it was in flight. From the files of
// `npm run bench:write -- --jobs randwrite-qd1 --latency DIR` with the hooks of
// bench/latency-hooks.patch applied (see bench/latency-trace.cjs):
//
//   node --import tsx bench/latency-tail.ts DIR/randwrite-qd1-0 [--slow-us N]
//
// A write runs from the gateway's NBD request (`G:g.data`) to its reply leaving
// (`G:g.uncork`); at QD1 one is in flight at a time. Activities are spans in one process:
// a flush (the primary's chunk write to sleds, to both copies stored), a sled's chunk
// write (data written, first fdatasync, slot, second fdatasync), a checkpoint, a journal
// runway extension, cut or segment deletion, a head node's tick, a garbage collection.
// For each kind it prints how many writes overlapped one, among the slow writes (over
// --slow-us, by default four times the median) and among the rest, and the share of
// the slow writes' excess time (their latency less the median) in writes that
// overlapped it. It also names, for the slow writes, the longest gap between two
// consecutive events of the gateway, primary and secondary inside the write: the step
// that took the time.
//
// With --perf FILE it also says, for the slow writes, how long the threads of the
// gateway, primary and secondary were woken but waiting for a CPU, against blocked in
// the kernel (and where), from the scheduler's events of the same window. As root,
// while the fio job runs:
//
//   perf record -k CLOCK_MONOTONIC -a -g -e sched:sched_switch,sched:sched_wakeup \
//     -o /tmp/sched.data -- sleep 6
//   perf script -i /tmp/sched.data -F comm,pid,tid,time,event,trace,ip,sym --ns > FILE
//
// (perf's CLOCK_MONOTONIC is the clock the hooks read; the processes are named by
// DIR/pids.json, which bench/write-path.ts writes.)

import { existsSync, readFileSync } from "node:fs";
import { parseArgs } from "node:util";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { "slow-us": { type: "string" }, perf: { type: "string" } },
});
const directory = positionals[0];
if (directory === undefined) {
  throw new Error("usage: latency-tail.ts DIR/<job>-<round> [--slow-us N] [--perf FILE]");
}

interface Trace {
  names: string[];
  times: number[];
  collections?: [number, number, number][];
}

const tags: Record<string, string> = {
  "gateway-1": "G",
  primary: "P",
  secondary: "S",
  "sled-1": "L1",
  "sled-2": "L2",
  "sled-3": "L3",
};
const traces = new Map<string, Trace>();
for (const [file, tag] of Object.entries(tags)) {
  const path = `${directory}/${file}.json`;
  if (existsSync(path)) traces.set(tag, JSON.parse(readFileSync(path, "utf8")) as Trace);
}
const gateway = traces.get("G");
if (gateway === undefined) throw new Error(`no gateway-1.json in ${directory}`);

/** A span of time, in µs of the monotonic clock. */
interface Span {
  start: number;
  end: number;
  label: string;
}

// Writes: each G:g.data to the next G:g.uncork.
const writes: Span[] = [];
{
  let start: number | undefined;
  for (let index = 0; index < gateway.names.length; index++) {
    const name = gateway.names[index]!;
    const time = gateway.times[index]! / 10;
    if (name === "g.data") start ??= time;
    else if (name === "g.uncork" && start !== undefined) {
      writes.push({ start, end: time, label: "write" });
      start = undefined;
    }
  }
}
if (writes.length === 0) throw new Error("no whole write found");

/** Spans of one process from each `open` event to the next `close` event after it. */
function spans(tag: string, open: string, close: string, label: string): Span[] {
  const trace = traces.get(tag);
  if (trace === undefined) return [];
  const found: Span[] = [];
  let start: number | undefined;
  for (let index = 0; index < trace.names.length; index++) {
    const name = trace.names[index]!;
    const time = trace.times[index]! / 10;
    if (name === open) start ??= time;
    else if (name === close && start !== undefined) {
      found.push({ start, end: time, label });
      start = undefined;
    }
  }
  return found;
}

/** V8's collection kinds (perf_hooks constants NODE_PERFORMANCE_GC_*). */
const gcKinds: Record<number, string> = { 1: "scavenge", 4: "full", 8: "incremental", 16: "weak" };

const activities = new Map<string, Span[]>();
const add = (kind: string, found: Span[]) => {
  activities.set(kind, [...(activities.get(kind) ?? []), ...found]);
};
add(
  "flush (primary: chunk write to both copies stored)",
  spans("P", "chunk.write", "chunk.done", "flush"),
);
for (const sled of ["L1", "L2", "L3"]) {
  add("sled: chunk data written", spans(sled, "s.data.start", "s.data.end", sled));
  add("sled: fdatasync of the data", spans(sled, "s.data.end", "s.sync1.end", sled));
  add("sled: fdatasync of the slot", spans(sled, "s.slot.end", "s.sync2.end", sled));
}
for (const tag of ["P", "S"]) {
  add("checkpoint (written)", spans(tag, "ckpt.write", "ckpt.done", tag));
  add("journal runway extension", spans(tag, "j.runway.start", "j.runway.end", tag));
  add("journal cut (ftruncate, fdatasync)", spans(tag, "j.cut.start", "j.cut.end", tag));
  add("journal segment deleted", spans(tag, "j.delete.start", "j.delete.end", tag));
  add("head node tick", spans(tag, "tick", "tick.end", tag));
}
for (const [tag, trace] of traces) {
  for (const [start, duration, kind] of trace.collections ?? []) {
    const name = gcKinds[kind] ?? String(kind);
    add(`gc ${name} (${tag === "G" || tag === "P" || tag === "S" ? "G/P/S" : "sleds"})`, [
      { start: start / 10, end: (start + duration) / 10, label: tag },
    ]);
  }
}

const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
const latencies = writes.map((write) => write.end - write.start);
const sorted = [...latencies].sort((left, right) => left - right);
const median = percentile(sorted, 0.5);
const mean = latencies.reduce((sum, value) => sum + value, 0) / latencies.length;
const slowUs = values["slow-us"] === undefined ? 4 * median : Number(values["slow-us"]);
const slow = writes.filter((write) => write.end - write.start > slowUs);
const rest = writes.filter((write) => write.end - write.start <= slowUs);
const excess = (write: Span) => write.end - write.start - median;
const slowExcess = slow.reduce((sum, write) => sum + excess(write), 0);
const allExcess = writes.reduce((sum, write) => sum + Math.max(0, excess(write)), 0);
console.log(
  `${writes.length} writes: p50 ${median.toFixed(0)} µs, p90 ${percentile(sorted, 0.9).toFixed(0)}, p99 ${percentile(sorted, 0.99).toFixed(0)}, max ${sorted[sorted.length - 1]!.toFixed(0)}, mean ${mean.toFixed(0)} (${(mean / median).toFixed(2)}× the median)`,
);
console.log(
  `slow (over ${slowUs.toFixed(0)} µs): ${slow.length} writes, ${((100 * slowExcess) / allExcess).toFixed(0)} % of all time above the median; without them the mean would be ${(rest.reduce((sum, write) => sum + write.end - write.start, 0) / rest.length).toFixed(0)} µs`,
);

const overlaps = (write: Span, span: Span) => span.start < write.end && span.end > write.start;
/** Spans sorted by start, for a scan per write. */
const indexOf = (found: Span[]) => [...found].sort((left, right) => left.start - right.start);
const indexed = new Map([...activities].map(([kind, found]) => [kind, indexOf(found)]));
const overlapping = (kind: string, write: Span) =>
  indexed.get(kind)!.some((span) => overlaps(write, span));

// By chance alone a write of length w overlaps one of n spans covering c µs of a run of
// T µs with a probability of about (c + n w) / T: long writes overlap periodic work
// (ticks) whether or not it held them.
const runStart = writes[0]!.start;
const runUs = writes[writes.length - 1]!.end - runStart;
const byChance = (found: Span[]) => {
  const covered = found.reduce((sum, span) => sum + span.end - span.start, 0);
  return slow.reduce(
    (sum, write) => sum + Math.min(1, (covered + found.length * (write.end - write.start)) / runUs),
    0,
  );
};
console.log(
  "\nactivity (count, median length µs)                  slow writes overlapping (by chance)  other writes overlapping  slow excess in them",
);
for (const [kind, found] of indexed) {
  if (found.length === 0) continue;
  const lengths = found.map((span) => span.end - span.start).sort((left, right) => left - right);
  const inSlow = slow.filter((write) => overlapping(kind, write));
  const inRest = rest.filter((write) => overlapping(kind, write));
  const excessIn = inSlow.reduce((sum, write) => sum + excess(write), 0);
  console.log(
    `${`${kind} (${found.length}, ${percentile(lengths, 0.5).toFixed(0)})`.padEnd(54)} ${`${inSlow.length} (${((100 * inSlow.length) / Math.max(1, slow.length)).toFixed(0)} %; ${byChance(found).toFixed(0)})`.padStart(30)} ${`${inRest.length} (${((100 * inRest.length) / Math.max(1, rest.length)).toFixed(1)} %)`.padStart(24)} ${`${((100 * excessIn) / Math.max(1, slowExcess)).toFixed(0)} %`.padStart(20)}`,
  );
}

// Each slow write by what held it, first match: a journal writev (either replica's)
// that alone covers at least half of its excess, told apart by whether a sled was
// writing or syncing a chunk meanwhile (the flush's disk traffic) or that replica's
// runway was being extended; a garbage collection in the gateway, primary or secondary
// that covers half; anything else (link hops and processing: the scheduler).
const journalWrites = [
  ...spans("P", "writev.start", "writev.end", "P"),
  ...spans("S", "writev.start", "writev.end", "S"),
].sort((left, right) => left.start - right.start);
const sledBusy = indexOf(
  ["L1", "L2", "L3"].flatMap((sled) => spans(sled, "s.data.start", "s.sync2.end", sled)),
);
const runways = indexOf(
  ["P", "S"].flatMap((tag) => spans(tag, "j.runway.start", "j.runway.end", tag)),
);
const pauses = indexOf(
  ["G", "P", "S"].flatMap((tag) =>
    (traces.get(tag)?.collections ?? []).map(([start, duration]) => ({
      start: start / 10,
      end: (start + duration) / 10,
      label: tag,
    })),
  ),
);
const within = (write: Span, span: Span) =>
  Math.max(0, Math.min(write.end, span.end) - Math.max(write.start, span.start));
const classes = new Map<string, { count: number; excess: number }>();
for (const write of slow) {
  const half = excess(write) / 2;
  let kind = "link hops and processing (scheduling)";
  const held = journalWrites.filter((span) => overlaps(write, span) && within(write, span) >= half);
  if (held.length > 0) {
    const busy = sledBusy.some((span) => held.some((journal) => overlaps(journal, span)));
    const runway = runways.some((span) => overlaps(write, span));
    kind = busy
      ? "journal writev, a sled writing a chunk meanwhile"
      : runway
        ? "journal writev, a runway extension meanwhile"
        : "journal writev, nothing of ours on the disk";
  } else if (pauses.some((span) => overlaps(write, span) && within(write, span) >= half)) {
    kind = "garbage collection";
  }
  const entry = classes.get(kind) ?? { count: 0, excess: 0 };
  entry.count++;
  entry.excess += excess(write);
  classes.set(kind, entry);
}
console.log("\nthe slow writes by what held them (count, share of their excess):");
for (const [kind, { count, excess: held }] of [...classes].sort(
  (a, b) => b[1].excess - a[1].excess,
)) {
  console.log(
    `  ${String(count).padStart(5)}  ${`${((100 * held) / slowExcess).toFixed(0)} %`.padStart(5)}  ${kind}`,
  );
}

// The longest gap inside each slow write, between consecutive events of G, P and S.
const events: [number, string][] = [];
for (const tag of ["G", "P", "S"]) {
  const trace = traces.get(tag);
  if (trace === undefined) continue;
  for (let index = 0; index < trace.names.length; index++) {
    events.push([trace.times[index]! / 10, `${tag}:${trace.names[index]}`]);
  }
}
events.sort((left, right) => left[0] - right[0]);
const gaps = new Map<string, { count: number; total: number }>();
let cursor = 0;
for (const write of slow) {
  while (cursor < events.length && events[cursor]![0] < write.start) cursor++;
  let previous: [number, string] | undefined;
  let longest = { gap: -1, step: "" };
  for (let index = cursor; index < events.length && events[index]![0] <= write.end; index++) {
    const event = events[index]!;
    if (previous !== undefined && event[0] - previous[0] > longest.gap) {
      longest = { gap: event[0] - previous[0], step: `${previous[1]} → ${event[1]}` };
    }
    previous = event;
  }
  const entry = gaps.get(longest.step) ?? { count: 0, total: 0 };
  entry.count++;
  entry.total += longest.gap;
  gaps.set(longest.step, entry);
}
console.log("\nthe longest step inside each slow write (count, mean µs):");
for (const [step, { count, total }] of [...gaps]
  .sort((left, right) => right[1].count - left[1].count)
  .slice(0, 12)) {
  console.log(`  ${String(count).padStart(5)}  ${(total / count).toFixed(0).padStart(7)}  ${step}`);
}

if (values.perf !== undefined) schedulerWaits(values.perf);

/**
 * For the slow writes inside the perf trace's window: the time threads of the gateway,
 * primary and secondary spent runnable but not running (preempted, or woken and not yet
 * given a CPU), summed over threads, against blocked in the kernel (state D), by the
 * kernel stack they blocked in.
 */
function schedulerWaits(file: string): void {
  const pids = JSON.parse(readFileSync(`${directory}/pids.json`, "utf8")) as Record<string, number>;
  const ours = new Set(
    ["gateway-1", "primary", "secondary"].flatMap((role) =>
      pids[role] === undefined ? [] : [String(pids[role])],
    ),
  );
  const header = /^\s*(.+?)\s+(\d+)\/(\d+)\s+([\d.]+):\s+(\S+):\s*(.*)$/;
  interface Event {
    pid: string;
    time: number;
    name: string;
    detail: string;
    stack: string[];
  }
  const events: Event[] = [];
  let current: Event | undefined;
  for (const line of readFileSync(file, "utf8").split("\n")) {
    if (/^\s+[0-9a-f]+ /.test(line)) {
      if (current !== undefined && current.stack.length < 12) {
        const symbol = line.trim().split(" ")[1];
        if (symbol !== undefined && !symbol.includes("schedule")) current.stack.push(symbol);
      }
      continue;
    }
    const match = header.exec(line);
    current = undefined;
    if (match === null) continue;
    current = {
      pid: match[2]!,
      time: Number(match[4]) * 1e6,
      name: match[5]!,
      detail: match[6]!,
      stack: [],
    };
    events.push(current);
  }
  if (events.length === 0) throw new Error(`no perf events in ${file}`);
  interface OffCpu {
    start: number;
    end?: number;
    woken?: number;
    state: string;
    stack: string;
  }
  const away = new Map<string, OffCpu>();
  const offCpu: OffCpu[] = [];
  for (const event of events) {
    if (event.name === "sched:sched_switch") {
      const match = /prev_pid=(\d+) .*prev_state=(\S+) ==> next_comm=.* next_pid=(\d+)/.exec(
        event.detail,
      );
      if (match === null) continue;
      const [, previous, state, next] = match;
      if (ours.has(event.pid)) {
        away.set(previous!, {
          start: event.time,
          state: state!,
          stack: event.stack.slice(0, 3).join(" < "),
        });
      }
      const back = away.get(next!);
      if (back !== undefined) {
        back.end = event.time;
        offCpu.push(back);
        away.delete(next!);
      }
    } else if (event.name === "sched:sched_wakeup") {
      const target = /pid=(\d+)/.exec(event.detail)?.[1];
      const sleeping = target === undefined ? undefined : away.get(target);
      if (sleeping !== undefined) sleeping.woken ??= event.time;
    }
  }
  offCpu.sort((left, right) => left.start - right.start);
  const first = events[0]!.time;
  const last = events[events.length - 1]!.time;
  const inside = slow.filter((write) => write.start > first && write.end < last);
  let runnable = 0;
  let blocked = 0;
  let excessInside = 0;
  let cpuBound = 0;
  let diskBound = 0;
  const blockedIn = new Map<string, number>();
  let from = 0;
  for (const write of inside) {
    const held = excess(write);
    excessInside += held;
    let waiting = 0;
    let sleeping = 0;
    while (from < offCpu.length && offCpu[from]!.start < write.start - 100_000) from++;
    for (let index = from; index < offCpu.length && offCpu[index]!.start < write.end; index++) {
      const span = offCpu[index]!;
      if (span.end === undefined || span.end <= write.start) continue;
      const start = Math.max(span.start, write.start);
      const end = Math.min(span.end, write.end);
      if (span.state.startsWith("R")) {
        waiting += end - start;
        continue;
      }
      // A sleep nothing ended inside the window (an idle thread) is not on the path.
      if (span.woken === undefined) continue;
      const woken = Math.min(Math.max(span.woken, start), end);
      waiting += end - woken;
      if (span.state === "D") {
        sleeping += woken - start;
        blockedIn.set(span.stack, (blockedIn.get(span.stack) ?? 0) + woken - start);
      }
    }
    runnable += waiting;
    blocked += sleeping;
    if (waiting >= held / 2) cpuBound++;
    else if (sleeping >= held / 2) diskBound++;
  }
  console.log(
    `\nscheduler (perf), ${inside.length} slow writes inside its window, ${(excessInside / 1000).toFixed(0)} ms above the median in all:`,
  );
  console.log(
    `  threads of G/P/S runnable but not running: ${(runnable / 1000).toFixed(0)} ms (summed over threads); blocked in the kernel (D): ${(blocked / 1000).toFixed(0)} ms`,
  );
  console.log(
    `  slow writes whose runnable wait covers half their excess: ${cpuBound}; else whose blocking does: ${diskBound}; neither: ${inside.length - cpuBound - diskBound}`,
  );
  for (const [stack, time] of [...blockedIn]
    .sort((left, right) => right[1] - left[1])
    .slice(0, 5)) {
    console.log(`  ${(time / 1000).toFixed(1).padStart(7)} ms blocked in ${stack}`);
  }
}
