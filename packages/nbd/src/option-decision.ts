// What to do with one option of the handshake, decided from the option code and its
// data alone: no I/O, no export lookup, nothing to await. The handshake (handshake.ts)
// carries the decision out.
//
// Policy, following the spec's "fixed newstyle" rules: every option gets a reply, and
// an option this server does not support gets NBD_REP_ERR_UNSUP, so that the client can
// fall back. This server sends simple replies only, so NBD_OPT_STRUCTURED_REPLY and the
// metadata-context options (which need structured replies) are refused; without TLS,
// so is NBD_OPT_STARTTLS. Malformed data gets NBD_REP_ERR_INVALID. The one option that
// cannot carry an error, NBD_OPT_EXPORT_NAME, ends the connection instead.

import { assertNever } from "./errors.ts";
import {
  exportRequestFixedBytes,
  informationRequestBytes,
  isOption,
  Option,
  OptionReply,
  type OptionReplyError,
  stringBytesMax,
} from "./wire.ts";

/** An export named by NBD_OPT_INFO or NBD_OPT_GO, and the information items the client listed. */
export interface ExportRequest {
  name: string;
  informationRequested: ReadonlySet<number>;
}

export type OptionDecision =
  /** NBD_OPT_EXPORT_NAME: look the export up and enter transmission, or close if it is missing. */
  | { kind: "export-name"; name: string }
  /** NBD_OPT_INFO: describe the export and stay in the handshake. */
  | { kind: "info"; request: ExportRequest }
  /** NBD_OPT_GO: describe the export and enter transmission. */
  | { kind: "go"; request: ExportRequest }
  | { kind: "list" }
  | { kind: "abort" }
  /** Answer with an error reply and wait for the next option. */
  | { kind: "refuse"; reply: OptionReplyError; message: string }
  /** The option cannot be answered at all: close the connection. */
  | { kind: "abandon"; reason: string };

export function decideOption(option: number, data: Buffer): OptionDecision {
  if (!isOption(option)) {
    return refuse(OptionReply.ErrorUnsupported, `option ${option} is not supported`);
  }
  switch (option) {
    case Option.ExportName: {
      const name = decodeString(data);
      if (name === undefined) {
        return {
          kind: "abandon",
          reason: `NBD_OPT_EXPORT_NAME carried a name that is not a valid string (${data.byteLength} bytes)`,
        };
      }
      return { kind: "export-name", name };
    }
    case Option.Abort:
      // The spec asks the server to ignore any data sent with NBD_OPT_ABORT.
      return { kind: "abort" };
    case Option.List:
      if (data.byteLength !== 0) {
        return refuse(
          OptionReply.ErrorInvalid,
          `NBD_OPT_LIST takes no data, got ${data.byteLength} bytes`,
        );
      }
      return { kind: "list" };
    case Option.StartTls:
      return refuse(OptionReply.ErrorUnsupported, "this server does not offer TLS");
    case Option.Info:
    case Option.Go: {
      const request = decodeExportRequest(data);
      if (typeof request === "string") return refuse(OptionReply.ErrorInvalid, request);
      return option === Option.Info ? { kind: "info", request } : { kind: "go", request };
    }
    case Option.StructuredReply:
      return refuse(OptionReply.ErrorUnsupported, "this server sends simple replies only");
    case Option.ListMetaContext:
    case Option.SetMetaContext:
      return refuse(
        OptionReply.ErrorUnsupported,
        "this server has no metadata contexts (they need structured replies)",
      );
    default:
      return assertNever(option, "option");
  }
}

function refuse(reply: OptionReplyError, message: string): OptionDecision {
  return { kind: "refuse", reply, message };
}

/**
 * The data of NBD_OPT_INFO and NBD_OPT_GO: name length (4), name, count (2), then count
 * information types (2 each), and nothing after. Returns why it is malformed otherwise.
 */
export function decodeExportRequest(data: Buffer): ExportRequest | string {
  if (data.byteLength < exportRequestFixedBytes) {
    return `the option data must be at least ${exportRequestFixedBytes} bytes, got ${data.byteLength}`;
  }
  const nameBytes = data.readUInt32BE(0);
  if (nameBytes > data.byteLength - exportRequestFixedBytes) {
    return `the name length ${nameBytes} does not fit in ${data.byteLength} bytes of option data`;
  }
  const name = decodeString(data.subarray(4, 4 + nameBytes));
  if (name === undefined) {
    return "the export name is not valid UTF-8 of at most 4096 bytes without NUL";
  }
  const countAt = 4 + nameBytes;
  const count = data.readUInt16BE(countAt);
  const expectedBytes = exportRequestFixedBytes + nameBytes + count * informationRequestBytes;
  if (data.byteLength !== expectedBytes) {
    return `${count} information requests need ${expectedBytes} bytes of option data, got ${data.byteLength}`;
  }
  const informationRequested = new Set<number>();
  for (let index = 0; index < count; index++) {
    informationRequested.add(data.readUInt16BE(countAt + 2 + index * informationRequestBytes));
  }
  return { name, informationRequested };
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** A protocol string: UTF-8, at most 4096 bytes, no NUL. Undefined if `bytes` is not one. */
export function decodeString(bytes: Uint8Array): string | undefined {
  if (bytes.byteLength > stringBytesMax || bytes.includes(0)) return undefined;
  try {
    return utf8.decode(bytes);
  } catch {
    return undefined;
  }
}
