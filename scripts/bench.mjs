#!/usr/bin/env node
// `npm run bench:micro [filter]`: runs every component benchmark (packages/*/bench/*.bench.ts and
// services/*/bench/*.bench.ts), one after another so they do not compete for the two
// cores, each in its own process with --expose-gc. A filter keeps only the files whose
// path contains it, e.g. `npm run bench:micro btree`.

import { spawnSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const filter = process.argv[2] ?? "";

const files = [];
for (const group of ["packages", "services"]) {
  for (const name of readdirSync(join(root, group))) {
    const benchDir = join(root, group, name, "bench");
    if (!existsSync(benchDir)) continue;
    for (const file of readdirSync(benchDir)) {
      if (file.endsWith(".bench.ts")) files.push(join(benchDir, file));
    }
  }
}
const selected = files.filter((file) => relative(root, file).includes(filter)).sort();
if (selected.length === 0) {
  process.stderr.write(`bench: no benchmark matches ${JSON.stringify(filter)}\n`);
  process.exit(2);
}
let failed = 0;
for (const file of selected) {
  process.stdout.write(`\n=== ${relative(root, file)}\n`);
  const result = spawnSync(process.execPath, ["--expose-gc", "--import", "tsx", file], {
    cwd: root,
    stdio: "inherit",
  });
  if (result.status !== 0) failed++;
}
process.exit(failed === 0 ? 0 : 1);
