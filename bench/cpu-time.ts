// CPU time of a process from /proc/<pid>/stat, for the benchmarks that compare it.

import { readFile } from "node:fs/promises";

/** Clock ticks per second of /proc/<pid>/stat times (USER_HZ: 100 on Linux). */
const clockTicksPerSecond = 100;

/** utime + stime of a process, in seconds. */
export async function cpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8");
  // The command name is in parentheses and may hold spaces: fields count after it.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // Fields 14 and 15 of stat(5) (utime, stime) are 12 and 13 after the name.
  return (Number(fields[11]) + Number(fields[12])) / clockTicksPerSecond;
}
