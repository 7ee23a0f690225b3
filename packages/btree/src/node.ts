// The nodes of the B+tree.
//
// A leaf holds up to `capacity` extents in one Float64Array and no object per extent:
// first the offsets, densely, so that a binary search touches few cache lines; then one
// record per entry with the other five numbers (length, op number, and the location's
// code, id and offset), so that the entry a search finds is one cache miss away, not
// five. 48 bytes a slot. An insert or remove shifts both sections with two memmove-speed
// `copyWithin` calls. Leaves are linked in offset order so that range scans, and the
// predecessor of a leaf's first key, need no second descent.
//
// A branch holds `count` children and `count - 1` separator keys in plain arrays:
// separator `keys[i]` divides child `i` from child `i + 1`, and every extent offset in
// child `i + 1` is at least `keys[i]` while every offset in child `i` is below it.
// Separators are lower bounds, not copies of a child's first key, so a delete never has
// to update its ancestors. Branch changes happen once per leaf split or merge, so plain
// arrays with `splice` keep that code short without costing the hot path.

/** Where each field of an entry sits within its record in a leaf's record section. */
const field = {
  length: 0,
  opNum: 1,
  locationCode: 2,
  locationId: 3,
  locationOffset: 4,
} as const;

/** Doubles per entry record: every field but the offset. */
const recordStride = 5;

export class Leaf {
  readonly isLeaf = true;
  readonly capacity: number;
  count = 0;
  previous: Leaf | null = null;
  next: Leaf | null = null;
  /**
   * Offsets in [0, capacity), then one record of `recordStride` doubles per entry. Kept
   * in one array so that a leaf costs one buffer and one view, not one per field.
   */
  private readonly data: Float64Array;

  constructor(capacity: number) {
    this.capacity = capacity;
    this.data = new Float64Array(capacity * (1 + recordStride));
  }

  offsetAt(index: number): number {
    return this.data[index]!;
  }

  lengthAt(index: number): number {
    return this.data[this.capacity + index * recordStride + field.length]!;
  }

  opNumAt(index: number): number {
    return this.data[this.capacity + index * recordStride + field.opNum]!;
  }

  locationCodeAt(index: number): number {
    return this.data[this.capacity + index * recordStride + field.locationCode]!;
  }

  locationIdAt(index: number): number {
    return this.data[this.capacity + index * recordStride + field.locationId]!;
  }

  locationOffsetAt(index: number): number {
    return this.data[this.capacity + index * recordStride + field.locationOffset]!;
  }

  /** The offset one past the last byte of entry `index`. */
  endOf(index: number): number {
    return this.offsetAt(index) + this.lengthAt(index);
  }

  /** The index of the last entry whose offset is at most `offset`, or -1 if none is. */
  floorIndex(offset: number): number {
    const data = this.data;
    let low = 0;
    let high = this.count;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (data[middle]! <= offset) {
        low = middle + 1;
      } else {
        high = middle;
      }
    }
    return low - 1;
  }

  set(
    index: number,
    offset: number,
    length: number,
    opNum: number,
    locationCode: number,
    locationId: number,
    locationOffset: number,
  ): void {
    const data = this.data;
    const record = this.capacity + index * recordStride;
    data[index] = offset;
    data[record + field.length] = length;
    data[record + field.opNum] = opNum;
    data[record + field.locationCode] = locationCode;
    data[record + field.locationId] = locationId;
    data[record + field.locationOffset] = locationOffset;
  }

  /** Opens a slot at `index` by shifting the entries after it, and fills it. */
  insertAt(
    index: number,
    offset: number,
    length: number,
    opNum: number,
    locationCode: number,
    locationId: number,
    locationOffset: number,
  ): void {
    this.shift(index, index + 1, this.count - index);
    this.count += 1;
    this.set(index, offset, length, opNum, locationCode, locationId, locationOffset);
  }

  /** Opens a slot at `index` and copies entry `sourceIndex` of `source` into it. */
  insertCopyAt(index: number, source: Leaf, sourceIndex: number): void {
    this.shift(index, index + 1, this.count - index);
    this.count += 1;
    this.copyFrom(index, source, sourceIndex, 1);
  }

  /**
   * Replaces the `removeCount` entries from `index` with `insertCount` unset slots by
   * shifting the entries after them; the caller fills the slots.
   */
  resizeRange(index: number, removeCount: number, insertCount: number): void {
    const tail = index + removeCount;
    this.shift(tail, index + insertCount, this.count - tail);
    this.count += insertCount - removeCount;
  }

  removeAt(index: number): void {
    this.shift(index + 1, index, this.count - index - 1);
    this.count -= 1;
  }

  /** Appends `entryCount` entries of `source` from `start` after this leaf's last entry. */
  appendFrom(source: Leaf, start: number, entryCount: number): void {
    this.copyFrom(this.count, source, start, entryCount);
    this.count += entryCount;
  }

  /** Moves entries [start, count) to the end of `target`, keeping [0, start) here. */
  moveTailTo(target: Leaf, start: number): void {
    target.appendFrom(this, start, this.count - start);
    this.count = start;
  }

  /** Copies `entryCount` entries of `source` from `sourceIndex` into slots from `index`. */
  private copyFrom(index: number, source: Leaf, sourceIndex: number, entryCount: number): void {
    const from = source.data;
    this.data.set(from.subarray(sourceIndex, sourceIndex + entryCount), index);
    const recordStart = source.capacity + sourceIndex * recordStride;
    this.data.set(
      from.subarray(recordStart, recordStart + entryCount * recordStride),
      this.capacity + index * recordStride,
    );
  }

  /** Moves `entryCount` entries from slot `from` to slot `to` within this leaf. */
  private shift(from: number, to: number, entryCount: number): void {
    if (entryCount <= 0) {
      return;
    }
    const data = this.data;
    data.copyWithin(to, from, from + entryCount);
    const records = this.capacity;
    data.copyWithin(
      records + to * recordStride,
      records + from * recordStride,
      records + (from + entryCount) * recordStride,
    );
  }
}

export class Branch {
  readonly isLeaf = false;
  /** Separators: `keys.length === children.length - 1`. */
  readonly keys: number[];
  readonly children: Node[];

  constructor(keys: number[], children: Node[]) {
    this.keys = keys;
    this.children = children;
  }

  get count(): number {
    return this.children.length;
  }

  /** The index of the child whose key range holds `offset`. */
  childIndexFor(offset: number): number {
    const keys = this.keys;
    let low = 0;
    let high = keys.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (keys[middle]! <= offset) {
        low = middle + 1;
      } else {
        high = middle;
      }
    }
    return low;
  }
}

export type Node = Leaf | Branch;
