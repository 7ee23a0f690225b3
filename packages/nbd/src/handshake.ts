// The handshake phase of one connection: the fixed newstyle greeting, the client's
// flags, then option haggling until the client picks an export (NBD_OPT_GO or
// NBD_OPT_EXPORT_NAME) or leaves (NBD_OPT_ABORT). What each option means is decided by
// option-decision.ts; this module reads the options, looks exports up and writes the
// replies.
//
// What the server offers: simple replies only (structured replies are refused, which
// every client handles by falling back), block sizes of 512 minimum, 4096 preferred
// and the maximum payload as maximum, sent with every NBD_OPT_INFO and NBD_OPT_GO
// whether asked for or not (the spec allows unrequested information, and a client that
// did not ask still learns the constraints). Exports are not required to be opened
// with NBD_INFO_BLOCK_SIZE; a client that ignores the sizes gets NBD_EINVAL for
// misaligned requests, which is what the spec asks of such a server.
//
// Failure model: a client that breaks a framing rule (bad magic, unknown flags, an
// option longer than `optionBytesMax`) gets NbdProtocolError and a hard disconnect;
// the option data is not read. A failed export lookup is an error reply to
// NBD_OPT_INFO and NBD_OPT_GO, and a hard disconnect after NBD_OPT_EXPORT_NAME, which
// cannot carry an error. The connection sets the deadline for the whole phase, and a
// lookup still running when the socket closes is abandoned.

import type { Logger, RepeatDue } from "@ballast/runtime";
import type { BlockDevice } from "./block-device.ts";
import {
  decodeClientFlags,
  decodeOptionHeader,
  encodeBlockSizeInformation,
  encodeExportInformation,
  encodeExportNameReply,
  encodeGreeting,
  encodeOptionReply,
  encodeServerData,
  encodeString,
  encodeTextInformation,
} from "./codec.ts";
import { blockBytesMin, blockBytesPreferred, type NbdLimits } from "./constants.ts";
import { assertNever, ConnectionClosedError, NbdProtocolError } from "./errors.ts";
import { decideOption, type ExportRequest } from "./option-decision.ts";
import type { SocketReader } from "./socket-reader.ts";
import type { SocketWriter } from "./socket-writer.ts";
import {
  ClientFlag,
  clientFlagsBytes,
  Information,
  Option,
  OptionReply,
  type OptionReplyError,
  optionHeaderBytes,
  TransmissionFlag,
} from "./wire.ts";

/**
 * What every export offers. NBD_FLAG_CAN_MULTI_CONN is safe because a Ballast flush is
 * per volume: it makes durable every write acknowledged before it, whichever connection
 * (or gateway) wrote it, and an acknowledged write is visible to reads on every
 * connection, since all of them reach the same replicated volume.
 */
export const transmissionFlags =
  TransmissionFlag.HasFlags |
  TransmissionFlag.SendFlush |
  TransmissionFlag.SendForceUnitAccess |
  TransmissionFlag.SendTrim |
  TransmissionFlag.SendWriteZeroes |
  TransmissionFlag.CanMultipleConnections;

/**
 * The flags of a read-only export (a snapshot): NBD_FLAG_READ_ONLY, and none of the
 * commands that change data (they would answer EPERM).
 */
export const readOnlyTransmissionFlags =
  TransmissionFlag.HasFlags |
  TransmissionFlag.ReadOnly |
  TransmissionFlag.SendFlush |
  TransmissionFlag.CanMultipleConnections;

function transmissionFlagsOf(device: { readOnly?: boolean }): number {
  return device.readOnly === true ? readOnlyTransmissionFlags : transmissionFlags;
}

/**
 * The server's keyed "once per interval" gate (RepeatLog with its clock), for lines one
 * connection after another repeats: a client that reconnects while its export cannot
 * open would otherwise log each attempt.
 */
export interface RepeatGate {
  due(key: string): RepeatDue | undefined;
  end(key: string): { suppressed: number } | undefined;
}

export interface HandshakeContext {
  reader: SocketReader;
  writer: SocketWriter;
  limits: NbdLimits;
  logger: Logger;
  /** Resolves when the socket has closed; a lookup still running is then abandoned. */
  closed: Promise<void>;
  openExport(name: string): Promise<BlockDevice | undefined>;
  /**
   * Once per device `openExport` returned that the handshake does not hand on to
   * transmission (described only, refused, or found after the connection closed).
   */
  releaseExport(device: BlockDevice): void;
  listExports(): Promise<string[]>;
  repeats?: RepeatGate;
}

export type HandshakeOutcome =
  /** The client chose `device`; requests follow. */
  | { kind: "transmission"; device: BlockDevice }
  /** The client sent NBD_OPT_ABORT and was answered. */
  | { kind: "aborted" }
  /** NBD_OPT_EXPORT_NAME named an export that cannot be served; the session must end. */
  | { kind: "refused"; reason: string };

type Lookup = { device: BlockDevice } | { failure: string };

export class Handshake {
  private readonly context: HandshakeContext;
  /** Whether the client asked for no padding after NBD_OPT_EXPORT_NAME. */
  private noZeroes = false;

  constructor(context: HandshakeContext) {
    this.context = context;
  }

  async run(): Promise<HandshakeOutcome> {
    const { reader, writer } = this.context;
    await writer.send(encodeGreeting());
    const clientFlags = decodeClientFlags(await reader.read(clientFlagsBytes));
    this.noZeroes = (clientFlags & ClientFlag.NoZeroes) !== 0;
    for (;;) {
      const outcome = await this.onOption();
      if (outcome !== undefined) return outcome;
    }
  }

  /** Reads and answers one option; returns an outcome when the handshake is over. */
  private async onOption(): Promise<HandshakeOutcome | undefined> {
    const { reader, limits } = this.context;
    const header = decodeOptionHeader(await reader.read(optionHeaderBytes));
    if (header.length > limits.optionBytesMax) {
      throw new NbdProtocolError(
        `option ${header.option} has ${header.length} bytes of data, over the ${limits.optionBytesMax}-byte limit`,
      );
    }
    const data = await reader.read(header.length);
    const decision = decideOption(header.option, data);
    switch (decision.kind) {
      case "export-name":
        return this.onExportName(decision.name);
      case "info":
        await this.onInformation(Option.Info, decision.request);
        return undefined;
      case "go":
        return this.onInformation(Option.Go, decision.request);
      case "list":
        await this.onList();
        return undefined;
      case "abort":
        await this.reply(Option.Abort, OptionReply.Acknowledge);
        return { kind: "aborted" };
      case "refuse":
        this.context.logger.debug(
          { option: header.option, reply: decision.reply, reason: decision.message },
          "option refused",
        );
        await this.replyError(header.option, decision.reply, decision.message);
        return undefined;
      case "abandon":
        throw new NbdProtocolError(decision.reason);
      default:
        return assertNever(decision, "option decision");
    }
  }

  private async onExportName(name: string): Promise<HandshakeOutcome> {
    const lookup = await this.lookUp(name);
    if ("failure" in lookup) return { kind: "refused", reason: lookup.failure };
    const { device } = lookup;
    try {
      await this.context.writer.send(
        encodeExportNameReply(device.sizeBytes, transmissionFlagsOf(device), !this.noZeroes),
      );
    } catch (error) {
      this.context.releaseExport(device);
      throw error;
    }
    return { kind: "transmission", device };
  }

  /** NBD_OPT_INFO and NBD_OPT_GO: the same replies; GO then enters transmission. */
  private async onInformation(
    option: typeof Option.Info | typeof Option.Go,
    request: ExportRequest,
  ): Promise<HandshakeOutcome | undefined> {
    const lookup = await this.lookUp(request.name);
    if ("failure" in lookup) {
      await this.replyError(option, OptionReply.ErrorUnknown, lookup.failure);
      return undefined;
    }
    const { device } = lookup;
    const wanted = request.informationRequested;
    const information = (data: Buffer) => encodeOptionReply(option, OptionReply.Information, data);
    const replies = [
      information(encodeExportInformation(device.sizeBytes, transmissionFlagsOf(device))),
      information(
        encodeBlockSizeInformation({
          minimumBytes: blockBytesMin,
          preferredBytes: blockBytesPreferred,
          maximumBytes: this.context.limits.payloadBytesMax,
        }),
      ),
    ];
    if (wanted.has(Information.Name)) {
      replies.push(information(encodeTextInformation(Information.Name, device.name)));
    }
    if (wanted.has(Information.Description)) {
      const description = `Ballast volume ${device.name}`;
      replies.push(information(encodeTextInformation(Information.Description, description)));
    }
    replies.push(encodeOptionReply(option, OptionReply.Acknowledge));
    let handedOn = false;
    try {
      await this.context.writer.send(Buffer.concat(replies));
      handedOn = option === Option.Go;
    } finally {
      // Only NBD_OPT_GO keeps the device: NBD_OPT_INFO described it, and is done.
      if (!handedOn) this.context.releaseExport(device);
    }
    return handedOn ? { kind: "transmission", device } : undefined;
  }

  private async onList(): Promise<void> {
    const { listExports, limits, logger } = this.context;
    let names: string[];
    try {
      names = await this.untilClosed(listExports());
    } catch (error) {
      if (error instanceof ConnectionClosedError) throw error;
      logger.warn({ err: error }, "listing exports failed");
      // The spec has no reply for a server-side fault; this one says "not available
      // here", and any error reply lets the client go on with other options.
      await this.replyError(
        Option.List,
        OptionReply.ErrorPlatform,
        `cannot list exports: ${messageOf(error)}`,
      );
      return;
    }
    if (names.length > limits.exportsListedMax) {
      await this.replyError(
        Option.List,
        OptionReply.ErrorTooBig,
        `${names.length} exports are more than the ${limits.exportsListedMax} one list may hold`,
      );
      return;
    }
    const replies = names.map((name) =>
      encodeOptionReply(Option.List, OptionReply.Server, encodeServerData(name)),
    );
    replies.push(encodeOptionReply(Option.List, OptionReply.Acknowledge));
    await this.context.writer.send(Buffer.concat(replies));
  }

  private async lookUp(name: string): Promise<Lookup> {
    const { openExport, releaseExport, logger } = this.context;
    let device: BlockDevice | undefined;
    const opening = openExport(name);
    try {
      device = await this.untilClosed(opening);
    } catch (error) {
      if (error instanceof ConnectionClosedError) {
        // Nobody will use what the lookup finds now: it goes back as soon as it is found.
        opening.then(
          (late) => late !== undefined && releaseExport(late),
          () => undefined,
        );
        throw error;
      }
      const { repeats } = this.context;
      const due =
        repeats === undefined ? { first: true, suppressed: 0 } : repeats.due(`open-failed/${name}`);
      if (due !== undefined) {
        logger.warn(
          { err: error, export: name, ...(due.first ? {} : { repeatsSuppressed: due.suppressed }) },
          "opening an export failed",
        );
      }
      return { failure: `cannot open export ${JSON.stringify(name)}: ${messageOf(error)}` };
    }
    const failed = this.context.repeats?.end(`open-failed/${name}`);
    if (failed !== undefined) {
      logger.info(
        { export: name, repeatsSuppressed: failed.suppressed },
        "an export that failed to open opens again",
      );
    }
    if (device === undefined) return { failure: `no export named ${JSON.stringify(name)}` };
    // The backend is an edge too: a size that cannot be sent would corrupt the reply.
    if (!Number.isSafeInteger(device.sizeBytes) || device.sizeBytes < 0) {
      logger.error({ export: name, sizeBytes: device.sizeBytes }, "export has an invalid size");
      releaseExport(device);
      return { failure: `export ${JSON.stringify(name)} reports an invalid size` };
    }
    return { device };
  }

  /**
   * `work`, unless the connection closes first: a lookup that never settles must not
   * keep a dead connection (or the server's close) waiting. Its late result is ignored.
   */
  private untilClosed<T>(work: Promise<T>): Promise<T> {
    const closed = this.context.closed.then((): never => {
      throw new ConnectionClosedError("the connection closed during an export lookup");
    });
    return Promise.race([work, closed]);
  }

  private reply(option: number, reply: OptionReply): Promise<void> {
    return this.context.writer.send(encodeOptionReply(option, reply));
  }

  private replyError(option: number, reply: OptionReplyError, message: string): Promise<void> {
    return this.context.writer.send(encodeOptionReply(option, reply, encodeString(message)));
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
