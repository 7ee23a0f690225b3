// A growable list of entries in the same six-number form as a leaf. The tree keeps one
// as scratch space for the pieces an insert, update or remove computes, and reuses it on
// every call so that rewriting a range allocates nothing once the list has grown.

export class EntryList {
  count = 0;
  readonly offsets: number[] = [];
  readonly lengths: number[] = [];
  readonly opNums: number[] = [];
  readonly locationCodes: number[] = [];
  readonly locationIds: number[] = [];
  readonly locationOffsets: number[] = [];

  clear(): void {
    this.count = 0;
  }

  push(
    offset: number,
    length: number,
    opNum: number,
    locationCode: number,
    locationId: number,
    locationOffset: number,
  ): void {
    const index = this.count;
    this.offsets[index] = offset;
    this.lengths[index] = length;
    this.opNums[index] = opNum;
    this.locationCodes[index] = locationCode;
    this.locationIds[index] = locationId;
    this.locationOffsets[index] = locationOffset;
    this.count = index + 1;
  }
}
