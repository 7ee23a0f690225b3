// Where a QD1 write's wall time goes, stage by stage, from the files of
// `npm run bench:write -- --jobs randwrite-qd1 --latency DIR` with the hooks of
// bench/latency-hooks.patch applied (see bench/latency-trace.cjs):
//
//   node --import tsx bench/latency-breakdown.ts DIR/randwrite-qd1-0
//
// It merges the events of the gateway (G), the primary (P) and the secondary (S) in
// time order, cuts them into writes at each NBD request's arrival (`G:g.data`; at QD1
// one write is in flight at a time), and for the most common sequence of events prints
// the time from each event to the next: median, mean and 90th percentile, in µs.

import { existsSync, readFileSync } from "node:fs";

const directory = process.argv[2];
if (directory === undefined) throw new Error("usage: latency-breakdown.ts DIR/<job>-<round>");
const roles: Record<string, string> = { "gateway-1": "G", primary: "P", secondary: "S" };
const events: [number, string][] = [];
for (const [file, tag] of Object.entries(roles)) {
  const path = `${directory}/${file}.json`;
  if (!existsSync(path)) continue;
  const { names, times } = JSON.parse(readFileSync(path, "utf8")) as {
    names: string[];
    times: number[];
  };
  for (let index = 0; index < names.length; index++) {
    events.push([times[index]! / 10, `${tag}:${names[index]}`]);
  }
}
events.sort((left, right) => left[0] - right[0]);
const writes: [number, string][][] = [];
let current: [number, string][] | undefined;
for (const event of events) {
  if (event[1] === "G:g.data") {
    current = [event];
    writes.push(current);
  } else current?.push(event);
}
const whole = writes.filter(
  (write) =>
    write.filter((event) => event[1] === "G:g.write").length === 1 &&
    write.some((event) => event[1] === "G:g.uncork"),
);
const sequences = new Map<string, [number, string][][]>();
for (const write of whole) {
  const key = write.map((event) => event[1]).join(" ");
  sequences.set(key, [...(sequences.get(key) ?? []), write]);
}
const ranked = [...sequences.values()].sort((left, right) => right.length - left.length);
const percentile = (values: number[], p: number) => {
  const sorted = [...values].sort((left, right) => left - right);
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
};
const main = ranked[0];
if (main === undefined) throw new Error("no whole write found");
console.log(
  `${whole.length} whole writes, ${ranked.length} distinct sequences; the most common (${main.length}):`,
);
console.log("from               to                    p50   mean    p90 (µs)");
const steps = main[0]!.map((event) => event[1]);
for (let index = 1; index < steps.length; index++) {
  const spans = main.map((write) => write[index]![0] - write[index - 1]![0]);
  const mean = spans.reduce((sum, span) => sum + span, 0) / spans.length;
  console.log(
    `${steps[index - 1]!.padEnd(18)} ${steps[index]!.padEnd(18)} ${percentile(spans, 0.5)
      .toFixed(0)
      .padStart(
        6,
      )} ${mean.toFixed(0).padStart(6)} ${percentile(spans, 0.9).toFixed(0).padStart(6)}`,
  );
}
const totals = whole.map((write) => write[write.length - 1]![0] - write[0]![0]);
console.log(
  `whole write (G:g.data to the last event): p50 ${percentile(totals, 0.5).toFixed(0)} µs, p99 ${percentile(totals, 0.99).toFixed(0)} µs`,
);
