// A fake BlockDevice in memory, for tests of the NBD server. It checks ranges the way
// the Ballast client does (Unaligned, OutOfRange, InvalidArgument), records every
// operation, and lets a test hold operations back (`gate`) or fail them (`failNext`),
// so that completion order, in-flight limits and error mapping can be driven exactly.
// Its flush keeps the contract's barrier: it waits for the mutations issued before it.

import type { OperationOptions } from "@ballast/client";
import { BallastError, ErrorCode, limits } from "@ballast/protocol";
import type { BlockDevice } from "../src/index.ts";

export type OperationKind = "read" | "write" | "trim" | "write-zeroes" | "flush";

export interface OperationRecord {
  kind: OperationKind;
  offset: number;
  length: number;
  /** The signal the caller passed (the NBD server: one per connection). */
  signal?: AbortSignal;
}

const signalOf = (options?: OperationOptions) =>
  options?.signal === undefined ? {} : { signal: options.signal };

export class MemoryBlockDevice implements BlockDevice {
  readonly name: string;
  readonly sizeBytes: number;
  readonly bytes: Uint8Array;
  /** Every operation, in the order the device was called. */
  readonly operations: OperationRecord[] = [];
  /** Operations that have completed (successfully or not), in completion order. */
  readonly completed: OperationRecord[] = [];
  /** Awaited before an operation touches the bytes; a test uses it to hold or reorder. */
  gate: ((operation: OperationRecord) => Promise<void>) | undefined;
  private failures: Error[] = [];
  private readonly mutationsInflight = new Set<Promise<void>>();

  constructor(name: string, sizeBytes: number) {
    this.name = name;
    this.sizeBytes = sizeBytes;
    this.bytes = new Uint8Array(sizeBytes);
  }

  /** Makes the next operation fail with `error` (queued: one error per operation). */
  failNext(error: Error): void {
    this.failures.push(error);
  }

  count(kind: OperationKind): number {
    return this.operations.filter((operation) => operation.kind === kind).length;
  }

  read(offset: number, length: number, options?: OperationOptions): Promise<Uint8Array> {
    return this.run({ kind: "read", offset, length, ...signalOf(options) }, () =>
      this.bytes.slice(offset, offset + length),
    );
  }

  write(offset: number, data: Uint8Array, options?: OperationOptions): Promise<void> {
    const copy = new Uint8Array(data);
    const record = {
      kind: "write" as const,
      offset,
      length: data.byteLength,
      ...signalOf(options),
    };
    return this.run(record, () => {
      this.bytes.set(copy, offset);
    });
  }

  trim(offset: number, length: number, options?: OperationOptions): Promise<void> {
    return this.run({ kind: "trim", offset, length, ...signalOf(options) }, () => {
      this.bytes.fill(0, offset, offset + length);
    });
  }

  writeZeroes(offset: number, length: number, options?: OperationOptions): Promise<void> {
    return this.run({ kind: "write-zeroes", offset, length, ...signalOf(options) }, () => {
      this.bytes.fill(0, offset, offset + length);
    });
  }

  async flush(): Promise<void> {
    const before = [...this.mutationsInflight];
    const operation: OperationRecord = { kind: "flush", offset: 0, length: 0 };
    this.operations.push(operation);
    await Promise.allSettled(before);
    return this.perform(operation, () => undefined);
  }

  private run<T>(operation: OperationRecord, apply: () => T): Promise<T> {
    this.operations.push(operation);
    const done = this.perform(operation, apply);
    if (operation.kind !== "read") {
      const settled = done.then(
        () => undefined,
        () => undefined,
      );
      this.mutationsInflight.add(settled);
      void settled.then(() => this.mutationsInflight.delete(settled));
    }
    return done;
  }

  private async perform<T>(operation: OperationRecord, apply: () => T): Promise<T> {
    try {
      if (operation.kind !== "flush") this.checkRange(operation);
      const failure = this.failures.shift();
      if (failure !== undefined) throw failure;
      if (this.gate !== undefined) await this.gate(operation);
      return apply();
    } finally {
      this.completed.push(operation);
    }
  }

  private checkRange({ kind, offset, length }: OperationRecord): void {
    const refuse = (code: ErrorCode, why: string) =>
      new BallastError(code, `cannot ${kind} on volume ${this.name}: ${why}`);
    if (length <= 0) throw refuse(ErrorCode.InvalidArgument, `length ${length}`);
    if (offset % limits.sectorBytes !== 0 || length % limits.sectorBytes !== 0) {
      throw refuse(ErrorCode.Unaligned, `offset ${offset} length ${length}`);
    }
    if (offset < 0 || offset + length > this.sizeBytes) {
      throw refuse(ErrorCode.OutOfRange, `[${offset}, ${offset + length})`);
    }
  }
}
