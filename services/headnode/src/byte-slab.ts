// Copies of small byte strings, packed into shared slabs. Write data arrives as views of
// NATS message buffers, which the head node must copy before keeping (a note lives until
// its bytes are flushed and a checkpoint releases it). One ArrayBuffer per 4 KiB note
// made every write a separate external allocation for V8 to track, promote and sweep;
// copies into a shared slab are views of one large buffer instead (a kept 4 KiB copy
// measured 2.2 µs against 3.5–4.3 µs; docs/performance.md, "Write path").
//
// Model: a slab is filled front to back and never reused; it is freed by the garbage
// collector once no view of it is left. Notes are released in op order, so slabs die
// in the order they were filled and a slab holds at most `slabBytes` beyond the notes
// alive in it. Bytes larger than `copyInSlabBytesMax` get a buffer of their own: one
// large write must not pin a slab, nor a slab waste its tail on it.

/** The size of one slab. */
export const slabBytes = 1024 * 1024;

/** Larger byte strings are copied into a buffer of their own. */
export const copyInSlabBytesMax = 64 * 1024;

export class ByteSlab {
  private slab: Uint8Array = new Uint8Array(0);
  private used = 0;

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
}
