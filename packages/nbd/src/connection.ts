// One client connection from accept to close: the handshake, then the transmission
// phase, then an orderly or a hard disconnect.
//
// Model: `run` drives the phases and resolves once the socket is closed and no request
// of this connection is still running against the backend, so that the server's close
// can promise that in-flight requests finished. The connection owns its socket, its
// reader and its writer; nothing else touches them.
//
// How a connection ends, and why:
// - The client sends NBD_OPT_ABORT or NBD_CMD_DISC, or ends its side of the stream:
//   requests in flight finish and are answered, then the server ends its side and
//   closes once the last byte is flushed (a soft disconnect).
// - The server shuts down (`shutdown`): in the handshake, the socket is closed at once
//   (nothing is in flight); in transmission, reading stops, requests in flight finish
//   and are answered, then as above.
// - The server's close grace runs out (`terminate`): what is in flight is aborted and
//   the socket destroyed, whether or not the replies were flushed. A client that stops
//   reading would otherwise hold its replies' flush, and so `run`, forever.
// - The client breaks the protocol, misses the handshake deadline, or names a missing
//   export with NBD_OPT_EXPORT_NAME: the socket is destroyed at once (a hard
//   disconnect); requests already running still finish before `run` resolves, and
//   their replies are dropped.
// - The client moves no byte of a transfer for `clientStallMs` (takes none of its
//   replies, or sends none of a write's data): as `terminate`, for that connection
//   alone (its replies and its write hold payload bytes the other connections need).
// - The socket fails (reset, timeout of keep-alive): as a hard disconnect.
// Nothing a client does can make `run` reject, and nothing here throws into the
// server's accept path.

import type { Socket } from "node:net";
import type { Logger } from "@ballast/runtime";
import type { BlockDevice } from "./block-device.ts";
import type { NbdLimits } from "./constants.ts";
import { assertNever, ConnectionClosedError, NbdProtocolError } from "./errors.ts";
import { Handshake, type RepeatGate } from "./handshake.ts";
import type { PayloadBudget } from "./payload-budget.ts";
import { SocketReader } from "./socket-reader.ts";
import { SocketWriter } from "./socket-writer.ts";
import { Transmission } from "./transmission.ts";

export interface ConnectionContext {
  limits: NbdLimits;
  /** The server's payload bytes in flight over all its connections. */
  payloadBudget: PayloadBudget;
  logger: Logger;
  openExport(name: string): Promise<BlockDevice | undefined>;
  /** Once per device `openExport` returned, when this connection is done with it. */
  releaseExport(device: BlockDevice): void;
  listExports(): Promise<string[]>;
  /** The server's gate for lines that connection after connection repeats. */
  repeats?: RepeatGate;
}

export class NbdConnection {
  private readonly socket: Socket;
  private readonly context: ConnectionContext;
  private readonly logger: Logger;
  private readonly reader: SocketReader;
  private readonly writer: SocketWriter;
  private readonly closed: Promise<void>;
  private transmission: Transmission | undefined;
  /** The device the handshake chose, released once the connection is done with it. */
  private device: BlockDevice | undefined;
  private readonly aborted = new AbortController();
  private stopping = false;
  /**
   * The device being served, once the handshake chose one: what the gateway reports as
   * attached (a rollback is refused while a writable volume is attached).
   */
  attached: { name: string; readOnly: boolean } | undefined;

  constructor(socket: Socket, context: ConnectionContext) {
    this.socket = socket;
    this.context = context;
    this.logger = context.logger;
    // Errors end in 'close', which every waiter below listens for; they are only logged.
    socket.on("error", (error) => this.logger.debug({ err: error }, "socket error"));
    this.closed = new Promise((resolve) => socket.once("close", () => resolve()));
    // What the client had in flight when it went is retried no more (block-device.ts).
    socket.once("close", () => this.abandonInflight());
    const stallWatch = {
      stallMs: context.limits.clientStallMs,
      onStall: () => this.onClientStall(),
    };
    this.reader = new SocketReader(socket, context.limits.readAheadBytesMax, stallWatch);
    this.writer = new SocketWriter(socket, stallWatch);
  }

  /** Serves the connection to its end. Never rejects. */
  async run(): Promise<void> {
    let ending: "soft" | "hard";
    let clientGone = false;
    try {
      ending = await this.serve();
    } catch (error) {
      ending = this.onFailure(error);
      // The stream ended without NBD_CMD_DISC (or broke), not by our shutdown.
      clientGone = !this.stopping;
    }
    // Nobody will read the answers of what is still in flight: it is retried no more
    // (block-device.ts). After NBD_CMD_DISC, or while the server shuts down, it finishes.
    if (ending === "hard" || clientGone) this.abandonInflight();
    if (ending === "hard") this.socket.destroy();
    await this.transmission?.whenIdle();
    // No request of this connection runs any more, and none will start: the device goes.
    if (this.device !== undefined) this.context.releaseExport(this.device);
    this.device = undefined;
    if (ending === "soft") this.endSoftly();
    await this.closed;
  }

  /**
   * Stops taking requests; what is in flight finishes and is answered, then the
   * connection closes. A connection still in its handshake closes at once.
   */
  shutdown(): void {
    if (this.stopping) return;
    this.stopping = true;
    if (this.transmission === undefined) {
      this.socket.destroy();
      return;
    }
    this.reader.cancel(new ConnectionClosedError("the server is shutting down"));
  }

  /**
   * Ends the connection now: what is in flight is aborted (it sends no further attempt
   * and its caller waits no longer, block-device.ts) and the socket destroyed, so its
   * replies, queued or not, are dropped. The socket's close releases the writer's
   * waiter and every read, so `run` then resolves once the aborted requests settle.
   */
  terminate(): void {
    this.stopping = true;
    this.abandonInflight();
    this.socket.destroy();
  }

  private async serve(): Promise<"soft" | "hard"> {
    const { limits } = this.context;
    const deadline = setTimeout(() => {
      this.logRepeated(
        "warn",
        "handshake-deadline",
        { handshakeDeadlineMs: limits.handshakeDeadlineMs },
        "handshake not finished in time; disconnecting",
      );
      this.socket.destroy();
    }, limits.handshakeDeadlineMs);
    let outcome: Awaited<ReturnType<Handshake["run"]>>;
    try {
      outcome = await new Handshake({
        reader: this.reader,
        writer: this.writer,
        limits,
        logger: this.logger,
        closed: this.closed,
        openExport: this.context.openExport,
        releaseExport: this.context.releaseExport,
        listExports: this.context.listExports,
        ...(this.context.repeats === undefined ? {} : { repeats: this.context.repeats }),
      }).run();
    } finally {
      clearTimeout(deadline);
    }
    switch (outcome.kind) {
      case "aborted":
        this.logger.debug("client aborted the handshake");
        return "soft";
      case "refused": {
        // Said once per reason and interval: a client may ask again and again.
        const { repeats } = this.context;
        if (repeats === undefined || repeats.due(`refused/${outcome.reason}`) !== undefined) {
          this.logger.info({ reason: outcome.reason }, "export refused; disconnecting");
        }
        return "hard";
      }
      case "transmission": {
        const { device } = outcome;
        this.device = device;
        if (this.stopping) return "soft";
        this.attached = { name: device.name, readOnly: device.readOnly === true };
        // A client that reconnects in a loop opens its export connection after connection:
        // said once per export and interval (with a count of the rest), the rest at debug.
        this.logRepeated(
          "info",
          `opened/${device.name}`,
          { export: device.name, sizeBytes: device.sizeBytes },
          "export opened",
        );
        this.transmission = new Transmission({
          reader: this.reader,
          writer: this.writer,
          device,
          limits,
          payloadBudget: this.context.payloadBudget,
          logger: this.logger.child({ export: device.name }),
          signal: this.aborted.signal,
          ...(this.context.repeats === undefined ? {} : { repeats: this.context.repeats }),
        });
        await this.transmission.run();
        this.logger.debug("client disconnected");
        return "soft";
      }
      default:
        return assertNever(outcome, "handshake outcome");
    }
  }

  /**
   * The client moved no byte of a transfer for `clientStallMs` (socket-reader.ts,
   * socket-writer.ts): it is disconnected, and what it has in flight aborted, so that
   * the payload bytes its replies and its write hold go back to the server's budget.
   * `run` then ends as for a client gone. Called at most once by each of the two.
   */
  private onClientStall(): void {
    if (this.socket.destroyed) return;
    this.logRepeated(
      "warn",
      "client-stall",
      { clientStallMs: this.context.limits.clientStallMs },
      "client moved no byte of its replies or its write's data in time; disconnecting",
    );
    this.abandonInflight();
    this.socket.destroy();
  }

  private abandonInflight(): void {
    this.aborted.abort(new Error("the NBD client went away before the request finished"));
  }

  /** How to end after `error` ended the phase it happened in. */
  private onFailure(error: unknown): "soft" | "hard" {
    if (error instanceof ConnectionClosedError) {
      this.logger.debug({ reason: error.message }, "connection ended");
      return "soft";
    }
    if (error instanceof NbdProtocolError) {
      this.logRepeated(
        "warn",
        "protocol-violation",
        { reason: error.message },
        "protocol violation; disconnecting",
      );
      return "hard";
    }
    this.logRepeated("error", "connection-failed", { err: error }, "connection failed");
    return "hard";
  }

  /**
   * A line every connection may say again (a client in a reconnect loop, a fuzzer): at
   * `level` when the server's gate says it is due (the first of its kind, or an interval
   * after the last, with the count left out), at debug otherwise. Without a gate (a
   * connection made outside a server), every time.
   */
  private logRepeated(
    level: "info" | "warn" | "error",
    key: string,
    fields: Record<string, unknown>,
    message: string,
  ): void {
    const { repeats } = this.context;
    const due = repeats === undefined ? { first: true, suppressed: 0 } : repeats.due(key);
    if (due === undefined) {
      this.logger.debug(fields, message);
      return;
    }
    this.logger[level](
      due.first ? fields : { ...fields, repeatsSuppressed: due.suppressed },
      message,
    );
  }

  /** Ends our side once every reply is flushed, then lets go of the socket. */
  private endSoftly(): void {
    if (this.socket.destroyed) return;
    this.socket.end(() => this.socket.destroy());
  }
}
