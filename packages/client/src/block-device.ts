// The contract between Ballast and whatever does block I/O on a volume: the NBD gateway,
// and programs that link the client. Offsets and lengths are bytes, multiples of the
// 512-byte sector, inside the volume; anything else is refused with a BallastError
// (Unaligned, OutOfRange, InvalidArgument) before a byte is sent.
//
// Ordering is that of a disk: operations in flight at the same time on overlapping
// ranges complete in no defined order, and a caller that needs one write to land before
// another waits for the first to settle. Completion means durable: a write resolves
// once every member of the partition's replica set holds it in its journal on disk, so
// `flush` (the barrier a file system or a VM issues) has only to wait for the writes
// issued before it to complete; it sends nothing and touches no sled.

/** What the NBD gateway and programs use: a volume as a block device. */
export interface BlockDevice {
  readonly name: string;
  readonly sizeBytes: number;
  /**
   * True for a read-only device (a snapshot): writes, trims and write-zeroes are refused.
   * Absent means writable.
   */
  readonly readOnly?: boolean;
  read(offset: number, length: number): Promise<Uint8Array>;
  write(offset: number, data: Uint8Array): Promise<void>;
  trim(offset: number, length: number): Promise<void>;
  writeZeroes(offset: number, length: number): Promise<void>;
  /**
   * Resolves once every write, trim and write-zeroes issued before it has settled: what
   * succeeded of them is then durable on every replica. A failure of one of them is its
   * own caller's, not the flush's.
   */
  flush(): Promise<void>;
}
