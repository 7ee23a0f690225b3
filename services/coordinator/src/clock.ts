// The monotonic clock every duration in the coordinator's shell is measured on
// (performance.now, so a wall-clock step never shortens a lease or a timeout). It is
// read through the global so that tests can drive it with fake timers; the pure cores
// never read it, they are handed the time.

/** Milliseconds on the monotonic clock. */
export const now = (): number => globalThis.performance.now();
