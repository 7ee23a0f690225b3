// Field schemas shared by the message definitions. Integers on the wire are msgpack
// integers or floats holding whole numbers; either is accepted as long as the value is
// a safe integer, because msgpack encoders differ in how they write large integers.

import { z } from "zod";
import {
  clientSessionHexLength,
  nodeIdLengthMax,
  requestEntriesMax,
  snapshotIdLengthMax,
  snapshotNameLengthMax,
  textLengthMax,
  volumeBytesMax,
  volumeIdLengthMax,
  volumeNameLengthMax,
} from "../limits.ts";
import { serviceKinds } from "../subjects.ts";

const namePattern = /^[a-z0-9][a-z0-9-]*$/;
/** Said when a name breaks `namePattern`: the rule in words, not the pattern's source. */
const nameRule = "must be lowercase letters, digits and '-', starting with a letter or digit";

export const unsignedInteger = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);
export const positiveInteger = z.number().int().positive().max(Number.MAX_SAFE_INTEGER);
export const uint32 = z.number().int().nonnegative().max(0xffff_ffff);

/** A byte offset or length inside a volume. */
export const volumeBytes = z.number().int().nonnegative().max(volumeBytesMax);

export const nodeId = z.string().min(1).max(nodeIdLengthMax).regex(namePattern, nameRule);
export const volumeName = z.string().min(1).max(volumeNameLengthMax).regex(namePattern, nameRule);
/** A volume's incarnation: a delete and a re-create of one name get different ids. */
export const volumeId = z.string().min(1).max(volumeIdLengthMax).regex(namePattern, nameRule);
/** A snapshot's name, unique within its volume (chosen by the user). */
export const snapshotName = z
  .string()
  .min(1)
  .max(snapshotNameLengthMax)
  .regex(namePattern, nameRule);
/** A snapshot's id, drawn by the coordinator and never reused: what replicas key it by. */
export const snapshotId = z.string().min(1).max(snapshotIdLengthMax).regex(namePattern, nameRule);
export const serviceKind = z.enum(serviceKinds);
/**
 * A data directory's id: drawn at random when the directory is created (runtime
 * data-dir.ts), so a node back under its old id on an empty disk says so.
 */
export const diskId = z.string().regex(/^[0-9a-f]{32}$/);
export const text = z.string().max(textLengthMax);
/** A client session's id (see `clientSessionHexLength`). */
export const clientSessionPattern = new RegExp(`^[0-9a-f]{${clientSessionHexLength}}$`);
export const clientSession = z
  .string()
  .regex(clientSessionPattern, `must be ${clientSessionHexLength} lowercase hex digits`);

/** Binary data. msgpack `bin` decodes to a Buffer, which is a Uint8Array. */
export const bytes = z.custom<Uint8Array>((value) => value instanceof Uint8Array, {
  message: "expected binary data (msgpack bin)",
});

/** A list of request entries, bounded so that one message cannot ask for unbounded work. */
export function entries<T extends z.ZodType>(entry: T) {
  return z.array(entry).min(1).max(requestEntriesMax);
}

/** A range of a volume, for reads, trims and write-zeroes. */
export const range = z.object({
  offset: volumeBytes,
  length: volumeBytes,
});
