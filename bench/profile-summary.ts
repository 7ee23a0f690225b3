// Sums a V8 CPU profile (.cpuprofile, as bench/cpu-profile.cjs and --cpu-prof write them)
// by function: self time (samples whose top frame is the function) and inclusive time
// (samples with the function anywhere on the stack, counted once per sample), as a share
// of the process's busy time (all samples but `(idle)` and `(program)`). Meant for the
// profiles `npm run bench:write -- --profile DIR` leaves, one file per process and job:
//
//   node --import tsx bench/profile-summary.ts DIR/randwrite-qd32/primary.cpuprofile
//   node --import tsx bench/profile-summary.ts --top 40 --by url FILE...
//   node --import tsx bench/profile-summary.ts --inclusive --match journal FILE
//
// `--by function` (default) keys a row by function name, file and line; `--by url` by
// file only (where a module's time goes); `--match TEXT` keeps rows whose key contains
// TEXT. Times are from the profile's own sample deltas, so they carry the profiler's
// overhead: use shares to rank, not as CPU figures.

import { readFile } from "node:fs/promises";
import { basename } from "node:path";
import { parseArgs } from "node:util";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** Frames that are not the process doing work. */
const notBusy = new Set(["(idle)", "(program)"]);

/** A sample of the profiler's own work (cpu-profile.cjs stopping it): not the process's. */
function isProfiler(
  top: ProfileNode,
  byId: ReadonlyMap<number, ProfileNode>,
  parent: ReadonlyMap<number, number>,
): boolean {
  for (let id: number | undefined = top.id; id !== undefined; id = parent.get(id)) {
    if (byId.get(id)!.callFrame.url.endsWith("cpu-profile.cjs")) return true;
  }
  return false;
}

function keyOf(node: ProfileNode, by: "function" | "url"): string {
  const { functionName, url, lineNumber } = node.callFrame;
  const file = url
    .replace(/^file:\/\//, "")
    .replace(/^.*\/(node_modules|packages|services)\//, "$1/");
  if (by === "url") return file === "" ? functionName : file;
  const name = functionName === "" ? "(anonymous)" : functionName;
  return file === "" ? name : `${name} ${file}:${lineNumber + 1}`;
}

export interface Row {
  key: string;
  selfUs: number;
  inclusiveUs: number;
}

/** Self and inclusive microseconds per key, and the busy total, of one profile. */
export function summarise(
  profile: Profile,
  by: "function" | "url",
  exclude: ReadonlySet<string> = new Set(),
): { rows: Row[]; busyUs: number; totalUs: number } {
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const node of profile.nodes) {
    byId.set(node.id, node);
    for (const child of node.children ?? []) parent.set(child, node.id);
  }
  const rows = new Map<string, Row>();
  const row = (key: string): Row => {
    let found = rows.get(key);
    if (found === undefined) {
      found = { key, selfUs: 0, inclusiveUs: 0 };
      rows.set(key, found);
    }
    return found;
  };
  let busyUs = 0;
  let totalUs = 0;
  const seen = new Set<string>();
  for (let index = 0; index < profile.samples.length; index += 1) {
    // A sample's delta is the time since the previous one: charge it to this sample.
    const us = Math.max(0, profile.timeDeltas[index] ?? 0);
    totalUs += us;
    const top = byId.get(profile.samples[index]!);
    if (top === undefined) continue;
    if (notBusy.has(top.callFrame.functionName) || exclude.has(top.callFrame.functionName)) {
      continue;
    }
    if (isProfiler(top, byId, parent)) continue;
    busyUs += us;
    row(keyOf(top, by)).selfUs += us;
    seen.clear();
    for (let id: number | undefined = top.id; id !== undefined; id = parent.get(id)) {
      const node = byId.get(id)!;
      if (node.callFrame.functionName === "(root)") break;
      const key = keyOf(node, by);
      if (seen.has(key)) continue;
      seen.add(key);
      row(key).inclusiveUs += us;
    }
  }
  return { rows: [...rows.values()], busyUs, totalUs };
}

/**
 * Where the self time of functions named `name` comes from: the `depth` frames above it,
 * summed over samples, as a share of that function's self time.
 */
function printCallers(file: string, profile: Profile, name: string, depth: number, top: number) {
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const node of profile.nodes) {
    byId.set(node.id, node);
    for (const child of node.children ?? []) parent.set(child, node.id);
  }
  const paths = new Map<string, number>();
  let total = 0;
  for (let index = 0; index < profile.samples.length; index += 1) {
    const node = byId.get(profile.samples[index]!);
    if (node === undefined || node.callFrame.functionName !== name) continue;
    const us = Math.max(0, profile.timeDeltas[index] ?? 0);
    total += us;
    const frames: string[] = [];
    let id = parent.get(node.id);
    while (id !== undefined && frames.length < depth) {
      frames.push(keyOf(byId.get(id)!, "function"));
      id = parent.get(id);
    }
    const path = frames.join(" < ");
    paths.set(path, (paths.get(path) ?? 0) + us);
  }
  process.stdout.write(`${basename(file)}: ${name}, ${(total / 1000).toFixed(0)} ms self\n`);
  for (const [path, us] of [...paths].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    process.stdout.write(`  ${((100 * us) / total).toFixed(1).padStart(5)}  ${path}\n`);
  }
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      top: { type: "string", default: "30" },
      by: { type: "string", default: "function" },
      inclusive: { type: "boolean", default: false },
      match: { type: "string" },
      callers: { type: "string" },
      exclude: { type: "string", default: "" },
      depth: { type: "string", default: "3" },
    },
  });
  const by = values.by === "url" ? "url" : "function";
  const top = Number(values.top);
  for (const file of positionals) {
    const profile = JSON.parse(await readFile(file, "utf8")) as Profile;
    if (values.callers !== undefined) {
      printCallers(file, profile, values.callers, Number(values.depth), top);
      continue;
    }
    const exclude = new Set(values.exclude.split(",").filter((name) => name !== ""));
    const { rows, busyUs, totalUs } = summarise(profile, by, exclude);
    const sortKey = values.inclusive ? "inclusiveUs" : "selfUs";
    const shown = rows
      .filter((row) => values.match === undefined || row.key.includes(values.match))
      .sort((a, b) => b[sortKey] - a[sortKey])
      .slice(0, top);
    process.stdout.write(
      `${basename(file)}: busy ${(busyUs / 1000).toFixed(0)} ms of ${(totalUs / 1000).toFixed(0)} ms sampled\n`,
    );
    process.stdout.write("  self %  incl %  function\n");
    for (const row of shown) {
      const self = ((100 * row.selfUs) / busyUs).toFixed(1).padStart(6);
      const inclusive = ((100 * row.inclusiveUs) / busyUs).toFixed(1).padStart(6);
      process.stdout.write(`  ${self}  ${inclusive}  ${row.key}\n`);
    }
  }
}

if (process.argv[1] !== undefined && import.meta.url.endsWith(basename(process.argv[1]))) {
  await main();
}
