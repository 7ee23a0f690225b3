// Traces and metrics of a partition replica, kept out of the core (replica.ts knows
// nothing of them) and out of the effect runner's logic: the shell (partition-host.ts)
// wraps two of the runner's ports with the decorators here.
//
// Traces. A client request is handled in a span the service shell opened ("handle
// volume.write.v1", parented on the client's traceparent). The host remembers that
// span's context for each op number the request was given (OpContexts), until the
// request is answered. Every `replica.notes.v1` message sent to a secondary then gets a
// span of its own ("replicate notes"), parented on the context of its first traced op
// and linked to the context of every other request whose notes it carries (batching:
// one message, many requests, no parent lost), and carries that span's traceparent in
// its headers; the secondary's service shell opens its "handle replica.notes.v1" span
// under it, and the secondary's journal sync nests there. Each journal append, from the
// call to the group commit's fdatasync, is a "journal sync" span under the op's
// context (or the active span's, on a secondary). Acknowledgements and notes of
// untraced requests carry no headers, so the secondary opens no span for them.
//
// Tracing off (no tracer): the decorators are not installed at all, and the host
// records no op contexts: the write path is the one without tracing.
//
// Metrics (no-ops when metrics are off): per volume, the client requests a primary
// handles (writes, write bytes, latency), requests in flight, journal bytes and sync
// latency; per replica, observed when scraped: its role (or `failed`), commit lag (ops appended but
// not committed), flush lag (ops committed but not yet on sleds), and for a primary each
// follower's lag (a learner's is its rebuild progress). All of a volume's series come
// from the volume's meter group (runtime metrics.ts), held by each of its partition
// hosts: they go from memory and from the next scrape when the last partition of the
// volume here closes, as when the volume is deleted. A volume hosted again later starts
// its counters afresh.

import { subjects } from "@ballast/protocol";
import {
  type Context,
  type Counter,
  contextOfSpan,
  type Histogram,
  type Link,
  type ObservableResult,
  perMeter,
  ROOT_CONTEXT,
  type Service,
  type SpanContext,
  SpanKind,
  SpanStatusCode,
  trace,
  traceContext,
  type UpDownCounter,
} from "@ballast/runtime";
import { flushContextOpsMax, flushSpanLinksMax } from "./constants.ts";
import type { Done, JournalPort, SledsPort, TransportPort } from "./ports.ts";
import type { CheckpointPointer, ReplicationMessage } from "./replica/effects.ts";
import type { Note } from "./replica/note.ts";
import type { Replica } from "./replica/replica.ts";

/** The span context of the request each op number belongs to, while it is in flight. */
export class OpContexts {
  private readonly byOp = new Map<number, SpanContext>();

  set(firstOpNum: number, lastOpNum: number, spanContext: SpanContext): void {
    for (let opNum = firstOpNum; opNum <= lastOpNum; opNum++) this.byOp.set(opNum, spanContext);
  }

  delete(firstOpNum: number, lastOpNum: number): void {
    for (let opNum = firstOpNum; opNum <= lastOpNum; opNum++) this.byOp.delete(opNum);
  }

  clear(): void {
    this.byOp.clear();
  }

  /** The distinct request contexts of these notes, in op order. */
  of(notes: readonly Note[]): SpanContext[] {
    const found: SpanContext[] = [];
    for (const note of notes) {
      const spanContext = this.byOp.get(note.opNum);
      if (spanContext !== undefined && !found.includes(spanContext)) found.push(spanContext);
    }
    return found;
  }
}

/**
 * The span context of the request that wrote each op, from the request until the op's
 * data is on sleds (a primary with tracing on): the flush that carries the data links
 * to them, long after the requests were answered. Op numbers are added in ascending
 * order, so the map's order is op order and the oldest go first.
 */
export class FlushContexts {
  private readonly byOp = new Map<number, SpanContext>();

  constructor(private readonly opsMax: number = flushContextOpsMax) {}

  set(firstOpNum: number, lastOpNum: number, spanContext: SpanContext): void {
    for (let opNum = firstOpNum; opNum <= lastOpNum; opNum++) this.byOp.set(opNum, spanContext);
    for (const opNum of this.byOp.keys()) {
      if (this.byOp.size <= this.opsMax) break;
      this.byOp.delete(opNum);
    }
  }

  /** The distinct request contexts of ops first..through, in op order, at most `max`. */
  between(firstOpNum: number, throughOpNum: number, max: number): SpanContext[] {
    const found: SpanContext[] = [];
    for (const [opNum, spanContext] of this.byOp) {
      if (opNum > throughOpNum || found.length >= max) break;
      if (opNum >= firstOpNum && !found.includes(spanContext)) found.push(spanContext);
    }
    return found;
  }

  /** Forgets ops up to `opNum` (flushed, or overwritten before any flush carried them). */
  forgetThrough(opNum: number): void {
    for (const key of this.byOp.keys()) {
      if (key > opNum) break;
      this.byOp.delete(key);
    }
  }

  clear(): void {
    this.byOp.clear();
  }

  get size(): number {
    return this.byOp.size;
  }
}

/** Parent (the first request's context) and links (the others') of a batched span. */
function parentAndLinks(contexts: readonly SpanContext[]): { parent: Context; links: Link[] } {
  const [first, ...rest] = contexts;
  return {
    parent: contextOfSpan(first),
    links: rest.map((spanContext) => ({ context: spanContext })),
  };
}

/**
 * Sends replication messages over NATS; notes of traced requests go in a span of their
 * own whose traceparent they carry. (NatsTransport's `send`, with the headers chosen here.)
 */
export class TracedTransport implements TransportPort {
  constructor(
    private readonly service: Service,
    private readonly address: { volume: string; partition: number },
    private readonly inner: TransportPort,
    private readonly contexts: OpContexts,
  ) {}

  send(to: string, message: ReplicationMessage): void {
    const subject = subjects.replica.build(this.address.volume, this.address.partition, to);
    const tracer = this.service.tracer;
    const contexts = message.type === "replica.notes.v1" ? this.contexts.of(message.notes) : [];
    if (tracer === undefined || contexts.length === 0 || message.type !== "replica.notes.v1") {
      this.service.bus.publish(subject, message, { untraced: true });
      return;
    }
    const { parent, links } = parentAndLinks(contexts);
    const notes = message.notes;
    const span = tracer.startSpan(
      "replicate notes",
      {
        kind: SpanKind.PRODUCER,
        links,
        attributes: {
          "messaging.destination.name": subject,
          "ballast.to": to,
          "ballast.notes": notes.length,
          "ballast.op_first": notes[0]?.opNum ?? 0,
          "ballast.op_last": notes[notes.length - 1]?.opNum ?? 0,
          "ballast.requests": contexts.length,
        },
      },
      parent,
    );
    try {
      this.service.bus.publish(subject, message, { traceFrom: trace.setSpan(parent, span) });
    } finally {
      span.end();
    }
  }

  recordCheckpoint(pointer: CheckpointPointer, done: Done<{ replaced?: CheckpointPointer }>): void {
    this.inner.recordCheckpoint(pointer, done);
  }
}

/** The journal port, with a span around each append's sync and its bytes counted. */
export class ObservedJournal implements JournalPort {
  constructor(
    private readonly service: Service,
    private readonly inner: JournalPort,
    private readonly contexts: OpContexts,
    private readonly instruments: ReplicaInstruments,
    private readonly volume: string,
  ) {}

  append(notes: readonly Note[], done: Done): void {
    let bytes = 0;
    for (const note of notes) bytes += note.data?.byteLength ?? 0;
    const attributes = { volume: this.volume };
    this.instruments.journalBytes.add(bytes, attributes);
    const startedMs = performance.now();
    const tracer = this.service.tracer;
    const contexts = tracer === undefined ? [] : this.contexts.of(notes);
    // A secondary's append runs in its "handle replica.notes.v1" span.
    const active = trace.getActiveSpan()?.spanContext();
    const traced = contexts.length > 0 ? contexts : active === undefined ? [] : [active];
    if (tracer === undefined || traced.length === 0) {
      this.inner.append(notes, (outcome) => {
        this.instruments.journalSeconds.record((performance.now() - startedMs) / 1000, attributes);
        done(outcome);
      });
      return;
    }
    const { parent, links } = parentAndLinks(traced);
    const span = tracer.startSpan(
      "journal sync",
      {
        kind: SpanKind.INTERNAL,
        links,
        attributes: {
          "ballast.notes": notes.length,
          "ballast.bytes": bytes,
          "ballast.op_first": notes[0]?.opNum ?? 0,
          "ballast.op_last": notes[notes.length - 1]?.opNum ?? 0,
        },
      },
      parent,
    );
    traceContext.with(trace.setSpan(parent, span), () =>
      this.inner.append(notes, (outcome) => {
        this.instruments.journalSeconds.record((performance.now() - startedMs) / 1000, attributes);
        if (!outcome.ok)
          span.setStatus({ code: SpanStatusCode.ERROR, message: String(outcome.error) });
        span.end();
        done(outcome);
      }),
    );
  }

  truncateAfter(afterOpNum: number, done: Done): void {
    this.inner.truncateAfter(afterOpNum, done);
  }

  releaseThrough(throughOpNum: number, done: Done): void {
    this.inner.releaseThrough(throughOpNum, done);
  }
}

/**
 * The sleds port with background work kept out of request traces: the core's effects
 * run in whatever context the input that produced them had (often a client request's
 * span), but a chunk flush or a checkpoint blob is not part of that request. A chunk
 * write is a root span of its own ("flush chunk", with the sled writes under it) that
 * links to the spans of the requests whose data it carries (batching: one chunk, many
 * requests, and long after they were answered, so links, not a parent); the other
 * background calls run under the root context. Reads (a client read's chunk fetches)
 * keep their context. Installed only with tracing on.
 */
export class DetachedSleds implements SledsPort {
  constructor(
    private readonly service: Service,
    private readonly inner: SledsPort,
    private readonly contexts: FlushContexts = new FlushContexts(),
  ) {}

  writeChunk(
    chunk: Parameters<SledsPort["writeChunk"]>[0],
    sleds: readonly string[],
    done: Done<string[]>,
  ): void {
    const tracer = this.service.tracer;
    if (tracer === undefined) {
      this.inner.writeChunk(chunk, sleds, done);
      return;
    }
    const first = chunk.firstOpNum ?? 1;
    const through = chunk.throughOpNum ?? 0;
    // Ops before this chunk's first are flushed already, or were overwritten and left
    // to a record without a chunk: none will be linked again.
    this.contexts.forgetThrough(first - 1);
    const writes = this.contexts.between(first, through, flushSpanLinksMax);
    const span = tracer.startSpan(
      "flush chunk",
      {
        kind: SpanKind.INTERNAL,
        links: writes.map((spanContext) => ({ context: spanContext })),
        attributes: {
          "ballast.chunk": chunk.chunkNumber,
          "ballast.bytes": chunk.data.byteLength,
          "ballast.op_first": first,
          "ballast.op_last": through,
        },
      },
      ROOT_CONTEXT,
    );
    traceContext.with(trace.setSpan(ROOT_CONTEXT, span), () =>
      this.inner.writeChunk(chunk, sleds, (outcome) => {
        if (outcome.ok) {
          this.contexts.forgetThrough(through);
        } else {
          // Kept: the retry of this flush carries the same ops and links them again.
          span.setStatus({ code: SpanStatusCode.ERROR, message: String(outcome.error) });
        }
        span.end();
        done(outcome);
      }),
    );
  }

  readChunk(
    sledChunkId: string,
    copies: readonly string[],
    offset: number,
    length: number,
    expect?: { bytes: number; checksum?: number },
  ): Promise<Uint8Array> {
    return this.inner.readChunk(sledChunkId, copies, offset, length, expect);
  }

  readCachedChunk(
    sledChunkId: string,
    offset: number,
    length: number,
    expect?: { bytes: number; checksum?: number },
  ): Uint8Array | undefined {
    return this.inner.readCachedChunk?.(sledChunkId, offset, length, expect);
  }

  readWholeChunk(
    chunk: { sledChunkId: string; copies: readonly string[]; bytes: number; checksum?: number },
    done: Done<Uint8Array>,
  ): void {
    traceContext.with(ROOT_CONTEXT, () => this.inner.readWholeChunk(chunk, done));
  }

  putBlob(
    key: string,
    data: Uint8Array,
    sleds: readonly string[],
    spread: number,
    done: Done<string[]>,
  ): void {
    traceContext.with(ROOT_CONTEXT, () => this.inner.putBlob(key, data, sleds, spread, done));
  }

  getBlob(
    key: string,
    bytes: number,
    sleds: readonly string[],
  ): Promise<{ data: Uint8Array; sled: string }> {
    return this.inner.getBlob(key, bytes, sleds);
  }

  deleteBlob(key: string, sleds: readonly string[], done: Done): void {
    traceContext.with(ROOT_CONTEXT, () => this.inner.deleteBlob(key, sleds, done));
  }
}

/** A replica as the scrape-time gauges see it. */
export interface ObservedReplica {
  readonly address: { volume: string; partition: number };
  /** Read only: inputs reach a hosted core through its host (partition-host.ts). */
  readonly replica: Pick<Replica, "lastOpNum" | "commitOpNum" | "metadata" | "followers">;
  readonly roleName: "primary" | "secondary" | "idle";
  /** Set once its journal failed or its core threw: it plays no role, and says so. */
  readonly failed?: unknown;
}

export interface ReplicaInstruments {
  /** Client requests a primary handled, by volume and kind (write, trim, zeroes, flush). */
  requests: Counter;
  /** Write ranges a primary committed, by volume: one per range of a volume.write.v1. */
  writes: Counter;
  writeBytes: Counter;
  requestSeconds: Histogram;
  inflight: UpDownCounter;
  journalBytes: Counter;
  journalSeconds: Histogram;
}

/**
 * The head node's per-volume instruments, made once per meter: the volume's own meter
 * (its meter group, released when no partition of it is hosted here), or the process's
 * when there are no groups.
 */
export const replicaInstruments = perMeter(
  (meter): ReplicaInstruments => ({
    requests: meter.createCounter("ballast_headnode_requests", {
      description: "client requests a primary answered, by volume and kind",
    }),
    writes: meter.createCounter("ballast_headnode_writes", {
      description: "write ranges a primary committed (one per range of a volume.write.v1)",
    }),
    writeBytes: meter.createCounter("ballast_headnode_write_bytes", {
      description: "bytes of data a primary committed",
    }),
    requestSeconds: meter.createHistogram("ballast_headnode_request_seconds", {
      description: "latency of client requests on the primary, to commit",
    }),
    inflight: meter.createUpDownCounter("ballast_headnode_requests_in_flight", {
      description: "client requests a primary holds, not yet answered",
    }),
    journalBytes: meter.createCounter("ballast_headnode_journal_bytes", {
      description: "data bytes appended to replica journals",
    }),
    journalSeconds: meter.createHistogram("ballast_headnode_journal_sync_seconds", {
      description: "journal append latency, to the group commit's fdatasync",
    }),
  }),
);

/**
 * The replicas the scrape-time gauges read, made once per meter: the volume's own meter
 * (its meter group), or the process's when there are no groups. Add a replica; delete
 * it when it closes. A group's gauges report what their callbacks observe at the scrape
 * and nothing else, so a replica closed while others of its volume stay here (it moved
 * away) is gone from the next scrape. (The SDK's own observable instruments would export
 * it for ever with its last value: metrics.ts.)
 */
export const replicaGauges = perMeter((meter): Set<ObservedReplica> => {
  const replicas = new Set<ObservedReplica>();
  const role = meter.createObservableGauge("ballast_replica_role", {
    description: "1 for the role each replica plays (primary, secondary, idle, failed)",
  });
  const commitLag = meter.createObservableGauge("ballast_replica_commit_lag_ops", {
    description: "ops appended but not yet committed",
  });
  const flushLag = meter.createObservableGauge("ballast_replica_flush_lag_ops", {
    description: "ops committed but not yet flushed to sleds",
  });
  const followerLag = meter.createObservableGauge("ballast_replica_follower_lag_ops", {
    description:
      "on a primary, ops each follower lacks (a learner's is its rebuild progress to go)",
  });
  role.addCallback((result: ObservableResult) => {
    for (const one of replicas) {
      // A failed replica plays no role (roleName says idle), but idle is what a healthy
      // replica with no configuration says: a failure must not look like that.
      result.observe(1, {
        ...labelsOf(one),
        role: one.failed === undefined ? one.roleName : "failed",
      });
    }
  });
  commitLag.addCallback((result: ObservableResult) => {
    for (const one of replicas) {
      result.observe(one.replica.lastOpNum - one.replica.commitOpNum, labelsOf(one));
    }
  });
  flushLag.addCallback((result: ObservableResult) => {
    for (const one of replicas) {
      const flushed = one.replica.metadata.flushedThroughOpNum;
      result.observe(Math.max(0, one.replica.commitOpNum - flushed), labelsOf(one));
    }
  });
  followerLag.addCallback((result: ObservableResult) => {
    for (const one of replicas) {
      if (one.roleName !== "primary") continue;
      for (const follower of one.replica.followers()) {
        result.observe(Math.max(0, one.replica.lastOpNum - follower.matchOpNum), {
          ...labelsOf(one),
          follower: follower.node,
          learner: String(follower.learner),
        });
      }
    }
  });
  return replicas;
});

function labelsOf(one: ObservedReplica) {
  return { volume: one.address.volume, partition: String(one.address.partition) };
}
