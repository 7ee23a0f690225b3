// Defaults and bounds shared by every service's runtime. Each can be overridden per
// service through configuration where a flag exists; the bounds cannot.

/** How often a service announces itself. */
export const heartbeatIntervalMsDefault = 1000;
export const heartbeatIntervalMsMin = 50;
export const heartbeatIntervalMsMax = 60_000;

/** How long a request may wait for its reply unless the caller says otherwise. */
export const requestDeadlineMsDefault = 5000;
export const requestDeadlineMsMax = 300_000;

/** Messages a service handles at once per subscription; the next waits for a slot. */
export const handlersInflightMax = 256;

/** How long shutdown waits for in-flight handlers before it closes anyway. */
export const shutdownGraceMs = 10_000;

/** How often a child process checks that the launcher that started it is alive. */
export const parentCheckIntervalMs = 1000;

/** Wait between NATS reconnect attempts; attempts never stop while the service runs. */
export const natsReconnectWaitMs = 250;

/** How long a service keeps trying to reach NATS on start before it gives up. */
export const natsConnectTimeoutMs = 30_000;

/** The version every service reports in heartbeats and node info. */
export const ballastVersion = "0.1.0";
