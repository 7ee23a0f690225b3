// Reads of a clone: which bytes fall through to the parent snapshot.
//
// A clone (services/coordinator clones.ts) is a volume of its own whose description names
// a parent snapshot and an `overlap`. Its primaries answer a read with the clone's own
// bytes (zeros where it never mapped anything) and the never-mapped ranges; below the
// overlap those ranges take the parent snapshot's bytes, and past it they stay zeros (a
// clone shrunk and grown again must not show its parent's tail). The snapshot is
// immutable, so reading it after the clone's answer races with nothing: the merged read
// is the clone's state when its primary answered.

export interface ByteRange {
  offset: number;
  length: number;
}

/** The parts of `unmapped` below `overlap`: what is read from the parent. */
export function fallThroughRanges(unmapped: readonly ByteRange[], overlap: number): ByteRange[] {
  const ranges: ByteRange[] = [];
  for (const range of unmapped) {
    const end = Math.min(range.offset + range.length, overlap);
    if (end > range.offset) ranges.push({ offset: range.offset, length: end - range.offset });
  }
  return ranges;
}
