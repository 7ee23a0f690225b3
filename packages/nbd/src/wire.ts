// The NBD wire, in one place: magic numbers, message sizes, flags, option and command
// codes, reply types and error values, as the NBD protocol document (NetworkBlockDevice
// nbd, doc/proto.md) defines them. Every other module of the server takes its numbers
// from here, so a value is written once and named once. All integers on the wire are
// big-endian. Names spell out what the spec abbreviates; each constant's comment gives
// the spec's name so that the two can be read side by side.

/** "NBDMAGIC": the first eight bytes the server sends (the spec's INIT_PASSWD). */
export const greetingMagic = 0x4e42444d41474943n;

/** "IHAVEOPT": sent by the server after the greeting magic, and before every option. */
export const optionMagic = 0x49484156454f5054n;

/** The magic that opens every reply to an option (fixed newstyle only). */
export const optionReplyMagic = 0x3e889045565a9n;

/** NBD_REQUEST_MAGIC: opens every request in the transmission phase. */
export const requestMagic = 0x25609513;

/** NBD_SIMPLE_REPLY_MAGIC: opens every simple reply in the transmission phase. */
export const simpleReplyMagic = 0x67446698;

/** Greeting: magic (8), IHAVEOPT (8), handshake flags (2). */
export const greetingBytes = 18;

/** Client flags, sent once after the greeting. */
export const clientFlagsBytes = 4;

/** Option header: IHAVEOPT (8), option (4), data length (4). */
export const optionHeaderBytes = 16;

/** Option reply header: magic (8), option (4), reply type (4), data length (4). */
export const optionReplyHeaderBytes = 20;

/** Answer to NBD_OPT_EXPORT_NAME: export size (8) and transmission flags (2) … */
export const exportNameReplyBytes = 10;

/** … then these reserved zero bytes, unless the client negotiated NBD_FLAG_C_NO_ZEROES. */
export const exportNameReplyPaddingBytes = 124;

/** Request: magic (4), command flags (2), type (2), handle (8), offset (8), length (4). */
export const requestHeaderBytes = 28;

/** Simple reply: magic (4), error (4), handle (8); a successful read's data follows. */
export const simpleReplyHeaderBytes = 16;

/** NBD_OPT_INFO and NBD_OPT_GO data: name length (4), name, request count (2), requests (2 each). */
export const exportRequestFixedBytes = 6;
export const informationRequestBytes = 2;

/** The spec's bound on every string (export names, error messages): 4096 bytes of UTF-8. */
export const stringBytesMax = 4096;

/**
 * 2^25 bytes: the payload the spec says no server should take for a denial of service,
 * whatever maximum block size it advertises (and the largest a portable client sends).
 */
export const payloadBytesPortableMax = 32 * 1024 * 1024;

/** The largest value of a 32-bit length field. */
export const lengthMax = 0xffff_ffff;

/** Flags the server sends in the greeting. */
export const HandshakeFlag = {
  /** NBD_FLAG_FIXED_NEWSTYLE: options get replies, and unknown options an error reply. */
  FixedNewstyle: 1 << 0,
  /** NBD_FLAG_NO_ZEROES: the client may ask to skip the padding after NBD_OPT_EXPORT_NAME. */
  NoZeroes: 1 << 1,
} as const;

/** Flags the client sends back. Any other bit set is a reason to close the connection. */
export const ClientFlag = {
  /** NBD_FLAG_C_FIXED_NEWSTYLE. */
  FixedNewstyle: 1 << 0,
  /** NBD_FLAG_C_NO_ZEROES. */
  NoZeroes: 1 << 1,
} as const;

/** Every client flag this server knows. */
export const clientFlagsKnown = ClientFlag.FixedNewstyle | ClientFlag.NoZeroes;

/** Transmission flags: what the export is and which commands and command flags it takes. */
export const TransmissionFlag = {
  /** NBD_FLAG_HAS_FLAGS: always set. */
  HasFlags: 1 << 0,
  /** NBD_FLAG_READ_ONLY. */
  ReadOnly: 1 << 1,
  /** NBD_FLAG_SEND_FLUSH: NBD_CMD_FLUSH is accepted. */
  SendFlush: 1 << 2,
  /** NBD_FLAG_SEND_FUA: NBD_CMD_FLAG_FUA is accepted. */
  SendForceUnitAccess: 1 << 3,
  /** NBD_FLAG_ROTATIONAL. */
  Rotational: 1 << 4,
  /** NBD_FLAG_SEND_TRIM: NBD_CMD_TRIM is accepted. */
  SendTrim: 1 << 5,
  /** NBD_FLAG_SEND_WRITE_ZEROES: NBD_CMD_WRITE_ZEROES and NBD_CMD_FLAG_NO_HOLE are accepted. */
  SendWriteZeroes: 1 << 6,
  /** NBD_FLAG_SEND_DF: structured reads honour NBD_CMD_FLAG_DF. */
  SendDoNotFragment: 1 << 7,
  /** NBD_FLAG_CAN_MULTI_CONN: flush and FUA cover the writes of every connection. */
  CanMultipleConnections: 1 << 8,
  /** NBD_FLAG_SEND_RESIZE. */
  SendResize: 1 << 9,
  /** NBD_FLAG_SEND_CACHE. */
  SendCache: 1 << 10,
  /** NBD_FLAG_SEND_FAST_ZERO. */
  SendFastZero: 1 << 11,
} as const;

/** Options of the handshake phase (NBD_OPT_*). */
export const Option = {
  /** NBD_OPT_EXPORT_NAME: choose an export and enter transmission; cannot be answered with an error. */
  ExportName: 1,
  /** NBD_OPT_ABORT: the client ends the session. */
  Abort: 2,
  /** NBD_OPT_LIST: name every export. */
  List: 3,
  /** NBD_OPT_STARTTLS. */
  StartTls: 5,
  /** NBD_OPT_INFO: describe an export without entering transmission. */
  Info: 6,
  /** NBD_OPT_GO: describe an export and enter transmission. */
  Go: 7,
  /** NBD_OPT_STRUCTURED_REPLY. */
  StructuredReply: 8,
  /** NBD_OPT_LIST_META_CONTEXT. */
  ListMetaContext: 9,
  /** NBD_OPT_SET_META_CONTEXT. */
  SetMetaContext: 10,
} as const;
export type Option = (typeof Option)[keyof typeof Option];

const optionCodes: ReadonlySet<number> = new Set(Object.values(Option));

export function isOption(code: number): code is Option {
  return optionCodes.has(code);
}

/** Reply types to options (NBD_REP_*); errors have bit 31 set. */
export const OptionReply = {
  /** NBD_REP_ACK: the option succeeded, or a list has ended. */
  Acknowledge: 1,
  /** NBD_REP_SERVER: one export of a list. */
  Server: 2,
  /** NBD_REP_INFO: one item of information about an export. */
  Information: 3,
  /** NBD_REP_ERR_UNSUP: the server does not know or support the option. */
  ErrorUnsupported: 2 ** 31 + 1,
  /** NBD_REP_ERR_POLICY: known and valid, but refused by policy. */
  ErrorPolicy: 2 ** 31 + 2,
  /** NBD_REP_ERR_INVALID: known, but the data is malformed. */
  ErrorInvalid: 2 ** 31 + 3,
  /** NBD_REP_ERR_PLATFORM: not available where the server runs. */
  ErrorPlatform: 2 ** 31 + 4,
  /** NBD_REP_ERR_UNKNOWN: the named export is not available. */
  ErrorUnknown: 2 ** 31 + 6,
  /** NBD_REP_ERR_SHUTDOWN: the server is shutting down. */
  ErrorShutdown: 2 ** 31 + 7,
  /** NBD_REP_ERR_TOO_BIG: the request or its reply is too large to process. */
  ErrorTooBig: 2 ** 31 + 9,
} as const;
export type OptionReply = (typeof OptionReply)[keyof typeof OptionReply];

/** The option reply types that end an option with an error. */
export type OptionReplyError = Exclude<
  OptionReply,
  typeof OptionReply.Acknowledge | typeof OptionReply.Server | typeof OptionReply.Information
>;

/** Information types of NBD_REP_INFO, also what a client lists in NBD_OPT_INFO and NBD_OPT_GO. */
export const Information = {
  /** NBD_INFO_EXPORT: size and transmission flags; always sent. */
  Export: 0,
  /** NBD_INFO_NAME: the export's canonical name. */
  Name: 1,
  /** NBD_INFO_DESCRIPTION: text for a human. */
  Description: 2,
  /** NBD_INFO_BLOCK_SIZE: minimum, preferred and maximum block sizes. */
  BlockSize: 3,
} as const;

/** Commands of the transmission phase (NBD_CMD_*). */
export const Command = {
  /** NBD_CMD_READ. */
  Read: 0,
  /** NBD_CMD_WRITE: the only request followed by data. */
  Write: 1,
  /** NBD_CMD_DISC: the client ends the session; no reply. */
  Disconnect: 2,
  /** NBD_CMD_FLUSH. */
  Flush: 3,
  /** NBD_CMD_TRIM. */
  Trim: 4,
  /** NBD_CMD_CACHE. */
  Cache: 5,
  /** NBD_CMD_WRITE_ZEROES. */
  WriteZeroes: 6,
  /** NBD_CMD_BLOCK_STATUS. */
  BlockStatus: 7,
  /** NBD_CMD_RESIZE. */
  Resize: 8,
} as const;
export type Command = (typeof Command)[keyof typeof Command];

const commandCodes: ReadonlySet<number> = new Set(Object.values(Command));

export function isCommand(code: number): code is Command {
  return commandCodes.has(code);
}

/** Command flags of a request (NBD_CMD_FLAG_*). */
export const CommandFlag = {
  /** NBD_CMD_FLAG_FUA: reply only once the command's writes are durable. */
  ForceUnitAccess: 1 << 0,
  /** NBD_CMD_FLAG_NO_HOLE: write zeroes without leaving a hole. */
  NoHole: 1 << 1,
  /** NBD_CMD_FLAG_DF: do not fragment a structured read reply. */
  DoNotFragment: 1 << 2,
  /** NBD_CMD_FLAG_REQ_ONE: one extent per block status reply. */
  RequestOne: 1 << 3,
  /** NBD_CMD_FLAG_FAST_ZERO: fail write zeroes unless it is faster than a write. */
  FastZero: 1 << 4,
} as const;

/** Error values of replies (NBD_E*). Zero means success. */
export const ReplyError = {
  None: 0,
  /** NBD_EPERM. */
  NotPermitted: 1,
  /** NBD_EIO. */
  InputOutput: 5,
  /** NBD_ENOMEM. */
  OutOfMemory: 12,
  /** NBD_EINVAL. */
  InvalidArgument: 22,
  /** NBD_ENOSPC. */
  NoSpace: 28,
  /** NBD_EOVERFLOW. */
  Overflow: 75,
  /** NBD_ENOTSUP. */
  NotSupported: 95,
  /** NBD_ESHUTDOWN. */
  ShuttingDown: 108,
} as const;
export type ReplyError = (typeof ReplyError)[keyof typeof ReplyError];
