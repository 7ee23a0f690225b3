// Scanning one segment's bytes: the intact prefix of records and the first damage after
// it. Pure, like the format it reads; recovery decides what the damage means (a torn tail
// in the last segment, corruption anywhere else) from the facts this returns.
//
// A segment's records must carry the op numbers header.firstOpNum, +1, +2, …, and each
// the sync start of the record before it or its own op (the first record: its own op);
// a record whose checksum holds but that breaks either rule is inconsistent, which no
// torn write can produce. Records are checked with the record seed their segment's header
// gives (format.ts): bytes made without the segment's nonce never read as its records.

import { recordHeaderBytes, recordMarker } from "./constants.ts";
import { type Damage, decodeRecordAt, decodeSegmentHeader, type SegmentHeader } from "./format.ts";

export interface ScannedRecord {
  opNum: number;
  /** The op its sync region began at (format.ts). */
  syncStartOpNum: number;
  /** A copy, so that the records do not keep the whole segment's buffer alive. */
  payload: Uint8Array;
  /** Offset of the record's header in the file. */
  offset: number;
}

export interface SegmentScan {
  /** The header, or undefined when it is damaged (and then no record is read). */
  header: SegmentHeader | undefined;
  /** The intact records before the first damage, in file order. */
  records: ScannedRecord[];
  /** Length of the intact prefix: header and records up to the first damage. */
  intactBytes: number;
  /** The first damage; undefined when every byte of the file is intact. */
  damage: SegmentDamage | undefined;
}

export interface SegmentDamage extends Damage {
  offset: number;
  /** The op the damaged record should have held; undefined when the header is damaged. */
  opNumExpected: number | undefined;
}

export function scanSegment(bytes: Uint8Array): SegmentScan {
  const header = decodeSegmentHeader(bytes);
  if (header.kind !== "valid") {
    const damage = { ...header, offset: 0, opNumExpected: undefined };
    return { header: undefined, records: [], intactBytes: 0, damage };
  }
  const records: ScannedRecord[] = [];
  const { recordSeed } = header.value;
  let opNumExpected = header.value.firstOpNum;
  let offset = header.value.bytes;
  const damaged = (damage: SegmentDamage): SegmentScan => ({
    header: header.value,
    records,
    intactBytes: offset,
    damage,
  });
  while (offset < bytes.length) {
    const record = decodeRecordAt(bytes, offset, recordSeed);
    if (record.kind !== "valid") return damaged({ ...record, offset, opNumExpected });
    if (record.value.opNum !== opNumExpected) {
      const reason = `the record holds op ${record.value.opNum} where op ${opNumExpected} belongs`;
      return damaged({ kind: "inconsistent", reason, offset, opNumExpected });
    }
    const { syncStartOpNum } = record.value;
    const syncStartBefore = records.at(-1)?.syncStartOpNum;
    if (syncStartOpNum !== opNumExpected && syncStartOpNum !== syncStartBefore) {
      const reason = `the record of op ${opNumExpected} gives sync start ${syncStartOpNum}, neither its own op nor the ${syncStartBefore ?? "(none)"} of the record before it`;
      return damaged({ kind: "inconsistent", reason, offset, opNumExpected });
    }
    // A plain Uint8Array copy: neither a view that keeps the segment's buffer alive nor a
    // Buffer, whose slice() would share memory with whatever the caller hands it.
    const payload = new Uint8Array(record.value.payload);
    records.push({ opNum: opNumExpected, syncStartOpNum, payload, offset });
    opNumExpected++;
    offset = record.value.endOffset;
  }
  return { header: header.value, records, intactBytes: offset, damage: undefined };
}

/**
 * The length of the segment's runway: the zero bytes from its first damage to the end of
 * the file, after at least one intact record; 0 when there is no such run (no damage, no
 * record, or a non-zero byte after the damage). Whether zeros there are a runway or
 * damage is recovery's call: only the last segment may have one. Zeros never decode as a
 * record (the record marker is not zero), so a runway always shows as damage here.
 */
export function runwayBytesOf(bytes: Uint8Array, scan: SegmentScan): number {
  if (scan.damage === undefined || scan.records.length === 0) return 0;
  const start = scan.damage.offset;
  for (let offset = start; offset < bytes.length; offset++) {
    if (bytes[offset] !== 0) return 0;
  }
  return bytes.length - start;
}

/** A record found intact after damage (see intactRecordsAfter). */
export interface IntactCandidate {
  offset: number;
  opNum: number;
  syncStartOpNum: number;
}

/**
 * The records that check out with `recordSeed` after the damage, in file order, whose op
 * could follow the damaged one: at least `opNumDamaged`, and no further on than the bytes
 * left could hold. Found by their marker, at any offset past the damage's, so that a
 * record after damaged bytes of any length is found, and so are copies of records inside
 * payloads that check out with the same seed (only the segment's own records, when the
 * seed is a nonce's; anything record-shaped, with the seed 0 of version 2).
 */
export function* intactRecordsAfter(
  bytes: Uint8Array,
  damageOffset: number,
  recordSeed: number,
  opNumDamaged: number | undefined,
): Generator<IntactCandidate> {
  const haystack = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  const marker = Buffer.alloc(4);
  marker.writeUInt32LE(recordMarker, 0);
  const recordsFollowingMax = Math.ceil((bytes.length - damageOffset) / recordHeaderBytes);
  for (
    let candidate = haystack.indexOf(marker, damageOffset + 1);
    candidate !== -1;
    candidate = haystack.indexOf(marker, candidate + 1)
  ) {
    const record = decodeRecordAt(bytes, candidate, recordSeed);
    if (record.kind !== "valid") continue;
    const { opNum, syncStartOpNum } = record.value;
    const plausible =
      opNumDamaged === undefined ||
      (opNum >= opNumDamaged && opNum <= opNumDamaged + recordsFollowingMax);
    if (plausible) yield { offset: candidate, opNum, syncStartOpNum };
  }
}

/**
 * The offset of the first intact record after the damage that proves the damage is not a
 * torn tail, or undefined. Only a record that checks out with the segment's record seed
 * and whose op could follow the damaged one counts (intactRecordsAfter), so that a
 * record-shaped copy inside some payload (a block device stores anything, even another
 * journal) is not taken for proof: one made without the segment's nonce fails its
 * checksum, and in a segment of version 2 (no nonce) one whose op could not follow is
 * still ignored.
 *
 * Without `unsynced`, any such record is proof: a single write that stopped part way
 * leaves nothing intact after it. With it, the damage lies in the last group commit when
 * the record's sync start is one that the damaged op's own sync region could have (the
 * sync start of the last intact record before the damage, or the damaged op itself): its
 * pages reached the disk in any order, so an intact later page of the same commit proves
 * nothing. A record whose sync region began after the damaged op was written after a sync
 * that covered the damage, so it still proves damage, not a torn write.
 */
export function findIntactRecordAfter(
  bytes: Uint8Array,
  damage: SegmentDamage,
  recordSeed: number,
  unsynced?: { opNumDamaged: number; syncStartBefore: number | undefined },
): number | undefined {
  const opNumDamaged = damage.opNumExpected ?? unsynced?.opNumDamaged;
  for (const record of intactRecordsAfter(bytes, damage.offset, recordSeed, opNumDamaged)) {
    const { syncStartOpNum } = record;
    const sameCommit =
      unsynced !== undefined &&
      (syncStartOpNum === unsynced.opNumDamaged || syncStartOpNum === unsynced.syncStartBefore);
    if (!sameCommit) return record.offset;
  }
  return undefined;
}
