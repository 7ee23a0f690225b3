// One reply envelope for every request: `{ok: true, result}` or `{ok: false, error}`.
// Errors travel as a code from ErrorCode plus a message and optional details; the
// receiver turns them back into a BallastError with the same code.

import { z } from "zod";
import { decodeValue, encodeValue, encodeValueParts, parseWith } from "./codec.ts";
import { BallastError, ErrorCode, isErrorCode } from "./errors.ts";
import { acceptHotReply, hotReplyTypes } from "./hot-path.ts";
import { textLengthMax } from "./limits.ts";
import { type RequestType, type ResultOf, resultSchemas } from "./messages/index.ts";

export interface ErrorBody {
  code: ErrorCode;
  message: string;
  details?: Record<string, unknown>;
}

export type Reply<T> = { ok: true; result: T } | { ok: false; error: ErrorBody };

/** The envelope of every reply (the hot-path property tests compare with it). */
export const ReplyShape = z.union([
  z.object({ ok: z.literal(true), result: z.unknown() }),
  z.object({
    ok: z.literal(false),
    error: z.object({
      code: z.string(),
      message: z.string(),
      details: z.record(z.string(), z.unknown()).optional(),
    }),
  }),
]);

export function encodeResult(result: unknown): Uint8Array {
  return encodeValue({ ok: true, result });
}

/**
 * `encodeResult`'s bytes as parts to send one after another (`encodeValueParts`): a
 * result's large data (a read's bytes) by reference, not copied into the encoding, so it
 * must not change until sent.
 */
export function encodeResultParts(result: unknown): Uint8Array[] {
  return encodeValueParts({ ok: true, result });
}

/** Any thrown value becomes an error reply; unknown errors are Internal. */
export function encodeError(error: unknown): Uint8Array {
  return encodeValue({ ok: false, error: errorBody(error) });
}

export function errorBody(error: unknown): ErrorBody {
  if (error instanceof BallastError) {
    const body: ErrorBody = { code: error.code, message: cut(error.message) };
    if (error.details !== undefined) body.details = error.details;
    return body;
  }
  const message = error instanceof Error ? error.message : String(error);
  return { code: ErrorCode.Internal, message: cut(message) };
}

/**
 * Decodes a reply to a request of `type`: returns the validated result, or throws the
 * BallastError the remote side sent. A reply that is itself malformed throws
 * MalformedMessage or InvalidMessage.
 */
export function decodeReply<T extends RequestType>(type: T, bytes: Uint8Array): ResultOf<T> {
  const value = decodeValue(bytes);
  // The write and read paths' replies get a cheap check of exactly what their schemas
  // ask (hot-path.ts); anything it is not sure of, zod decides and explains.
  if (hotReplyTypes.has(type)) {
    const accepted = acceptHotReply(type, value);
    if (accepted !== undefined) return accepted;
  }
  const reply = parseWith(ReplyShape, value, `the reply to ${type}`);
  if (!reply.ok) {
    const code = isErrorCode(reply.error.code) ? reply.error.code : ErrorCode.Internal;
    throw new BallastError(code, reply.error.message, {
      details: { ...reply.error.details, remote: true },
    });
  }
  const schema = resultSchemas[type] as unknown as z.ZodType<ResultOf<T>>;
  return parseWith(schema, reply.result, `the result of ${type}`);
}

function cut(message: string): string {
  return message.length > textLengthMax ? `${message.slice(0, textLengthMax - 1)}…` : message;
}
