// What a clone's reader needs of a partition: the ranges it has never mapped.
//
// A clone (see services/coordinator clones.ts) starts with empty partitions and reads
// its parent snapshot's bytes wherever it has never mapped a byte. The extent tree
// already tells "never mapped" from "zeros": a write maps its range to journal or chunk
// bytes, and a trim or write-zeroes maps its range to an explicit zero extent
// (`{kind: "zero"}`), never removing the mapping, so that replaying an older note cannot
// bring data back. Nothing removes extents from a tree (compaction and flushes only
// relocate them, a rollback copies a snapshot's tree whole), so a hole in a lookup is a
// range no mutation ever covered, on every replica alike, after a failover, a restart or
// a rebuild from a checkpoint, which stores zero extents like any other. So no replica
// needs to know it serves a clone: the rule is the same for every volume, and a volume
// that is no clone simply never asks for the unmapped ranges.
//
// A rollback of a clone to its own snapshot copies that snapshot's tree, holes and all,
// so the rolled-back clone falls through exactly where the snapshot did.

import type { ReadPart } from "./metadata.ts";

export interface ByteRange {
  offset: number;
  length: number;
}

/** The unmapped parts of a planned read, in offset order, adjacent ones merged. */
export function unmappedRanges(parts: readonly ReadPart[]): ByteRange[] {
  const ranges: ByteRange[] = [];
  for (const part of parts) {
    if (part.kind !== "zero" || part.unmapped !== true) continue;
    const last = ranges[ranges.length - 1];
    if (last !== undefined && last.offset + last.length === part.offset) {
      last.length += part.length;
    } else {
      ranges.push({ offset: part.offset, length: part.length });
    }
  }
  return ranges;
}
