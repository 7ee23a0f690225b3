// Page faults per fresh 1 MiB buffer, as a process that receives large messages makes
// them (Buffer.allocUnsafeSlow, filled, a few dozen alive at once): shows what glibc's
// malloc settings (runtime constants.ts, serviceMallocTunables) change.
//
//   node bench/malloc-faults.cjs
//   GLIBC_TUNABLES=glibc.malloc.mmap_threshold=16777216:glibc.malloc.trim_threshold=33554432 \
//     node bench/malloc-faults.cjs

const { readFileSync } = require("node:fs");

const buffers = 3000;
const mebibyte = 1024 * 1024;

/** Minor page faults of this process so far (/proc/self/stat, field 10). */
function minorFaults() {
  const stat = readFileSync("/proc/self/stat", "utf8");
  return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[7]);
}

const alive = [];
const before = minorFaults();
for (let index = 0; index < buffers; index++) {
  const buffer = Buffer.allocUnsafeSlow(mebibyte);
  buffer.fill(index & 0xff);
  alive.push(buffer);
  if (alive.length > 16) alive.splice(0, 8);
}
const faults = (minorFaults() - before) / buffers;
console.log(
  `${faults.toFixed(1)} page faults per 1 MiB buffer (GLIBC_TUNABLES=${process.env.GLIBC_TUNABLES ?? ""})`,
);
