// Waiting for a promise with a bound: shutdowns that must end whatever their parts do.

/**
 * True once `promise` resolves, false if `waitMs` passes first (the timer is then
 * cleared, so it keeps no process alive). A rejection propagates; pass a settled
 * promise (`Promise.allSettled`, or one that cannot reject) when any end will do.
 */
export async function settlesWithin(promise: Promise<unknown>, waitMs: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), waitMs);
  });
  try {
    return await Promise.race([promise.then(() => true as const), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
