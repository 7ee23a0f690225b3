// Every bound the wire enforces, in one place. A limit here is checked at the edge
// (decode) and asserted past it; services add their own limits in their own constants
// modules. Names carry their unit last.

const kibibyte = 1024;
const mebibyte = 1024 * kibibyte;

/** The largest encoded message any subject accepts, headers excluded. */
export const messageBytesMax = 8 * mebibyte;

/**
 * nats-server's max_payload as the launcher configures it: the message limit plus room
 * for headers (trace context) so that a message at the limit still fits.
 */
export const natsPayloadBytesMax = messageBytesMax + 64 * kibibyte;

/** All block I/O offsets and lengths are multiples of this. */
export const sectorBytes = 512;

/** The most data one write or read request may carry, summed over its entries. */
export const requestDataBytesMax = 4 * mebibyte;

/** The most entries (writes, reads, ranges) in one client request. */
export const requestEntriesMax = 1024;

/** The most notes one replication message carries. */
export const notesPerMessageMax = 1024;

/** Volume names: lowercase letters, digits and dashes, starting with a letter or digit. */
export const volumeNameLengthMax = 63;

/**
 * Snapshot names (the user's) and ids (the coordinator's, what replicas keep): the same
 * alphabet as volume names.
 */
export const snapshotNameLengthMax = 63;
export const snapshotIdLengthMax = 63;

/** The most snapshots one volume may have (each is a frozen tree on every replica). */
export const snapshotsPerVolumeMax = 64;

/**
 * The most partitions a snapshot answer (create, list, rollback) names with their ops:
 * the first ones, with `partitionCount` for all of them. Whole, a snapshot of the largest
 * volume names 65,536 (about 1.7 MiB), so a list of more than four of them did not fit
 * one message; at this limit a list of `snapshotsPerVolumeMax` snapshots, every field at
 * its longest, takes about 2.7 MiB (protocol test reply-size.test.ts).
 */
export const snapshotPartitionsListedMax = 1024;

/**
 * The most clones a listed snapshot names (`cloneCount` says how many in all): a
 * snapshot may have as many clones as the cluster has volumes.
 */
export const snapshotClonesListedMax = 256;

/** Node ids: the same alphabet as volume names. */
export const nodeIdLengthMax = 63;

/** The largest volume: 2^50 bytes (1 PiB) keeps every offset a safe integer with room. */
export const volumeBytesMax = 2 ** 50;

/** Replica counts the design allows: a primary plus one or two secondaries. */
export const replicaCountMin = 2;
export const replicaCountMax = 3;

/**
 * Copies of every chunk (and checkpoint blob) on distinct sleds: head nodes write this
 * many and re-replicate up to it, and the coordinator and status call a chunk short of
 * copies below it. Erasure coding across sleds is a later step.
 */
export const chunkCopies = 2;

/** Volume partitions: the default size, its bounds, and the most partitions per volume. */
export const partitionBytesDefault = 1024 * mebibyte;
export const partitionBytesMin = mebibyte;
/**
 * 4 GiB: the most whose extent tree, at its worst (one 512-byte extent per sector), still
 * fits one checkpoint (a sled blob of 256 MiB) with room for snapshots: 8M extents at
 * most 21 bytes each, 168 MiB. Larger partitions (64 GiB before) could outgrow every
 * checkpoint and then never release their journals; those made before are still served,
 * and a checkpoint too large for them is refused, never written.
 */
export const partitionBytesMax = 4 * 1024 * mebibyte;
export const partitionsPerVolumeMax = 65_536;

/**
 * The most partitions one answer carrying a volume's state lists (describe, create,
 * resize, clone): a volume with more is described in pages (`partitionsFrom`,
 * `partitionsNext`). A partition at its longest (63-character node ids, three replicas,
 * two learners joining, their rebuilds, four checkpoints, three failed voters and the
 * unavailable mark) encodes to about 1,660 bytes, so a page takes 6.5 MiB and leaves room
 * within `messageBytesMax` for the rest of the state (protocol test reply-size.test.ts). Whole, the largest volume's state is
 * about 90 MiB: it never fit one message.
 */
export const describePartitionsMax = 4096;

/** Free-text fields (error messages, reasons) are cut to this many characters. */
export const textLengthMax = 4096;

/** The most services or volumes a status reply lists. */
export const statusEntriesMax = 4096;

/**
 * The catalogue sequence's history (coordinator store-marks.ts): the nonces of this many
 * latest raises are kept in the record, so that a sled's witness can be checked against
 * the history it was made in, not only its number. About 30 bytes each.
 */
export const catalogueSequenceHistoryMax = 256;

/** Volume incarnation ids: the alphabet of names, at most this long; never reused. */
export const volumeIdLengthMax = 32;

/**
 * A client session's id (a mutation's `fence`): hex digits drawn at random when the
 * client starts, 128 bits, so two live clients never draw the same one.
 */
export const clientSessionHexLength = 32;

/**
 * The most incarnation ids one `headnode.leftovers.v1` asks about: a head node with more
 * leftover directories asks in several requests.
 */
export const leftoverIncarnationsPerRequestMax = 1024;

/** The most partitions one head node report (leases, progress, stalls) may list. */
export const reportPartitionsMax = 16_384;

/**
 * The most sleds a report's answer names in one list (out of service, to audit), the
 * most audited sled disks one primary's entry says, and the most slow sleds a head
 * node's node info names.
 */
export const reportSledsMax = 4096;

/**
 * Read leases, as durations each side measures on its own monotonic clock (never a wall
 * clock compared across machines). A primary counts its lease from the moment it sent
 * the report the lease answers; the coordinator counts the same grant from the moment it
 * answered, which is later, and waits a further margin for clock-rate drift before it
 * promotes another primary. Both processes must agree on these, so they live here.
 */
export const primaryLeaseMs = 3000;
export const primaryLeaseDriftMarginMs = 250;

/** How often a head node reports (and so renews its primaries' leases). */
export const headnodeReportIntervalMs = 500;

/**
 * A primary that has waited this long for a voting secondary to make an op durable
 * reports the secondary as stalled; the coordinator drops it as it would a dead one.
 */
export const commitStallMsMax = 3000;

/**
 * A primary whose own journal has kept an op waiting this long without making anything
 * more durable (a disk that hangs without failing) reports itself stalled; the
 * coordinator fails the partition over to a secondary. Twice the follower bound: one
 * group commit of a busy primary on a throttled disk may take seconds and still be
 * progress, and a failover costs a lease wait and a rebuild.
 */
export const primaryStallMsMax = 2 * commitStallMsMax;

/**
 * How long nats-server lets a service answer a request it received (the `expires` of
 * its `allow_responses` permission). Services reply through that permission rather than
 * a right to publish on every _INBOX; a reply later than the longest deadline a requester
 * may set (runtime's requestDeadlineMsMax, tested to be no longer) has no one waiting.
 */
export const replyPermissionMs = 300_000;
