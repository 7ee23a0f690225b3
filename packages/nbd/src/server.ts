// The NBD server: listens on a TCP address or a Unix socket and serves each accepted
// connection (connection.ts) until it ends. Exports are looked up by name through the
// caller's `openExport`, once per NBD_OPT_INFO, NBD_OPT_GO or NBD_OPT_EXPORT_NAME.
//
// Failure model: everything that goes wrong on a connection stays on that connection;
// the server logs it and keeps serving the others. Past `connectionsMax` connections a
// new one is closed as soon as it is accepted. `close` stops listening, asks every
// connection to stop taking requests, and resolves once the requests in flight have
// been answered and every socket is closed; or, past `closeGraceMs`, aborts what is
// still in flight and destroys the connections left, so that no client (one that stops
// reading its replies) and no backend (one that does not answer) can hold a stop
// forever. The backend's contract is that an aborted operation settles at once.

import { createServer, type Server, type Socket } from "node:net";
import { createLogger, type Logger, RepeatLog, settlesWithin } from "@ballast/runtime";
import type { BlockDevice } from "./block-device.ts";
import { NbdConnection } from "./connection.ts";
import { type NbdLimits, resolveLimits } from "./constants.ts";
import { assert } from "./errors.ts";
import { PayloadBudget } from "./payload-budget.ts";

export interface NbdServerOptions {
  /** Looks up an export by name (the volume name); undefined → NBD_REP_ERR_UNKNOWN. */
  openExport(name: string): Promise<BlockDevice | undefined>;
  /**
   * Called once for each device `openExport` returned, when its connection is done with
   * it: at once for a device only described (NBD_OPT_INFO, a refusal, a lookup that
   * settled after its connection closed), and for the device served, once the
   * connection has ended and none of its requests is still running.
   */
  releaseExport?(device: BlockDevice): void;
  /** Names for NBD_OPT_LIST. */
  listExports(): Promise<string[]>;
  logger?: Logger;
  limits?: Partial<NbdLimits>;
  /** A monotonic clock (ms), for how often repeated refusals are logged. */
  clock?: () => number;
  /** How often refusals that go on are logged again (constants.logRepeatIntervalMs). */
  logRepeatIntervalMs?: number;
}

export type ListenAddress = { host: string; port: number } | { path: string };

export interface BoundAddress {
  /** The TCP port bound (the one chosen, when 0 was asked for). */
  port?: number;
  /** The IP address bound, a host name resolved (`0.0.0.0` or `::` for every one). */
  host?: string;
  /** The Unix socket's path. */
  path?: string;
}

export class NbdServer {
  private readonly options: NbdServerOptions;
  private readonly limits: NbdLimits;
  private readonly payloadBudget: PayloadBudget;
  private readonly logger: Logger;
  private readonly connections = new Set<NbdConnection>();
  private readonly running = new Set<Promise<void>>();
  private server: Server | undefined;
  private nextConnectionId = 1;
  private closing = false;
  /**
   * Connections turned away (at connectionsMax, or closing): a client that reconnects at
   * once would have a line each, as fast as it can connect. Said when they begin, then
   * once per logRepeatIntervalMs with the count, and once a connection is taken again.
   */
  private readonly refusals: RepeatLog;
  private readonly clock: () => number;

  /** Throws NbdLimitsError if `options.limits` cannot work together. */
  constructor(options: NbdServerOptions) {
    this.options = options;
    this.limits = resolveLimits(options.limits);
    this.payloadBudget = new PayloadBudget(this.limits.payloadBytesInflightMax);
    this.refusals = new RepeatLog(options.logRepeatIntervalMs);
    this.clock = options.clock ?? (() => performance.now());
    this.logger = (
      options.logger ?? createLogger({ service: "gateway", nodeId: "nbd", level: "silent" })
    ).child({ component: "nbd" });
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  /**
   * Open connections per writable device name, past their handshake (read-only ones,
   * such as snapshot exports, are left out: they never write).
   */
  attachedDevices(): Record<string, number> {
    const counts: Record<string, number> = {};
    for (const connection of this.connections) {
      const attached = connection.attached;
      if (attached === undefined || attached.readOnly) continue;
      counts[attached.name] = (counts[attached.name] ?? 0) + 1;
    }
    return counts;
  }

  async listen(address: ListenAddress): Promise<BoundAddress> {
    assert(this.server === undefined, "an NbdServer listens once");
    const server = createServer({
      // Replies to requests in flight still go out after the client ends its side.
      allowHalfOpen: true,
      // The spec asks both ends to disable Nagle: replies are small and latency-bound.
      noDelay: true,
      keepAlive: true,
      keepAliveInitialDelay: this.limits.keepAliveInitialDelayMs,
    });
    server.on("connection", (socket) => this.onConnection(socket));
    this.server = server;
    try {
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        const listening = () => {
          server.off("error", reject);
          resolve();
        };
        if ("path" in address) server.listen(address.path, listening);
        else server.listen(address.port, address.host, listening);
      });
    } catch (error) {
      this.server = undefined;
      throw error;
    }
    server.on("error", (error) => this.logger.error({ err: error }, "listener failed"));
    const bound = server.address();
    assert(bound !== null, "a listening server has an address");
    const result: BoundAddress =
      typeof bound === "string" ? { path: bound } : { port: bound.port, host: bound.address };
    this.logger.info(result, "NBD server listening");
    return result;
  }

  /**
   * Stops listening and ends every connection once its requests in flight are answered,
   * or, past `closeGraceMs`, aborts them and destroys the connections left.
   */
  async close(): Promise<void> {
    this.closing = true;
    const server = this.server;
    // Resolves once every accepted socket is closed too (net.Server's close).
    const stopped =
      server === undefined || !server.listening
        ? Promise.resolve()
        : new Promise<void>((resolve) => server.close(() => resolve()));
    for (const connection of this.connections) connection.shutdown();
    // No connection is accepted from here on, so `running` holds every one there will be.
    const ended = Promise.all([...this.running]);
    if (!(await settlesWithin(ended, this.limits.closeGraceMs))) {
      this.logger.warn(
        { closeGraceMs: this.limits.closeGraceMs, connections: this.connections.size },
        "connections not ended within the close grace; aborting their requests and destroying them",
      );
      for (const connection of this.connections) connection.terminate();
    }
    await Promise.all([stopped, ended]);
    this.logger.info("NBD server closed");
  }

  private onConnection(socket: Socket): void {
    const remote =
      socket.remoteAddress === undefined ? "unix" : `${socket.remoteAddress}:${socket.remotePort}`;
    if (this.closing || this.connections.size >= this.limits.connectionsMax) {
      const due = this.refusals.due("refused", this.clock());
      if (due !== undefined) {
        this.logger.warn(
          {
            remote,
            connections: this.connections.size,
            closing: this.closing,
            ...(due.first ? {} : { repeatsSuppressed: due.suppressed }),
          },
          "connection refused",
        );
      }
      socket.on("error", () => {});
      socket.destroy();
      return;
    }
    const refused = this.refusals.end("refused");
    if (refused !== undefined) {
      this.logger.info(
        { remote, repeatsSuppressed: refused.suppressed },
        "a connection is taken again after connections were refused",
      );
    }
    const id = this.nextConnectionId++;
    const logger = this.logger.child({ connection: id, remote });
    const connection = new NbdConnection(socket, {
      limits: this.limits,
      payloadBudget: this.payloadBudget,
      logger,
      openExport: (name) => this.options.openExport(name),
      releaseExport: (device) => this.options.releaseExport?.(device),
      listExports: () => this.options.listExports(),
      repeats: {
        due: (key) => this.refusals.due(key, this.clock()),
        end: (key) => this.refusals.end(key),
      },
    });
    this.connections.add(connection);
    logger.debug("connection accepted");
    const running = connection.run().finally(() => {
      this.connections.delete(connection);
      this.running.delete(running);
      logger.debug("connection closed");
    });
    this.running.add(running);
  }
}
