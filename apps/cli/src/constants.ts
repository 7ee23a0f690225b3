// Defaults and bounds of the `ballast` command and its launcher.

export const dataDirDefault = "./.ballast";

export const coordinatorCountDefault = 1;
export const headNodeCountDefault = 3;
export const sledCountDefault = 3;
export const gatewayCountDefault = 1;
/** Each count is bounded so that a typo cannot start hundreds of processes. */
export const serviceCountMax = 32;

/** How long `ballast up` waits for nats-server to accept connections. */
export const natsReadyTimeoutMs = 15_000;
/** How long `ballast up` waits for every service to report healthy. */
export const clusterReadyTimeoutMs = 30_000;
/**
 * How long a stopping child gets after SIGTERM before it is killed. Longer than the
 * slowest stop a service may take by its own bounds: its in-flight handlers (the
 * runtime's shutdownGraceMs, 10 s), then its closers (closersGraceMs, 12 s; a gateway's
 * NBD connections among them), then its NATS connection (natsCloseGraceMs, 5 s). It was 15 s, so a
 * gateway stopping slowly but within its bounds was killed part way (a test keeps the
 * sum below this; docker-compose's stop_grace_period is the same).
 */
export const childStopGraceMs = 30_000;
/**
 * How long a nats-server that a crashed launcher left behind gets to stop after SIGTERM
 * before SIGKILL (up.ts); it holds no data of ours that a crash loses.
 */
export const staleNatsServerStopGraceMs = 5000;
/** How often `ballast up` looks whether a process left by a crashed launcher has ended. */
export const staleProcessPollIntervalMs = 100;
/**
 * How long the CLI waits for NATS when it connects to run a command (NATS may still be
 * starting). BALLAST_NATS_CONNECT_TIMEOUT_MS may set it, from 100 ms to 10 minutes
 * (tests of an unreachable cluster use it not to wait 10 s).
 */
export const cliConnectTimeoutMs = 10_000;
export const cliConnectTimeoutMsMin = 100;
export const cliConnectTimeoutMsMax = 600_000;
/** How long `ballast status` waits for the coordinator's answer. */
export const statusDeadlineMs = 5000;

/** At most this many nats-servers in a local NATS cluster (3 survives losing one). */
export const natsClusterSizeMax = 5;
/** How long the launcher waits for a NATS cluster to elect a JetStream leader. */
export const natsClusterReadyTimeoutMs = 30_000;
/** Revisions the control bucket keeps per key; the coordinator opens it with the same. */
export const controlBucketHistory = 8;

/**
 * The cap on each nats-server's JetStream file store (`max_file_store`; `ballast up
 * --nats-store-max`). Without one the server takes its limit from the disk's free space at
 * start, so on a disk shared with the sleds and head nodes it runs into a full disk first,
 * and then every JetStream request times out until the server restarts. With a cap below the
 * free space a write that does not fit is refused at once ("insufficient resources", which
 * the coordinator reports as its control store being full). Ballast's only stream is the
 * control KV bucket (the catalogue: volumes, partitions, leases, checkpoint pointers, each a
 * small record with `controlBucketHistory` revisions), tens of MiB for thousands of
 * volumes; 2 GiB leaves ample room for that yet stays well below a data disk's free space.
 */
export const natsFileStoreBytesDefault = 2 * 1024 ** 3;
/**
 * The smallest `--nats-store-max`: room for the control bucket of a small cluster with its
 * history, so that a cap mistyped in bytes for MiB is a usage error, not a store full at once.
 */
export const natsFileStoreBytesMin = 64 * 1024 ** 2;
/**
 * The cap on each nats-server's JetStream memory store (`max_memory_store`). Ballast keeps no
 * stream in memory; the cap only stops a misconfigured one from taking the host's memory
 * (the server's own default is 75 % of it).
 */
export const natsMemoryStoreBytes = 256 * 1024 ** 2;

/**
 * Attempts of a delete sent to the coordinator (`snapshot delete`, `volume delete`): the
 * first and its retries after a failure whose outcome is unknown (retried-delete.ts).
 */
export const deleteAttemptsMax = 3;
/** Pause before each retry of a delete: a leader being elected answers in about a second. */
export const deleteRetryDelayMs = 1000;

/**
 * Service bundles (bundles.ts): a build whose inputs changed within this long before it
 * began may not be what esbuild read, and is used but not recorded (file times come from
 * a coarse clock; this is far above its tick).
 */
export const bundleRacyMarginMs = 2000;
/** Bundle files no manifest names are removed once unused for this long. */
export const bundleKeepMs = 24 * 60 * 60 * 1000;
/** Hex digits of the content hash in a bundle's file name. */
export const bundleHashLength = 16;
