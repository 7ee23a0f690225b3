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

/**
 * Per-operation options. `signal`: once it fires, the operation sends no further attempt
 * (the client retries after failovers and timeouts) and rejects with the signal's
 * reason. An attempt already sent may still take effect, as an operation that timed
 * out may; but it was sent before anything this client sends afterwards, and the
 * partition's primary applies one client's requests in the order they arrive, so a
 * later write to the same blocks lands after it. A caller that gives up on an
 * operation (a timeout of its own, a closed NBD connection) must abort it: an
 * abandoned operation goes on retrying and can land after the caller's next write to
 * the same blocks, undoing it.
 */
export interface OperationOptions {
  readonly signal?: AbortSignal;
}

/** What the NBD gateway and programs use: a volume as a block device. */
export interface BlockDevice {
  readonly name: string;
  readonly sizeBytes: number;
  /**
   * True for a read-only device (a snapshot): writes, trims and write-zeroes are refused.
   * Absent means writable.
   */
  readonly readOnly?: boolean;
  /**
   * The bytes at `offset`: the caller's to keep and change. They may be a view of a
   * larger buffer that also holds other reads' bytes (the client copies a batch's
   * replies into one buffer), so use the view, not its `.buffer`.
   */
  read(offset: number, length: number, options?: OperationOptions): Promise<Uint8Array>;
  write(offset: number, data: Uint8Array, options?: OperationOptions): Promise<void>;
  trim(offset: number, length: number, options?: OperationOptions): Promise<void>;
  writeZeroes(offset: number, length: number, options?: OperationOptions): Promise<void>;
  /**
   * Resolves once every write, trim and write-zeroes issued before it has settled: what
   * succeeded of them is then durable on every replica. A failure of one of them is its
   * own caller's, not the flush's.
   */
  flush(): Promise<void>;
}
