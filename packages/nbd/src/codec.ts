// Bytes to messages and back, with no I/O: the fixed-size frames of the handshake and
// the transmission phase. Decoders check what the frame alone can tell (magic numbers,
// flag bits) and throw NbdProtocolError when the stream cannot be trusted any further;
// what a well-framed message asks for is judged by option-decision.ts and
// request-decision.ts. Encoders build each message in one buffer (a read reply's data
// travels separately, so that it is never copied).

import { NbdProtocolError } from "./errors.ts";
import {
  clientFlagsKnown,
  exportNameReplyBytes,
  exportNameReplyPaddingBytes,
  greetingBytes,
  greetingMagic,
  HandshakeFlag,
  Information,
  type OptionReply,
  optionMagic,
  optionReplyHeaderBytes,
  optionReplyMagic,
  type ReplyError,
  requestMagic,
  simpleReplyHeaderBytes,
  simpleReplyMagic,
  stringBytesMax,
} from "./wire.ts";

/** The server's opening: NBDMAGIC, IHAVEOPT and the handshake flags. */
export function encodeGreeting(): Buffer {
  const bytes = Buffer.allocUnsafe(greetingBytes);
  bytes.writeBigUInt64BE(greetingMagic, 0);
  bytes.writeBigUInt64BE(optionMagic, 8);
  bytes.writeUInt16BE(HandshakeFlag.FixedNewstyle | HandshakeFlag.NoZeroes, 16);
  return bytes;
}

/** The client's flags; unknown bits mean a client this server cannot talk to. */
export function decodeClientFlags(bytes: Buffer): number {
  const flags = bytes.readUInt32BE(0);
  if ((flags & ~clientFlagsKnown) !== 0) {
    throw new NbdProtocolError(
      `cannot negotiate: the client set unknown flags 0x${flags.toString(16)} (known: 0x${clientFlagsKnown.toString(16)})`,
    );
  }
  return flags;
}

export interface OptionHeader {
  /** The option code as sent; it may be one this server does not know. */
  option: number;
  /** Bytes of option data that follow the header. */
  length: number;
}

export function decodeOptionHeader(bytes: Buffer): OptionHeader {
  const magic = bytes.readBigUInt64BE(0);
  if (magic !== optionMagic) {
    throw new NbdProtocolError(
      `cannot read an option: expected magic 0x${optionMagic.toString(16)}, got 0x${magic.toString(16)}`,
    );
  }
  return { option: bytes.readUInt32BE(8), length: bytes.readUInt32BE(12) };
}

/** A reply to an option, with its data (perhaps none). */
export function encodeOptionReply(
  option: number,
  reply: OptionReply,
  data: Uint8Array = new Uint8Array(0),
): Buffer {
  const bytes = Buffer.allocUnsafe(optionReplyHeaderBytes + data.byteLength);
  bytes.writeBigUInt64BE(optionReplyMagic, 0);
  bytes.writeUInt32BE(option, 8);
  bytes.writeUInt32BE(reply, 12);
  bytes.writeUInt32BE(data.byteLength, 16);
  bytes.set(data, optionReplyHeaderBytes);
  return bytes;
}

/** A string as the spec wants it: UTF-8, no longer than 4096 bytes (cut if it must be). */
export function encodeString(text: string): Buffer {
  const bytes = Buffer.from(text, "utf8");
  if (bytes.byteLength <= stringBytesMax) return bytes;
  // Cut on a character boundary: back up over UTF-8 continuation bytes (10xxxxxx).
  let end = stringBytesMax;
  while (end > 0 && ((bytes[end] ?? 0) & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end);
}

/** NBD_REP_SERVER data: the name's length, then the name. */
export function encodeServerData(name: string): Buffer {
  const encodedName = encodeString(name);
  const bytes = Buffer.allocUnsafe(4 + encodedName.byteLength);
  bytes.writeUInt32BE(encodedName.byteLength, 0);
  bytes.set(encodedName, 4);
  return bytes;
}

/** NBD_REP_INFO data for NBD_INFO_EXPORT: size and transmission flags. */
export function encodeExportInformation(sizeBytes: number, transmissionFlags: number): Buffer {
  const bytes = Buffer.allocUnsafe(12);
  bytes.writeUInt16BE(Information.Export, 0);
  bytes.writeBigUInt64BE(BigInt(sizeBytes), 2);
  bytes.writeUInt16BE(transmissionFlags, 10);
  return bytes;
}

export interface BlockSizes {
  minimumBytes: number;
  preferredBytes: number;
  maximumBytes: number;
}

/** NBD_REP_INFO data for NBD_INFO_BLOCK_SIZE. */
export function encodeBlockSizeInformation(sizes: BlockSizes): Buffer {
  const bytes = Buffer.allocUnsafe(14);
  bytes.writeUInt16BE(Information.BlockSize, 0);
  bytes.writeUInt32BE(sizes.minimumBytes, 2);
  bytes.writeUInt32BE(sizes.preferredBytes, 6);
  bytes.writeUInt32BE(sizes.maximumBytes, 10);
  return bytes;
}

/** NBD_REP_INFO data for NBD_INFO_NAME or NBD_INFO_DESCRIPTION: the type, then the text. */
export function encodeTextInformation(
  type: typeof Information.Name | typeof Information.Description,
  text: string,
): Buffer {
  const encodedText = encodeString(text);
  const bytes = Buffer.allocUnsafe(2 + encodedText.byteLength);
  bytes.writeUInt16BE(type, 0);
  bytes.set(encodedText, 2);
  return bytes;
}

/** The answer to NBD_OPT_EXPORT_NAME: size, flags and, unless the client declined, padding. */
export function encodeExportNameReply(
  sizeBytes: number,
  transmissionFlags: number,
  padding: boolean,
): Buffer {
  const bytes = Buffer.alloc(exportNameReplyBytes + (padding ? exportNameReplyPaddingBytes : 0));
  bytes.writeBigUInt64BE(BigInt(sizeBytes), 0);
  bytes.writeUInt16BE(transmissionFlags, 8);
  return bytes;
}

export interface RequestHeader {
  /** Command flags as sent. */
  flags: number;
  /** The command code as sent; it may be one this server does not know. */
  command: number;
  /** The client's opaque tag, echoed in the reply. */
  handle: bigint;
  offset: bigint;
  length: number;
}

export function decodeRequestHeader(bytes: Buffer): RequestHeader {
  const magic = bytes.readUInt32BE(0);
  if (magic !== requestMagic) {
    throw new NbdProtocolError(
      `cannot read a request: expected magic 0x${requestMagic.toString(16)}, got 0x${magic.toString(16)}`,
    );
  }
  return {
    flags: bytes.readUInt16BE(4),
    command: bytes.readUInt16BE(6),
    handle: bytes.readBigUInt64BE(8),
    offset: bytes.readBigUInt64BE(16),
    length: bytes.readUInt32BE(24),
  };
}

/** A simple reply's header; a successful read's data is sent right after it. */
export function encodeSimpleReplyHeader(error: ReplyError, handle: bigint): Buffer {
  const bytes = Buffer.allocUnsafe(simpleReplyHeaderBytes);
  bytes.writeUInt32BE(simpleReplyMagic, 0);
  bytes.writeUInt32BE(error, 4);
  bytes.writeBigUInt64BE(handle, 8);
  return bytes;
}
