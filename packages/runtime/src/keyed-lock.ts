// Serializes work per key: operations on the same key (a sled's chunk id, blob key or
// upload; a head node's partition) run one after another, in arrival order; different
// keys run concurrently. Work runs after its predecessor whether that succeeded or
// failed, and the caller sees its own work's outcome only. A key's entry is dropped when
// its last operation finishes, so the map holds only keys in use.

export class KeyedLock {
  private readonly tails = new Map<string, Promise<unknown>>();

  /** Runs `work` once every earlier operation on `key` has finished. */
  run<T>(key: string, work: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key) ?? Promise.resolve();
    const result = previous.then(work, work);
    const tail = result.then(
      () => undefined,
      () => undefined,
    );
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return result;
  }

  get size(): number {
    return this.tails.size;
  }
}
