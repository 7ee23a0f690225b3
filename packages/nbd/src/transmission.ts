// The transmission phase of one connection: read requests, run them against the
// export's BlockDevice, answer each with a simple reply. What a request may ask for is
// decided by request-decision.ts; this module moves bytes and awaits the backend.
//
// Model: one loop reads requests in order and starts each one without waiting for it,
// so many run at once and replies go out as they complete, in any order (each carries
// its handle). The loop waits for room before it reads: at most
// `requestsInflightPerConnectionMax` requests and `payloadBytesInflightPerConnectionMax`
// bytes of read and write data are in flight, counted until the reply has left (or the
// socket took it without backpressure). While the loop waits the socket reader stops
// reading, so a fast client is held back by TCP rather than by the server's memory.
//
// Ordering contract (from the spec's "Ordering of messages and writes"): a reply is sent
// only after its operation completed. NBD_CMD_FLUSH must not be answered before every
// write already answered is on non-volatile storage, and a command with
// NBD_CMD_FLAG_FUA not before its own data is. A backend operation completes only once
// it is durable on every replica (see block-device.ts), so a FUA command is answered
// with its own completion and nothing more, and a flush is the backend's `flush`: a
// barrier that sends nothing and waits for the export's writes in flight when it
// arrived (on any connection; more than the spec asks, which covers only writes
// already answered, and cheap). Neither waits for data to reach sleds, so neither
// fails or stalls when sleds are slow or too few.
//
// Failure model: a backend failure fails that request alone, with the error value
// `replyErrorOf` picks, and is logged. A request the client should not have sent is
// refused with an error value, or, when its data cannot be skipped, ends the
// connection (NbdProtocolError). `run` returns on NBD_CMD_DISC and throws when the
// stream ends or is cancelled (ConnectionClosedError); requests in flight then finish
// on their own, and `whenIdle` says when.

import type { Logger } from "@ballast/runtime";
import type { BlockDevice } from "./block-device.ts";
import { decodeRequestHeader, encodeSimpleReplyHeader, type RequestHeader } from "./codec.ts";
import type { NbdLimits } from "./constants.ts";
import { assertNever, BackendContractError, NbdProtocolError, replyErrorOf } from "./errors.ts";
import type { RepeatGate } from "./handshake.ts";
import { InflightLimiter } from "./inflight-limiter.ts";
import type { PayloadBudget } from "./payload-budget.ts";
import { decideRequest, type ExportGeometry, type RequestDecision } from "./request-decision.ts";
import type { SocketReader } from "./socket-reader.ts";
import type { SocketWriter } from "./socket-writer.ts";
import { ReplyError, requestHeaderBytes } from "./wire.ts";

export interface TransmissionContext {
  reader: SocketReader;
  writer: SocketWriter;
  device: BlockDevice;
  limits: NbdLimits;
  /** The server's payload bytes in flight over all its connections. */
  payloadBudget: PayloadBudget;
  logger: Logger;
  /** Fires when the connection closes: its operations then send no further attempt. */
  signal?: AbortSignal;
  /** The server's gate for lines that request after request repeats (handshake.ts). */
  repeats?: RepeatGate;
}

/** What a request is answered with: an error value, and a successful read's data. */
interface Reply {
  error: ReplyError;
  data?: Uint8Array;
}

const succeeded: Reply = { error: ReplyError.None };

type DecisionOf<Kind extends RequestDecision["kind"]> = Extract<RequestDecision, { kind: Kind }>;

export class Transmission {
  private readonly context: TransmissionContext;
  private readonly geometry: ExportGeometry;
  private readonly inflight: InflightLimiter;

  private readonly operationOptions: { signal?: AbortSignal };

  constructor(context: TransmissionContext) {
    this.context = context;
    this.operationOptions = context.signal === undefined ? {} : { signal: context.signal };
    this.geometry = {
      sizeBytes: context.device.sizeBytes,
      payloadBytesMax: context.limits.payloadBytesMax,
      readOnly: context.device.readOnly === true,
    };
    this.inflight = new InflightLimiter(
      context.limits.requestsInflightPerConnectionMax,
      context.limits.payloadBytesInflightPerConnectionMax,
    );
  }

  /** Resolves once every request started has been answered (or its reply dropped). */
  whenIdle(): Promise<void> {
    return this.inflight.whenIdle();
  }

  /** Serves requests until NBD_CMD_DISC. */
  async run(): Promise<void> {
    const { reader } = this.context;
    const { payloadBudget } = this.context;
    // Each wait is awaited only when it must wait: room, budget and bytes that are there
    // already are taken at once, so the requests one socket read brought in start in one
    // turn rather than one microtask hop per wait (five per write), each a promise.
    for (;;) {
      if (!this.inflight.hasRoomFor(0)) await this.inflight.whenRoomFor(0);
      const header = reader.readNow(requestHeaderBytes) ?? (await reader.read(requestHeaderBytes));
      const request = decodeRequestHeader(header);
      const decision = decideRequest(request, this.geometry);
      switch (decision.kind) {
        case "read":
          if (!this.inflight.hasRoomFor(decision.length)) {
            await this.inflight.whenRoomFor(decision.length);
          }
          if (!payloadBudget.tryTake(decision.length)) await payloadBudget.take(decision.length);
          this.start(request, decision.length, () => this.onRead(decision));
          break;
        case "write": {
          // Wait for room before reading the data: the data is what the limits bound.
          // Nothing else starts while this loop waits, so the room is still there.
          if (!this.inflight.hasRoomFor(decision.length)) {
            await this.inflight.whenRoomFor(decision.length);
          }
          if (!payloadBudget.tryTake(decision.length)) await payloadBudget.take(decision.length);
          let data: Buffer;
          try {
            data = reader.readNow(decision.length) ?? (await reader.read(decision.length, true));
          } catch (error) {
            payloadBudget.give(decision.length);
            throw error;
          }
          this.start(request, decision.length, () => this.onWrite(decision, data));
          break;
        }
        case "write-zeroes":
          this.start(request, 0, () => this.onWriteZeroes(decision));
          break;
        case "trim":
          this.start(request, 0, () => this.onTrim(decision));
          break;
        case "flush":
          this.start(request, 0, () => this.onFlush());
          break;
        case "refuse":
          this.context.logger.debug(
            { command: request.command, error: decision.error, reason: decision.reason },
            "request refused",
          );
          await reader.discard(decision.discardBytes);
          this.start(request, 0, async () => ({ error: decision.error }));
          break;
        case "disconnect":
          return;
        case "abandon":
          throw new NbdProtocolError(decision.reason);
        default:
          assertNever(decision, "request decision");
      }
    }
  }

  private async onRead({ offset, length }: DecisionOf<"read">): Promise<Reply> {
    const data = await this.context.device.read(offset, length, this.operationOptions);
    if (data.byteLength !== length) {
      throw new BackendContractError(
        `a read of ${length} bytes at offset ${offset} returned ${data.byteLength} bytes`,
      );
    }
    return { error: ReplyError.None, data };
  }

  private async onWrite(decision: DecisionOf<"write">, data: Buffer): Promise<Reply> {
    // With or without FUA: the completed write is durable on every replica already.
    await this.context.device.write(decision.offset, data, this.operationOptions);
    return succeeded;
  }

  private async onWriteZeroes(decision: DecisionOf<"write-zeroes">): Promise<Reply> {
    // NBD_CMD_FLAG_NO_HOLE needs nothing more: a Ballast volume allocates space when
    // it writes, zeroes or data alike, so no write can find its space taken by a hole.
    await this.context.device.writeZeroes(decision.offset, decision.length, this.operationOptions);
    return succeeded;
  }

  private async onTrim(decision: DecisionOf<"trim">): Promise<Reply> {
    await this.context.device.trim(decision.offset, decision.length, this.operationOptions);
    return succeeded;
  }

  private async onFlush(): Promise<Reply> {
    await this.context.device.flush();
    return succeeded;
  }

  /** Counts the request in flight and answers it once `operation` settles. */
  private start(
    request: RequestHeader,
    payloadBytes: number,
    operation: () => Promise<Reply>,
  ): void {
    this.inflight.begin(payloadBytes);
    this.answer(request, operation)
      .catch((error: unknown) => {
        this.context.logger.error({ err: error }, "answering a request failed");
      })
      .finally(() => {
        this.inflight.end(payloadBytes);
        if (payloadBytes > 0) this.context.payloadBudget.give(payloadBytes);
      });
  }

  private async answer(request: RequestHeader, operation: () => Promise<Reply>): Promise<void> {
    let reply: Reply;
    try {
      reply = await operation();
    } catch (failure) {
      reply = { error: replyErrorOf(failure, request.command) };
      // A client retrying while its volume is unavailable fails request after request:
      // a warning per export, command and error once per logRepeatIntervalMs; the rest
      // are debug lines.
      const { repeats, device } = this.context;
      const due =
        repeats === undefined
          ? { first: true, suppressed: 0 }
          : repeats.due(`request-failed/${device.name}/${request.command}/${reply.error}`);
      const fields = {
        err: failure,
        command: request.command,
        offset: String(request.offset),
        length: request.length,
        error: reply.error,
      };
      if (due === undefined) this.context.logger.debug(fields, "request failed");
      else {
        this.context.logger.warn(
          due.first ? fields : { ...fields, repeatsSuppressed: due.suppressed },
          "request failed",
        );
      }
    }
    await this.context.writer.send(
      encodeSimpleReplyHeader(reply.error, request.handle),
      reply.data,
    );
  }
}
