// The head node's session number: one more than the last start's, kept in the data
// directory and made durable before the node serves. Secondaries ignore replication
// messages from a primary session older than one they have seen, which is what stops a
// delayed message from a primary's previous life from rewriting their logs.

import { open, readFile, rename } from "node:fs/promises";
import { join } from "node:path";

const sessionFileName = "session";
const sessionMax = 0xffff_ffff;

/** `above`: a session the result must exceed besides the stored one (the node's own). */
export async function nextSession(dataDir: string, above = 0): Promise<number> {
  const path = join(dataDir, sessionFileName);
  let previous = 0;
  try {
    const text = (await readFile(path, "utf8")).trim();
    previous = Number(text);
    if (!Number.isSafeInteger(previous) || previous < 0 || previous >= sessionMax) {
      throw new Error(
        `${path} holds ${JSON.stringify(text)}, not a session number below ${sessionMax}`,
      );
    }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
  const session = Math.max(previous, above) + 1;
  const temporary = `${path}.tmp`;
  const file = await open(temporary, "w");
  try {
    await file.writeFile(`${session}\n`);
    await file.sync();
  } finally {
    await file.close();
  }
  await rename(temporary, path);
  const directory = await open(dataDir, "r");
  try {
    await directory.sync();
  } finally {
    await directory.close();
  }
  return session;
}
