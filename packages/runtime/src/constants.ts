// Defaults and bounds shared by every service's runtime. Each can be overridden per
// service through configuration where a flag exists; the bounds cannot.

/** How often a service announces itself. */
export const heartbeatIntervalMsDefault = 1000;
export const heartbeatIntervalMsMin = 50;
export const heartbeatIntervalMsMax = 60_000;

/** How long a request may wait for its reply unless the caller says otherwise. */
export const requestDeadlineMsDefault = 5000;
export const requestDeadlineMsMax = 300_000;

/**
 * The longest delay `setTimeout` honours (a signed 32-bit count of ms, about 24.8 days):
 * Node fires a longer one after 1 ms, so any configurable delay is bounded by it.
 */
export const timerDelayMsMax = 2 ** 31 - 1;

/** Messages a service handles at once per subscription; the next waits for a slot. */
export const handlersInflightMax = 256;

/**
 * What may wait in one subscription's backlog for a handler slot (service.ts,
 * `Deliveries`): messages, and bytes of their data. nats.js reads its socket whatever
 * the handlers do, so a receiver slower than its senders (a sled on a slow disk taking
 * 4 MiB chunk writes, a primary flooded) kept every message in memory, and later ran
 * those whose senders had long given up. Past either bound a request is answered
 * Unavailable at once (its sender retries, or tries another sled) and a publish is
 * dropped (replication takes lost messages). A message arriving at an empty backlog
 * is always kept, however large.
 */
export const backlogMessagesMax = 16_384;
export const backlogBytesMax = 64 * 1024 * 1024;

/**
 * Slots of a subscription's backlog already handled past which it is compacted (when
 * they are at least half of it). A backlog that never empties (a closed loop of clients
 * with more requests out than handlersInflightMax) otherwise kept a slot for every
 * message it ever queued.
 */
export const backlogCompactSlotsMin = 1024;

/**
 * How long shutdown, or the stop of one served subject, waits for in-flight handlers
 * before it goes on anyway; the drains of the subscriptions count within it (on a NATS
 * server gone silent they wait for a PONG until the pings run out, natsPingIntervalMs ×
 * natsPingsOutMax, far past this).
 */
export const shutdownGraceMs = 10_000;
/**
 * How long shutdown waits for the service's closers, all of them together (a sled's
 * store, a gateway's NBD connections, a head node's replicas), before it goes on to
 * close NATS and lets the process end. A closer stuck on a hung disk held the stop for
 * good; ending the process then is a crash, which every service is built to survive.
 * A gateway's NBD close (its closeGraceMs, 10 s) fits within it with 2 s to spare for
 * the closers after it (its volumes').
 */
export const closersGraceMs = 12_000;
/**
 * How long the drain of a NATS connection (flushing what was published) may take before
 * the connection is closed without it (bus.ts `drainNats`): a service's last step on
 * shutdown, a command's end. On a silent server that drain too waited for the pings.
 */
export const natsCloseGraceMs = 5000;

/** How often a child process checks that the launcher that started it is alive. */
export const parentCheckIntervalMs = 1000;

/**
 * The abstract socket names that lock data directories start with (data-dir-lock.ts);
 * `ss -xlp | grep ballast-datadir-` lists the holders.
 */
export const dataDirLockNamePrefix = "ballast-datadir-";
/**
 * How long a process refused a data directory waits for the holder to say who it is. The
 * holder answers from its event loop; one stopped or too busy to answer within this is
 * named as "another process".
 */
export const dataDirHolderQueryTimeoutMs = 2000;

/**
 * The mode of every directory a Ballast process makes for data (a service's data
 * directory and those under it, the launcher's, its logs), and of every file it creates
 * in one (device files, journal segments, checkpoints, counters, the identity, logs,
 * cluster.json): its owner's alone. A device file or journal segment holds volume data
 * as written, so any mode wider than the owner's lets other local users read every
 * volume from the disk. Given at creation (the umask can only narrow it); an existing
 * directory's mode is left as the operator set it (data-dir.ts `openToOthersMode`).
 */
export const dataDirectoryMode = 0o700;
export const dataFileMode = 0o600;
/** The permission bits of "others" (neither the owner nor the group): read, write, search. */
export const otherUsersModeMask = 0o007;

/** Wait between NATS reconnect attempts; attempts never stop while the service runs. */
export const natsReconnectWaitMs = 250;
/**
 * How often a client pings nats-server, and how many pings may go unanswered before it
 * takes the connection for dead and reconnects. nats.js defaults to 2 minutes and 2: a
 * server whose machine vanished without closing the socket went unnoticed for 4 to 6
 * minutes, and every drain (a subscription stopped, a shutdown) waited on it for as long.
 * Now within 30 to 40 s, at one small ping per process every 10 s.
 */
export const natsPingIntervalMs = 10_000;
export const natsPingsOutMax = 3;
/**
 * The ping intervals a connection may be given instead (ConnectOptions.pingIntervalMs):
 * tests shorten it to see a silent server within seconds. Below the minimum, a loaded
 * machine's late timers would take a live server for dead.
 */
export const natsPingIntervalMsMin = 50;
export const natsPingIntervalMsMax = 10 * 60_000;

/** How long a service keeps trying to reach NATS on start before it gives up. */
export const natsConnectTimeoutMs = 30_000;

/**
 * V8 flags every service process starts with: LocalCluster passes them when it spawns a
 * service, the Dockerfile's ENTRYPOINT carries them (Node refuses them in NODE_OPTIONS),
 * and a service started without them says so in its "started" log line.
 *
 * V8 counts the bytes of ArrayBuffers allocated since its last full collection against
 * the old generation's limit, which starts near a small heap's size. A head node's JS
 * heap is about 25 MB, but every write passes through several fresh buffers (socket
 * reads, the byte slab, msgpack's buffers, chunk assembly): at QD32 the primary ran a
 * full mark-compact about every 200 ms and spent a fifth of its CPU in the collector,
 * for buffers that a scavenge or the next sweep frees anyway. An initial old space of
 * 128 MiB let it run 9 in 8 s instead of 38 and cut the CPU of a write over all
 * processes by a fifth (docs/performance.md, "External memory and full collections");
 * the resident size grew by less than 30 MB a process.
 */
export const serviceNodeFlags: readonly string[] = ["--initial-old-space-size=128"];

/**
 * glibc's malloc settings every service process starts with (the GLIBC_TUNABLES
 * variable: LocalCluster sets it when it spawns a service and the launcher has none of
 * its own, the Dockerfile's ENV carries it; other C libraries ignore it).
 *
 * Large messages pass through fresh buffers (a link frame read into a buffer of its own,
 * a message the NATS parser gathers), which Node takes from malloc. By default glibc
 * gives memory back to the kernel once more than about twice the largest recent block
 * lies free at the top of its heap, and maps blocks above a threshold on their own; a
 * collection that frees a few MiB of buffers at once gives their pages back, and the
 * next buffers fault them in again, each page zeroed by the kernel. At 1 MiB sequential
 * reads the gateway took 30 to 38 page faults per read, about a seventh of its CPU
 * (docs/performance.md, "1 MiB reads: replies in parts and buffers kept (session 16)").
 * Blocks below 16 MiB (every message: nats-server's max_payload is 8 MiB plus headers)
 * now come from the heap, and up to 32 MiB of free memory stays at its top, so the same
 * pages serve buffer after buffer. The cost is at most that much resident memory a
 * process holds beyond what it uses.
 */
export const serviceMallocTunables =
  "glibc.malloc.mmap_threshold=16777216:glibc.malloc.trim_threshold=33554432";

/** The version every service reports in heartbeats and node info. */
export const ballastVersion = "0.1.0";

/**
 * Links (link-server.ts, link-client.ts). A sender that knows no link for a subject asks
 * its server for one at most this often per subject (after a failed or refused offer).
 */
export const linkOfferRetryMs = 1000;
/** …and this often when the server said it takes no links (links off, an older node). */
export const linkOfferRefusedRetryMs = 30_000;
/**
 * After a link to an address fails to open (no connection, no hello-ok, refused), no
 * new connection is tried there for a while: linkConnectBackoffBaseMs, doubling with
 * each failure in a row up to linkConnectBackoffMaxMs, each drawn from its upper half
 * (jitter, so that senders that failed together do not come back together); reset once
 * a link there opens. Meanwhile its subjects' messages go over NATS.
 */
export const linkConnectBackoffBaseMs = 1000;
export const linkConnectBackoffMaxMs = 30_000;
/**
 * A link counts as opened, for that backoff, only once it stayed open this long: one
 * that closes sooner (not ended by its sender) counts as a failure to open, so that a
 * link dropped right after its hello-ok (a server that closes it for a frame it does not
 * like, a path that cuts it, a server restarting in a loop on a fixed port) is not
 * reopened as fast as offers come, once a second per subject.
 */
export const linkStableMs = 10_000;
/**
 * Subjects whose offer times (when each may next ask) a sender keeps at most: those
 * already past are forgotten to make room, and with none past a new subject asks no
 * offer (its messages go over NATS) until one is. So a sender asks at most this many
 * offers per linkOfferRetryMs (renewals aside), however many subjects it sends to.
 */
export const linkOfferTimesKeptMax = 1024;
/**
 * A sender's link routes (link-client.ts) not used for this long are dropped, checked
 * when a route is learned (at most once per this interval): links stay open for months,
 * and every subject ever sent to would otherwise stay routed. A dropped route costs its
 * next message a trip over NATS and a fresh offer, nothing else.
 */
export const linkRouteIdleMs = 10 * 60_000;
/**
 * At most this many subjects routed per sender, whatever their use: past it, learning a
 * route drops one not used since it was last looked at (least recently used, roughly).
 */
export const linkRoutesMax = 4096;
/** How long an offer request over NATS waits. */
export const linkOfferDeadlineMs = 1000;
/** How long a sender waits for a new link's TCP connection and `hello-ok`. */
export const linkConnectTimeoutMs = 2000;
/** How long a server waits for a new connection's `hello` before it closes it. */
export const linkHelloTimeoutMs = 5000;
/**
 * Bytes a link may hold unsent; past this the other side is not reading and the link is
 * closed (its senders go back to NATS). Well above a burst of QD32 1 MiB writes.
 */
export const linkWriteBufferBytesMax = 64 * 1024 * 1024;
/**
 * The buffer a link's sender reads its socket into when no large reply is under way
 * (link-client.ts): each read's bytes are copied out of it at once. Node's own size.
 */
export const linkReadBufferBytes = 64 * 1024;
/** A sender pings each open link this often (publishes get no answers: link.ts, "ping"). */
export const linkPingIntervalMs = 1000;
/**
 * Either side closes a link it has heard nothing from for this long: a peer that stopped
 * reading, or a path that swallows packets. Its senders go back to NATS.
 */
export const linkSilenceMsMax = 4000;
/**
 * A silence check (either side) that runs this much later than its interval says this
 * process stalled (a long GC, a blocked event loop, a paused VM): what peers sent
 * meanwhile is still unread, so heard-at times are reset rather than judged, lest every
 * link be closed as silent at once. A real silence is then seen a check later.
 */
export const linkStallMsMin = linkPingIntervalMs;
/** Bytes a new connection may send before its hello is complete (a hello is ~40). */
export const linkHelloBytesMax = 1024;
/**
 * How long a closing link server waits for each connection to close after ending it
 * (its last replies flushed, a FIN sent) before it destroys it: a sender that reads
 * closes at once; one that does not read must not hold up a shutdown.
 */
export const linkCloseGraceMs = 1000;
/**
 * Open link connections a server keeps; one more is closed at once. Each costs a file
 * descriptor, which the node's NATS connection, sled reads and journal files need too:
 * a flood of connections must not take those. Well above a cluster's senders (one per
 * gateway, CLI and head node, per scope).
 */
export const linkConnectionsMax = 256;
/**
 * Connections a server keeps that have not yet proven a token (hello): anyone who can
 * reach the port may open these, so far fewer than linkConnectionsMax.
 */
export const linkHandshakesMax = 16;
/**
 * Requests one link connection may have unanswered at a server; at this many it stops
 * reading that connection (TCP then holds the sender back) until a reply goes out, so a
 * fast sender cannot queue without bound in the process. Above a gateway's many
 * volumes at QD32 on one node.
 */
export const linkUnansweredMax = 1024;
/**
 * How long a link token lives (link-server.ts). A server's tokens belong to an epoch,
 * its monotonic clock divided by this; a hello is accepted with a token of the current
 * epoch or the one before, and an open link whose token's epoch is older than that is
 * closed. So a token handed out opens and keeps links for at least this long and at most
 * twice this long: a client whose NATS access was taken away (a rotated password) can
 * no longer ask an offer, and loses its links within twice this (plus linkTokenDrainMs).
 * Senders ask a new offer between half and three quarters through the time an offer
 * says its token has left (linkTokenRenewFractionMin/Max) and prove the new token on the
 * link itself (`renew`; against an older server, they move their routes to a second link
 * opened with it), so no request waits on a rotation.
 */
export const linkTokenLifetimeMs = 10 * 60_000;
/**
 * A link whose token aged out answers what arrives `no-responder` (not handled: the
 * sender resends it over NATS) and is ended once its replies in flight are sent, or
 * destroyed after this long with some still unsent.
 */
export const linkTokenDrainMs = 5000;
/**
 * A sender renews a link's token at a point drawn uniformly between these fractions of
 * the time its offer said the token has left (link-client.ts). Not at a fixed fraction:
 * the time left runs to the server's epoch end, so renewing at exactly half of it moves
 * each sender's next offer halfway closer to the epoch's start, and after a dozen
 * renewals every sender of a server asked its offer within milliseconds of the same
 * epoch boundary (and, renewing by second connections, past linkHandshakesMax of them
 * were turned away at once). Drawn, the renewals stay spread over the epoch; the latest leaves a quarter of
 * the time (at least linkTokenLifetimeMs / 4) for renewals that fail to be tried again.
 */
export const linkTokenRenewFractionMin = 0.5;
export const linkTokenRenewFractionMax = 0.75;
/** A server logs connections it turned away at the caps at most this often. */
export const linkTurnedAwayLogIntervalMs = 10_000;
/**
 * A service logs requests it dropped for a reply subject that is no inbox at most this
 * often (each is counted in `ballast_replies_refused`): any client may send them, and a
 * line each would let it flood the log.
 */
export const repliesRefusedLogIntervalMs = 10_000;
/**
 * A condition that lasts (a sled out with copies nowhere to go, a sled that answers
 * nothing) is logged when it begins, then at most once this often while it lasts, each
 * reminder with the count of repeats left out since the last line (log-repeat.ts): at
 * the periods of the loops that meet it (a pass every 30 s, a check every second) a line
 * each would fill an operator's disk over a long fault and bury the line that says what
 * is wrong.
 */
export const logRepeatIntervalMs = 5 * 60_000;
/** Conditions a RepeatLog tracks at once; past it the oldest is forgotten (logged anew). */
export const logRepeatKeysMax = 10_000;
