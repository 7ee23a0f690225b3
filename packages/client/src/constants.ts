// Every bound and default of the client, in one place. The wire's own limits (sector
// size, bytes and entries per request) live in @ballast/protocol's limits; the client
// may be told to use smaller ones (tests do, to make splitting happen on small volumes),
// never larger. Names carry their unit last.

/**
 * Requests (messages on the bus, each perhaps carrying many caller operations) one
 * volume has in flight at once, counting those waiting out a retry delay. Operations
 * beyond it wait in their partition's queue, where they merge into larger requests.
 */
export const requestsInflightPerVolumeMax = 64;

/**
 * Requests one batch queue (one partition, one kind of request) has in flight at once.
 * Operations that arrive while the queue is at this bound ride its next request, which
 * is how requests grow under load; below it, operations go out at the end of the
 * event-loop turn in which they were issued.
 */
export const requestsInflightPerQueueMax = 4;

/** How long one request waits for its reply before it counts as a (retryable) Timeout. */
export const requestDeadlineMs = 5000;

/** How long the coordinator has to describe a volume, per attempt. */
export const describeDeadlineMs = 5000;

/** The delay before the first retry; each further retry doubles it, up to the maximum. */
export const retryDelayMsInitial = 50;
export const retryDelayMsMax = 2000;

/**
 * The longest delay before retrying a failure that says nobody serves the partition right
 * now (Unavailable: no responder, a link or connection closed) or that the client's view
 * is behind (WrongEpoch, after which the retry re-describes the volume). Neither reaches
 * a primary that is still being elected: a no-responder answer comes from nats-server,
 * and a wrong epoch from a primary that is serving. Backing off to `retryDelayMsMax`
 * there only adds to a failover's outage: a retry drawn 1-2 s out lands up to 2 s after
 * the new primary began serving (with links, whose requests fail at once when the old
 * primary dies, kill-primary outages in chaos grew from 5.6 to 7.9 s).
 */
export const retryDelayMsFastMax = 250;

/**
 * How long an operation keeps retrying, counted from when it was issued. No retry starts
 * after it; the operation then fails with a Timeout-coded BallastError that carries the
 * last error seen (at most one request deadline after the budget ends).
 */
export const retryBudgetMs = 60_000;
