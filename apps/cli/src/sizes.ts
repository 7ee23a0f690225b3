// Sizes on the command line: a whole number with an optional binary unit, e.g. 512,
// 64KiB, 10GiB, 1TiB (K, M, G and T mean the same as KiB, MiB, GiB and TiB).

const units: Record<string, number> = {
  "": 1,
  b: 1,
  k: 2 ** 10,
  kib: 2 ** 10,
  m: 2 ** 20,
  mib: 2 ** 20,
  g: 2 ** 30,
  gib: 2 ** 30,
  t: 2 ** 40,
  tib: 2 ** 40,
};

export class SizeError extends Error {
  override readonly name = "SizeError";
}

export function parseSize(text: string, what = "size"): number {
  const match = /^\s*(\d+)\s*([a-z]*)\s*$/i.exec(text);
  const multiplier = match ? units[match[2]!.toLowerCase()] : undefined;
  if (match === null || multiplier === undefined) {
    throw new SizeError(
      `${what} must be a whole number with an optional unit (KiB, MiB, GiB, TiB), got ${JSON.stringify(text)}`,
    );
  }
  const bytes = Number(match[1]) * multiplier;
  if (!Number.isSafeInteger(bytes)) throw new SizeError(`${what} ${text} is too large`);
  return bytes;
}

export function formatSize(bytes: number): string {
  for (const [unit, size] of [
    ["TiB", 2 ** 40],
    ["GiB", 2 ** 30],
    ["MiB", 2 ** 20],
    ["KiB", 2 ** 10],
  ] as const) {
    if (bytes >= size && bytes % size === 0) return `${bytes / size}${unit}`;
  }
  return `${bytes}B`;
}

/**
 * A byte count for people, in the largest unit it reaches: whole when it is a whole
 * number of that unit, else to one decimal (capacities and usage are rarely round).
 */
export function formatBytes(bytes: number): string {
  for (const [unit, size] of [
    ["TiB", 2 ** 40],
    ["GiB", 2 ** 30],
    ["MiB", 2 ** 20],
    ["KiB", 2 ** 10],
  ] as const) {
    if (bytes >= size)
      return bytes % size === 0 ? `${bytes / size}${unit}` : `${(bytes / size).toFixed(1)}${unit}`;
  }
  return `${bytes}B`;
}
