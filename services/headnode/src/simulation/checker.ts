// The simulation's checkers. The committed history (op → note) is learned from every
// replica's commits and must agree across replicas; the model of the partition's bytes is
// that history replayed in op order, and every read must equal the model at the op the
// read says it reflects.

import { limits } from "@ballast/protocol";
import type { Note } from "../replica/note.ts";
import { noteChecksum, sameNote } from "../replica/note.ts";
import type { ClientRequest } from "../replica/replica.ts";

export interface Violation {
  check: string;
  message: string;
}

const violationsMax = 20;

export class Checker {
  readonly violations: Violation[] = [];
  /** The committed history: the note each op committed as. */
  private readonly history = new Map<number, Note>();
  private readonly acknowledgedOps: { opNum: number; expected: Note }[] = [];
  /** The model at `modelOpNum`: per sector, the byte value pattern's op and data. */
  private model = new Map<number, Uint8Array>();
  private modelOpNum = 0;

  fail(check: string, message: string): void {
    if (this.violations.length < violationsMax) this.violations.push({ check, message });
  }

  committed(nodeId: string, note: Note): void {
    const known = this.history.get(note.opNum);
    if (known === undefined) {
      this.history.set(note.opNum, { ...note });
      return;
    }
    if (!sameNote(known, note)) {
      this.fail(
        "agreement",
        `${nodeId} committed op ${note.opNum} as a different note than another replica`,
      );
    }
  }

  /** A client was told ops [first, last] committed for this request. */
  acknowledged(
    request: Exclude<ClientRequest, { kind: "flush" }>,
    opNumFirst: number,
    opNumLast: number,
  ): void {
    const expected: Note[] =
      request.kind === "write"
        ? request.writes.map((write, index) => ({
            opNum: opNumFirst + index,
            epoch: 0,
            session: 0,
            kind: "write" as const,
            offset: write.offset,
            length: write.data.byteLength,
            checksum: noteChecksum(write.data),
          }))
        : request.ranges.map((range, index) => ({
            opNum: opNumFirst + index,
            epoch: 0,
            session: 0,
            kind: request.kind,
            offset: range.offset,
            length: range.length,
            checksum: 0,
          }));
    if (opNumLast - opNumFirst + 1 !== expected.length) {
      this.fail(
        "acknowledged",
        `request acknowledged ops ${opNumFirst}-${opNumLast} for ${expected.length} entries`,
      );
    }
    for (const note of expected) {
      this.acknowledgedOps.push({ opNum: note.opNum, expected: note });
      const committed = this.history.get(note.opNum);
      if (committed === undefined) {
        this.fail(
          "acknowledged",
          `op ${note.opNum} was acknowledged before any replica committed it`,
        );
      } else if (!sameContent(committed, note)) {
        this.fail(
          "acknowledged",
          `op ${note.opNum} was acknowledged but committed with other content`,
        );
      }
    }
  }

  allAcknowledgedCommitted(commitOpNum: number): void {
    for (const { opNum } of this.acknowledgedOps) {
      if (opNum > commitOpNum) {
        this.fail(
          "durability",
          `acknowledged op ${opNum} is past the settled commit point ${commitOpNum}`,
        );
      }
    }
  }

  /** A read of [offset, offset + bytes.length) returned `bytes` as of op `asOfOpNum`. */
  read(offset: number, bytes: Uint8Array, asOfOpNum: number, acknowledgedBefore: number): void {
    if (asOfOpNum < acknowledgedBefore) {
      this.fail(
        "read",
        `read reflects op ${asOfOpNum}, older than op ${acknowledgedBefore} acknowledged before it`,
      );
    }
    const model = this.modelAt(asOfOpNum);
    if (model === undefined) return;
    for (let at = 0; at < bytes.length; at += limits.sectorBytes) {
      const sector = (offset + at) / limits.sectorBytes;
      const expected = model.get(sector);
      const actual = bytes.subarray(at, at + limits.sectorBytes);
      const matches =
        expected === undefined
          ? actual.every((byte) => byte === 0)
          : Buffer.compare(expected, actual) === 0;
      if (!matches) {
        this.fail("read", `sector ${sector} read as of op ${asOfOpNum} differs from the model`);
        return;
      }
    }
  }

  /** The model replayed to `opNum`, or undefined if the history has a gap before it. */
  private modelAt(opNum: number): Map<number, Uint8Array> | undefined {
    if (opNum < this.modelOpNum) {
      this.model = new Map();
      this.modelOpNum = 0;
    }
    while (this.modelOpNum < opNum) {
      const note = this.history.get(this.modelOpNum + 1);
      if (note === undefined) {
        this.fail(
          "history",
          `op ${this.modelOpNum + 1} is below a read's commit point but no replica reported committing it`,
        );
        return undefined;
      }
      this.modelOpNum++;
      const first = note.offset / limits.sectorBytes;
      const count = note.length / limits.sectorBytes;
      for (let index = 0; index < count; index++) {
        if (note.kind === "write") {
          const start = index * limits.sectorBytes;
          this.model.set(first + index, note.data!.slice(start, start + limits.sectorBytes));
        } else if (note.kind === "trim" || note.kind === "zeroes") {
          this.model.delete(first + index);
        }
      }
    }
    return this.model;
  }
}

function sameContent(committed: Note, expected: Note): boolean {
  return (
    committed.kind === expected.kind &&
    committed.offset === expected.offset &&
    committed.length === expected.length &&
    committed.checksum === expected.checksum
  );
}
