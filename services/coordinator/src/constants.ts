// Limits and defaults of the coordinator.

/** Silence after which a service is declared dead. Five missed heartbeats by default. */
export const heartbeatTimeoutMsDefault = 5000;
export const heartbeatTimeoutMsMin = 100;
export const heartbeatTimeoutMsMax = 600_000;

/** How long a status probe waits for each service's own description. */
export const probeDeadlineMs = 1000;

/** The most services membership tracks; heartbeats from more are refused and logged. */
export const membersMax = 4096;
