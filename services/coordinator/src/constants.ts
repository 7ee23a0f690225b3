// Limits and defaults of the coordinator.

/** Silence after which a service is declared dead. Five missed heartbeats by default. */
export const heartbeatTimeoutMsDefault = 5000;
export const heartbeatTimeoutMsMin = 100;
export const heartbeatTimeoutMsMax = 600_000;

/** How long a status probe waits for each service's own description. */
export const probeDeadlineMs = 1000;

/** The most services membership tracks; heartbeats from more are refused and logged. */
export const membersMax = 4096;

/** How often the leader checks every partition against membership and pushes configuration. */
export const reconcileIntervalMs = 500;

/** Configuration is pushed again to every member at least this often, to catch restarts. */
export const configureRefreshMs = 5000;

/** How long a configure request to a head node may take. */
export const configureDeadlineMs = 2000;

/** The leader lease, its renewal period, and the clock skew between coordinators allowed for. */
export const leaderLeaseMs = 3000;
export const leaderRenewMs = 1000;
export const clockSkewMsMax = 500;

/** A primary's read lease, and how often the leader renews it (well inside the lease). */
export const primaryLeaseMs = 3000;
export const primaryLeaseRenewMs = 1000;

/** A learner not caught up by then is dropped; the next round adds one afresh. */
export const learnerCatchUpMsMax = 30_000;
