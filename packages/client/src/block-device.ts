// The contract between Ballast and whatever does block I/O on a volume: the NBD gateway,
// and programs that link the client. Offsets and lengths are bytes, multiples of the
// 512-byte sector, inside the volume; anything else is refused with a BallastError
// (Unaligned, OutOfRange, InvalidArgument) before a byte is sent.
//
// Ordering is that of a disk: operations in flight at the same time on overlapping
// ranges complete in no defined order, and a caller that needs one write to land before
// another waits for the first to settle. Completion means replicated: a write resolves
// once every member of the partition's replica set holds it in its journal; `flush`
// additionally moves it from the journals to the sleds.

/** What the NBD gateway and programs use: a volume as a block device. */
export interface BlockDevice {
  readonly name: string;
  readonly sizeBytes: number;
  read(offset: number, length: number): Promise<Uint8Array>;
  write(offset: number, data: Uint8Array): Promise<void>;
  trim(offset: number, length: number): Promise<void>;
  writeZeroes(offset: number, length: number): Promise<void>;
  /** Resolves once everything acknowledged before it is flushed to sleds. */
  flush(): Promise<void>;
}
