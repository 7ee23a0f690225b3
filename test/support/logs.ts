// Support for reading a test cluster's logs: every process of a LocalCluster writes to
// `<dataDir>/logs/<id>.log` (and nats-server to `nats-server.log`). Tests that assert
// something never happened search every one of them, so that a new process is covered
// without the test naming it.

import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";

export interface LogHit {
  file: string;
  line: string;
}

/** Every line, in every log file of the cluster, that contains one of `needles`. */
export async function logLinesContaining(
  dataDir: string,
  needles: readonly string[],
): Promise<LogHit[]> {
  const directory = join(dataDir, "logs");
  const files = (await readdir(directory)).filter((file) => file.endsWith(".log")).sort();
  const hits: LogHit[] = [];
  for (const file of files) {
    const text = await readFile(join(directory, file), "utf8");
    for (const line of text.split("\n")) {
      if (needles.some((needle) => line.includes(needle))) hits.push({ file, line });
    }
  }
  return hits;
}

/** The names of the cluster's log files, to show that a search covered them. */
export async function logFiles(dataDir: string): Promise<string[]> {
  return (await readdir(join(dataDir, "logs"))).filter((file) => file.endsWith(".log")).sort();
}
