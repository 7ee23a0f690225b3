// When the head node next asks each replica for a tick (issue 14: an idle cost flat in
// the number of partitions). The node ticks every tickMs; asking every replica at every
// tick whether it has work costs per replica, although an idle replica's core can say
// how many of the next ticks are quiet (Replica.quietTicks). So each replica has a due
// tick, and a node tick takes only the replicas due at it: one that said it is quiet for
// k ticks is not touched until then, and one quiet for ever (an idle secondary with no
// checkpoint due) is not touched at all, unless an input wakes it first.
//
// Model: a pure, synchronous min-heap of items keyed by due tick, with the node's tick
// number as its only notion of time (no timers inside: the head node's timer calls
// `advance`). Each item is in the heap at most once (a position index makes moving and
// removing it O(log n), so nothing stale piles up however often it is woken). Due ticks
// only move earlier while an item waits (`due` keeps the earlier of two), so a wake that
// arrives while an item is being ticked is never lost to the due tick the tick then
// computes. An item is out of the heap once taken: whoever takes it schedules it again.
// Infinity means "not until woken".

export class TickSchedule<K> {
  /** The last node tick taken (`advance`); inputs between ticks happen at this tick. */
  private tickNow = 0;
  /** The heap: items and their due ticks, in parallel arrays. */
  private readonly items: K[] = [];
  private readonly dues: number[] = [];
  /** Where each item waiting sits in the heap. */
  private readonly positions = new Map<K, number>();

  /** The node tick now: the last one `advance` took. */
  get now(): number {
    return this.tickNow;
  }

  /** Items waiting for a finite due tick. */
  get size(): number {
    return this.items.length;
  }

  /** The tick `item` is due at, or undefined if it waits for nothing but a wake. */
  dueTick(item: K): number | undefined {
    const at = this.positions.get(item);
    return at === undefined ? undefined : this.dues[at];
  }

  /**
   * Makes `item` due at `tick` (at the next tick at the earliest), unless it is due
   * earlier already: a due tick only moves earlier until the item is taken. Infinity
   * leaves an item that is not waiting out of the heap.
   */
  due(item: K, tick: number): void {
    const dueTick = Math.max(tick, this.tickNow + 1);
    if (dueTick === Number.POSITIVE_INFINITY) return;
    const at = this.positions.get(item);
    if (at === undefined) {
      this.items.push(item);
      this.dues.push(dueTick);
      this.positions.set(item, this.items.length - 1);
      this.siftUp(this.items.length - 1);
      return;
    }
    if (dueTick >= this.dues[at]!) return;
    this.dues[at] = dueTick;
    this.siftUp(at);
  }

  /** An input reached `item`: it is due at the next tick, to be asked afresh. */
  wake(item: K): void {
    this.due(item, this.tickNow + 1);
  }

  /** Forgets `item` (a replica closed): it is never taken again unless scheduled anew. */
  remove(item: K): void {
    const at = this.positions.get(item);
    if (at === undefined) return;
    this.positions.delete(item);
    const last = this.items.length - 1;
    const lastItem = this.items.pop()!;
    const lastDue = this.dues.pop()!;
    if (at === last) return;
    this.items[at] = lastItem;
    this.dues[at] = lastDue;
    this.positions.set(lastItem, at);
    this.siftDown(at);
    this.siftUp(this.positions.get(lastItem)!);
  }

  /**
   * Moves to the next node tick and takes every item due at it (or before: none is,
   * since each is taken at its tick), out of the heap, earliest first.
   */
  advance(): K[] {
    this.tickNow++;
    const taken: K[] = [];
    while (this.items.length > 0 && this.dues[0]! <= this.tickNow) {
      const item = this.items[0]!;
      this.remove(item);
      taken.push(item);
    }
    return taken;
  }

  private siftUp(start: number): void {
    let at = start;
    while (at > 0) {
      const parent = (at - 1) >> 1;
      if (this.dues[parent]! <= this.dues[at]!) return;
      this.swap(at, parent);
      at = parent;
    }
  }

  private siftDown(start: number): void {
    let at = start;
    const count = this.items.length;
    for (;;) {
      const left = 2 * at + 1;
      if (left >= count) return;
      const right = left + 1;
      const child = right < count && this.dues[right]! < this.dues[left]! ? right : left;
      if (this.dues[at]! <= this.dues[child]!) return;
      this.swap(at, child);
      at = child;
    }
  }

  private swap(a: number, b: number): void {
    const itemA = this.items[a]!;
    const itemB = this.items[b]!;
    const dueA = this.dues[a]!;
    this.items[a] = itemB;
    this.items[b] = itemA;
    this.dues[a] = this.dues[b]!;
    this.dues[b] = dueA;
    this.positions.set(itemB, a);
    this.positions.set(itemA, b);
  }
}
