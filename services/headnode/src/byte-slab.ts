// Copies of small byte strings, packed into shared slabs, and the rule for when large
// write data need not be copied at all. Write data arrives as views of message buffers,
// which the head node must own before keeping (a note lives until its bytes are flushed
// and a checkpoint releases it). One ArrayBuffer per 4 KiB note made every write a
// separate external allocation for V8 to track, promote and sweep; copies into a shared
// slab are views of one large buffer instead (a kept 4 KiB copy measured 2.2 µs against
// 3.5–4.3 µs; docs/performance.md, "Write path").
//
// Model: a slab is filled front to back and never reused; it is freed by the garbage
// collector once no view of it is left. Notes are released in op order, so slabs die
// in the order they were filled and a slab holds at most `slabBytes` beyond the notes
// alive in it. Bytes larger than `copyInSlabBytesMax` get a buffer of their own: one
// large write must not pin a slab, nor a slab waste its tail on it.
//
// Kept in place (`keepAll`, `keepNotes`): large data (over `copyInSlabBytesMax`) that lies in
// a buffer proven private (by default a buffer a link decoder assembled one frame into:
// protocol link.ts, `isAssembledByLink`) is kept as the view it is, not copied. Private
// means nothing else writes into that memory or reuses it: the decoder wrote it once,
// before handing the frame out, and keeps no reference; msgpack decoding and the handler
// only read it; the core never writes into note data. Anything not proven private (a
// NATS message, whose buffer nats.js may share with other messages; a view of a socket
// read; a pooled buffer) is copied as before. A kept view pins its whole buffer, so the
// large private data of one message must make up at least three quarters of it
// (`keptShareMin`): the frame then holds at most a third more than the data kept from it
// (the rest is its headers and small data, which are copied into slabs as always; a
// client's batch of 1 MiB writes is all but a few hundred bytes data). The log counts
// only the data (`noteBytes`), so memory beyond what it counts stays within that third
// while a frame's notes all live; notes are released in op order, so beyond it a frame
// is pinned by its later notes only, one frame per replica at a time.

import { isAssembledByLink } from "@ballast/protocol";

/** The size of one slab. */
export const slabBytes = 1024 * 1024;

/** Larger byte strings are copied into a buffer of their own (or kept in place). */
export const copyInSlabBytesMax = 64 * 1024;

/** Kept views must make up at least this share of the buffer they pin. */
export const keptShareMin = 0.75;

/** Whether the memory a view lies in is proven private (see the module header). */
export type PrivateTest = (bytes: Uint8Array) => boolean;

/**
 * Which of `parts` (the data of one message; undefined for none) may be kept as they are:
 * each over `copyInSlabBytesMax`, private, and together at least `keptShareMin` of the
 * buffer they lie in. Parts in different buffers are judged per buffer.
 */
export function keptInPlace(
  parts: readonly (Uint8Array | undefined)[],
  isPrivate: PrivateTest,
): boolean[] {
  const kept = parts.map(
    (part) => part !== undefined && part.byteLength > copyInSlabBytesMax && isPrivate(part),
  );
  if (!kept.includes(true)) return kept;
  const bytesByBuffer = new Map<ArrayBufferLike, number>();
  parts.forEach((part, index) => {
    if (!kept[index]) return;
    bytesByBuffer.set(part!.buffer, (bytesByBuffer.get(part!.buffer) ?? 0) + part!.byteLength);
  });
  return kept.map((keep, index) => {
    if (!keep) return false;
    const buffer = parts[index]!.buffer;
    return bytesByBuffer.get(buffer)! >= buffer.byteLength * keptShareMin;
  });
}

export class ByteSlab {
  private slab: Uint8Array = new Uint8Array(0);
  private used = 0;

  constructor(private readonly isPrivate: PrivateTest = isAssembledByLink) {}

  /** A copy of `bytes` that shares no memory with it (a view into a slab when small). */
  copy(bytes: Uint8Array): Uint8Array {
    const length = bytes.byteLength;
    if (length > copyInSlabBytesMax) return Uint8Array.prototype.slice.call(bytes);
    if (this.used + length > this.slab.byteLength) {
      // Not zero-filled: only the bytes copied in are ever viewed.
      this.slab = Buffer.allocUnsafeSlow(slabBytes);
      this.used = 0;
    }
    const view = this.slab.subarray(this.used, this.used + length);
    view.set(bytes);
    this.used += length;
    return view;
  }

  /**
   * The data of a message's notes to keep, when the replica already holds every op up
   * to `lastHeldOpNum`: only notes past it may be kept in place (judged together, as
   * `keepAll`); the rest are copied. A resend is mostly notes the replica holds and
   * skips, and one new note kept in place would pin the whole resent frame while the
   * log counts only its own data.
   */
  keepNotes(
    notes: readonly { opNum: number; data?: Uint8Array }[],
    lastHeldOpNum: number,
  ): (Uint8Array | undefined)[] {
    const candidates = notes.map((note) => (note.opNum > lastHeldOpNum ? note.data : undefined));
    const kept = this.keepAll(candidates);
    return notes.map((note, index) => {
      if (note.data === undefined) return undefined;
      return candidates[index] === undefined ? this.copy(note.data) : kept[index];
    });
  }

  /** The data of one message to keep: in place where `keptInPlace` allows, else copied. */
  keepAll(parts: readonly (Uint8Array | undefined)[]): (Uint8Array | undefined)[] {
    const kept = keptInPlace(parts, this.isPrivate);
    return parts.map((part, index) => (part === undefined || kept[index] ? part : this.copy(part)));
  }
}
