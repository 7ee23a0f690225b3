// Notes as the replica core holds them: the protocol's Note, owned (its data is not a
// view into a message buffer). Two notes with the same op number are the same note only
// if they were assigned in the same epoch and primary session with the same content;
// anything else means one of them came from a primary whose op was never committed.

import { crc32c, type Note as WireNote } from "@ballast/protocol";

export type Note = WireNote;
export type NoteKind = Note["kind"];

export function sameNote(a: Note, b: Note): boolean {
  return (
    a.opNum === b.opNum &&
    a.epoch === b.epoch &&
    a.session === b.session &&
    a.kind === b.kind &&
    a.offset === b.offset &&
    a.length === b.length &&
    a.checksum === b.checksum
  );
}

export function noteChecksum(data: Uint8Array | undefined): number {
  return data === undefined ? 0 : crc32c(data);
}

/** The bytes of note data the core holds in memory for this note. */
export function noteBytes(note: Note): number {
  return note.data?.byteLength ?? 0;
}
