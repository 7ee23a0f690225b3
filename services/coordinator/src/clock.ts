// The monotonic clock every duration in the coordinator's shell is measured on
// (performance.now, so a wall-clock step never shortens a timeout or a grant's record).
// The leader's own lease alone also heeds the wall clock, which can only end it early
// (leadership.ts: a VM frozen with its monotonic clock held). Both are read through the
// global so that tests can drive them with fake timers; the pure cores never read
// them, they are handed the time.

/** Milliseconds on the monotonic clock. */
export const now = (): number => globalThis.performance.now();

/**
 * Milliseconds on the wall clock, read through the global too. Never a duration's
 * measure alone: leadership.ts uses it only as a second bound beside the monotonic one.
 */
export const wallNow = (): number => Date.now();
