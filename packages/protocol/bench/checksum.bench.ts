// What a CRC32C costs read from the bytes, against combining one already known
// (`crc32cCombine`), by length. The head nodes combine a write's known CRC32C into its
// journal record and into the flush's chunk rather than reading its bytes again
// (journal/format.ts, replica.ts); this says from what length that wins. A combine's
// cost depends on the length's bits (one matrix product per set bit), not its size, so
// lengths with few and with many set bits are both measured.
//
//   npm run bench:micro protocol/bench
//   node --import tsx packages/protocol/bench/checksum.bench.ts
//
// Figures are CPU time of this process per operation, the best of `repeats` runs (the
// steadier figure on a shared machine), after a warm-up that lets the JIT settle.

import { crc32c, crc32cCombine } from "../src/checksum.ts";

const repeats = 5;
/** Bytes read per timed run of the direct pass, so that each run lasts a few ms. */
const bytesPerRun = 64 * 1024 * 1024;
const combinesPerRun = 200_000;

const lengths = [
  64,
  256,
  512,
  1024,
  4096,
  4095,
  16 * 1024,
  64 * 1024,
  1024 * 1024,
  1024 * 1024 - 1,
];

function cpuNs(run: () => void): number {
  const before = process.cpuUsage();
  run();
  const used = process.cpuUsage(before);
  return (used.user + used.system) * 1000;
}

function best(run: () => void, operations: number): number {
  run(); // warm-up
  let least = Number.POSITIVE_INFINITY;
  for (let repeat = 0; repeat < repeats; repeat++) least = Math.min(least, cpuNs(run) / operations);
  return least;
}

let sink = 0;
const data = new Uint8Array(1024 * 1024).map((_, at) => (at * 2_654_435_761) >>> 24);

console.log("bytes      direct (ns)  combine (ns)  direct / combine");
for (const length of lengths) {
  const part = data.subarray(0, length);
  const passes = Math.max(1, Math.floor(bytesPerRun / Math.max(length, 4096)));
  const direct = best(() => {
    for (let pass = 0; pass < passes; pass++) sink ^= crc32c(part, sink);
  }, passes);
  const known = crc32c(part);
  const combine = best(() => {
    for (let index = 0; index < combinesPerRun; index++) {
      sink = crc32cCombine(sink, known, length);
    }
  }, combinesPerRun);
  console.log(
    `${String(length).padEnd(10)} ${direct.toFixed(0).padStart(11)}  ${combine.toFixed(0).padStart(12)}  ${(direct / combine).toFixed(2).padStart(16)}`,
  );
}
if (sink === 0.5) console.log(sink); // keeps the loops from being optimised away
