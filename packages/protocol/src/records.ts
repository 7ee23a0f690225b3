// The control records: what the coordinator keeps in the KV bucket `ballast-control`
// (services/coordinator catalogue.ts has the keys and what each record means), as JSON
// so an operator can read them with any NATS tool. This is their edge, as codec.ts is
// the messages': stored bytes become a typed record here, exactly once, or an
// UnreadableRecordError that names the key and what is wrong with it (never the stored
// text, which may be anything). Past this module, a record's fields are what their types
// say.
//
// Failure model: a record may be damaged (a full disk, a hand edit, a tool of another
// version) or hostile (anything the control bucket's writers could be made to store).
// Each kind has a schema: missing fields, wrong types, numbers past what a field can
// hold and strings past their limits are refused; a record larger than
// `controlRecordBytesMax` is refused before it is parsed. Keys a schema does not name
// are kept as stored and never read: a newer coordinator's fields survive an older
// one's rewrite of the record during a rolling upgrade. What a reader does with a
// record that does not decode is the reader's to decide (the catalogue's callers skip
// it, or refuse to act, never act on it); this module only says that it does not.
//
// Schemas accept every record older coordinators wrote: fields added since are optional,
// as the record types say.

import { z } from "zod";
import { BallastError, ErrorCode } from "./errors.ts";
import {
  catalogueSequenceHistoryMax,
  natsPayloadBytesMax,
  nodeIdLengthMax,
  textLengthMax,
  volumeNameLengthMax,
} from "./limits.ts";
import {
  diskId,
  nodeId,
  snapshotId,
  snapshotName,
  unsignedInteger,
  volumeBytes,
  volumeName,
} from "./messages/fields.ts";
import { servedWithin } from "./messages/headnode.ts";

/**
 * The largest control record read: the most NATS is configured to carry at all. A
 * snapshot record of a volume of partitionsPerVolumeMax partitions is some 2.4 MB.
 */
export const controlRecordBytesMax = natsPayloadBytesMax;
/** The most entries of any list in a record (partitions of a snapshot, pins, sightings). */
export const controlRecordListMax = 65_536;
/** How much of a key an UnreadableRecordError quotes. */
const keyQuotedLengthMax = 200;
/** How much of a path segment (a key of the stored JSON) an error quotes. */
const pathSegmentQuotedLengthMax = 64;

/** A wall-clock or monotonic time in ms: finite, not negative, within a safe integer. */
const timeMs = z.number().nonnegative().max(Number.MAX_SAFE_INTEGER);
/**
 * A volume's incarnation as records name it: an issued id, or, for volumes made before
 * incarnations, the volume's name.
 */
const recordVolumeId = z.string().min(1).max(volumeNameLengthMax);
/** Ids and keys drawn by the coordinator or a head node, kept as text. */
const recordText = z.string().max(textLengthMax);
const list = <T extends z.ZodType>(item: T) => z.array(item).max(controlRecordListMax);

const clonePin = z.looseObject({
  volume: volumeName,
  volumeId: recordVolumeId,
  revision: unsignedInteger,
  snapshotId,
  sinceMs: timeMs,
});

const volumeParent = z.looseObject({
  volume: volumeName,
  volumeId: recordVolumeId,
  snapshot: snapshotName,
  snapshotId,
  overlap: volumeBytes,
});

const volume = z.looseObject({
  name: volumeName,
  id: recordVolumeId.optional(),
  sizeBytes: volumeBytes,
  replicaCount: unsignedInteger,
  partitionBytes: volumeBytes,
  createdAtMs: timeMs,
  term: unsignedInteger.optional(),
  parent: volumeParent.optional(),
  creatingSinceMs: timeMs.optional(),
  clonePins: list(clonePin).optional(),
  /** A shrink to this size begun and not finished (the coordinator's resize.ts). */
  shrinkingTo: volumeBytes.optional(),
  /** The size that shrink began from: the mark holds only while the size is still this. */
  shrinkingFrom: volumeBytes.optional(),
});

const partitionFields = z.looseObject({
  volume: volumeName,
  volumeId: recordVolumeId.optional(),
  partition: unsignedInteger,
  partitionStart: volumeBytes,
  partitionBytes: volumeBytes,
  epoch: unsignedInteger,
  primary: nodeId,
  secondaries: list(nodeId),
  learners: list(nodeId).optional(),
  joining: list(nodeId).optional(),
  disks: z.record(z.string().max(nodeIdLengthMax), recordText).optional(),
  term: unsignedInteger.optional(),
  /** The partition's bytes inside the volume (see headnode.configure.v1); absent: all. */
  servedBytes: volumeBytes.optional(),
});
const partition = partitionFields.refine(servedWithin, {
  message: "servedBytes must be at most partitionBytes",
  path: ["servedBytes"],
});

const checkpoint = z.looseObject({
  opNum: unsignedInteger,
  blobKey: recordText,
  sleds: list(nodeId),
  bytes: unsignedInteger,
  createdAtMs: timeMs,
});

const rollbackMark = z.looseObject({ token: recordText, sinceMs: timeMs });

const snapshot = z.looseObject({
  volume: volumeName,
  name: snapshotName,
  id: snapshotId,
  volumeId: recordVolumeId,
  createdAtMs: timeMs,
  partitions: list(z.looseObject({ index: unsignedInteger, opNum: unsignedInteger })),
  sizeBytes: volumeBytes.optional(),
  overlap: volumeBytes.optional(),
  creatingSinceMs: timeMs.optional(),
  deletingSinceMs: timeMs.optional(),
  clonePins: list(clonePin).optional(),
  rollbacks: list(rollbackMark).optional(),
});

const purge = z.looseObject({
  volume: volumeName,
  volumeId: recordVolumeId,
  deletedAtMs: timeMs,
  headNodes: list(nodeId).optional(),
});

const sled = z.looseObject({
  id: nodeId,
  firstSeenMs: timeMs,
  lastSeenMs: timeMs,
  state: z.enum(["in", "out"]),
  since: timeMs,
  disk: diskId.optional(),
  refillingSince: timeMs.optional(),
});

const incarnation = z.looseObject({ incarnation: unsignedInteger });

const sighting = z.tuple([recordText, timeMs]).readonly();
const sweepSightings = z.looseObject({
  term: unsignedInteger,
  objects: list(sighting),
  snapshots: list(sighting),
});

const leader = z.looseObject({
  coordinator: nodeId,
  term: unsignedInteger.optional(),
  released: z.literal(true).optional(),
});

/** The control store's identity (coordinator store-marks.ts): written once, never changed. */
const store = z.looseObject({
  storeId: z.string().regex(/^[0-9a-f]{32}$/),
  createdAtMs: timeMs,
});

/**
 * The catalogue's sequence (coordinator store-marks.ts): raised by one, by
 * compare-and-set, before each volume or snapshot create; never lowered. `recent`: the
 * latest raises' sequences with the random nonce each was made with (the sleds' marks
 * carry it), oldest first; absent in records written before it existed.
 */
export const catalogueSequenceNonce = z.string().regex(/^[0-9a-f]{16}$/);
const catalogueSequence = z.looseObject({
  sequence: unsignedInteger,
  recent: z
    .array(z.tuple([unsignedInteger, catalogueSequenceNonce]))
    .max(catalogueSequenceHistoryMax)
    .optional(),
});

/** The mark each orphan-sweep pass writes (`checkpoint._mark`); only its revision counts. */
const checkpointMark = z.looseObject({ atMs: timeMs });

/** One schema per kind of control record. */
export const controlRecordSchemas = {
  volume,
  partition,
  checkpoint,
  checkpointMark,
  snapshot,
  purge,
  sled,
  incarnation,
  sweepSightings,
  leader,
  store,
  catalogueSequence,
} as const;

export type ControlRecordKind = keyof typeof controlRecordSchemas;
export type ControlRecordOf<K extends ControlRecordKind> = z.output<
  (typeof controlRecordSchemas)[K]
>;

/**
 * A stored control record that does not decode as its kind. `key` is the record's key
 * (quoted at most keyQuotedLengthMax characters), `problem` what is wrong; neither
 * carries the stored text.
 */
export class UnreadableRecordError extends BallastError {
  readonly key: string;
  readonly kind: ControlRecordKind;
  readonly problem: string;

  constructor(key: string, kind: ControlRecordKind, problem: string) {
    const shown = quoteKey(key);
    super(ErrorCode.Internal, `the control record ${shown} is unreadable: ${problem}`, {
      details: { key: shown, kind, problem, unreadableRecord: true },
    });
    this.key = key;
    this.kind = kind;
    this.problem = problem;
  }
}

const decoder = new TextDecoder("utf-8", { fatal: true });

/** Stored bytes → a record of `kind`, or an UnreadableRecordError naming `key`. */
export function decodeControlRecord<K extends ControlRecordKind>(
  kind: K,
  key: string,
  bytes: Uint8Array,
): ControlRecordOf<K> {
  if (bytes.byteLength > controlRecordBytesMax) {
    throw new UnreadableRecordError(
      key,
      kind,
      `${bytes.byteLength} bytes, more than the ${controlRecordBytesMax} a record may hold`,
    );
  }
  let value: unknown;
  try {
    value = JSON.parse(decoder.decode(bytes));
  } catch {
    // V8's message quotes the text; the length says enough.
    throw new UnreadableRecordError(key, kind, `its ${bytes.byteLength} bytes are not UTF-8 JSON`);
  }
  const parsed = controlRecordSchemas[kind].safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const path =
      issue === undefined || issue.path.length === 0
        ? "(the record)"
        : issue.path.map((segment) => quoteSegment(segment)).join(".");
    throw new UnreadableRecordError(
      key,
      kind,
      `not a ${kind} record: ${path}: ${issue?.message ?? "invalid"}`,
    );
  }
  return parsed.data as ControlRecordOf<K>;
}

/** Whether `error` is a control record that does not decode. */
export function isUnreadableRecord(error: unknown): error is UnreadableRecordError {
  return error instanceof UnreadableRecordError;
}

function quoteKey(key: string): string {
  return key.length > keyQuotedLengthMax ? `${key.slice(0, keyQuotedLengthMax)}…` : key;
}

function quoteSegment(segment: PropertyKey): string {
  const text = String(segment);
  return JSON.stringify(
    text.length > pathSegmentQuotedLengthMax
      ? `${text.slice(0, pathSegmentQuotedLengthMax)}…`
      : text,
  ).slice(1, -1);
}
