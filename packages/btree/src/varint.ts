// Unsigned LEB128 varints for safe integers: seven bits per byte, least significant
// group first, the high bit set on every byte but the last. A value below 128 takes one
// byte, and no safe integer (below 2^53) needs more than eight. The arithmetic stays in
// doubles above 2^31, where JavaScript's bitwise operators would truncate.

/** Eight groups of seven bits hold 56 bits, enough for any safe integer. */
export const varintBytesMax = 8;

const twoTo31 = 0x80000000;

/** Writes `value` at `position` of `bytes` and returns the position after it. */
export function writeVarint(bytes: Uint8Array, position: number, value: number): number {
  let rest = value;
  let at = position;
  if (rest < twoTo31) {
    while (rest >= 0x80) {
      bytes[at] = (rest & 0x7f) | 0x80;
      rest >>>= 7;
      at += 1;
    }
  } else {
    while (rest >= 0x80) {
      bytes[at] = (rest % 0x80) | 0x80;
      rest = Math.floor(rest / 0x80);
      at += 1;
    }
  }
  bytes[at] = rest;
  return at + 1;
}

/** How many bytes `writeVarint` takes for `value`. */
export function varintByteLength(value: number): number {
  let length = 1;
  let rest = value;
  while (rest >= 0x80) {
    rest = Math.floor(rest / 0x80);
    length += 1;
  }
  return length;
}

/**
 * Reads varints and single bytes from a bounded window of a byte array. A read that
 * would run past the window, or a varint beyond the safe integers, returns -1 and leaves
 * the reader's `failed` flag set: the caller decides what error that is, and knows the
 * context to name in it.
 */
export class ByteCursor {
  position: number;
  failed = false;

  constructor(
    private readonly bytes: Uint8Array,
    start: number,
    private readonly end: number,
  ) {
    this.position = start;
  }

  get remaining(): number {
    return this.end - this.position;
  }

  readByte(): number {
    if (this.position >= this.end) {
      this.failed = true;
      return -1;
    }
    const value = this.bytes[this.position]!;
    this.position += 1;
    return value;
  }

  readVarint(): number {
    let value = 0;
    let scale = 1;
    for (let count = 0; count < varintBytesMax; count += 1) {
      if (this.position >= this.end) {
        break;
      }
      const byte = this.bytes[this.position]!;
      this.position += 1;
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) {
        if (value > Number.MAX_SAFE_INTEGER) {
          break;
        }
        return value;
      }
      scale *= 0x80;
    }
    this.failed = true;
    return -1;
  }
}
