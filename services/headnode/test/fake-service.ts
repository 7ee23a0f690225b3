// The parts of a Service the head node shell uses, in place of NATS, for the shell's
// scenario tests (headnode.test.ts, headnode-faults.test.ts, headnode-leftovers.test.ts): subjects are served from a
// map and called directly, reports and questions about leftover directories to the
// coordinator are kept and answered by functions the test sets (by default: no
// coordinator), and nothing else answers.

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BallastError, ErrorCode, type Message, type MessageOf, subjects } from "@ballast/protocol";
import { type CommonConfig, createLogger, type Service } from "@ballast/runtime";
import { HeadNode } from "../src/headnode.ts";

type Handler = (message: Message) => unknown;
export type Report = MessageOf<"headnode.report.v1">;
export type LeftoversAsk = MessageOf<"headnode.leftovers.v1">;

export class FakeService {
  readonly nodeId = "head-1";
  /** Its data directory's id (data-dir.ts), as a real service has from identity.json. */
  readonly disk = "d".repeat(32);
  readonly logger = createLogger({ service: "headnode", nodeId: "head-1", level: "silent" });
  readonly served = new Map<string, Handler>();
  /** What the node last set as its node info. */
  description: (() => Record<string, unknown>) | undefined;
  /** Every report the node sent to the coordinator. */
  readonly reports: Report[] = [];
  /** How the fake coordinator answers a report; throwing means no coordinator. */
  answerReport: (report: Report) => unknown = () => {
    throw new BallastError(ErrorCode.Unavailable, "no coordinator");
  };
  /**
   * How fake sleds answer a request to `sled` (unit test): throwing means that sled does
   * not answer (the default: no sleds in these tests).
   */
  answerSled: (sled: string, message: Message) => unknown = (sled) => {
    throw new BallastError(ErrorCode.Unavailable, `no sled ${sled} in this test`);
  };
  /** Every question about leftover directories the node sent to the coordinator. */
  readonly leftoverAsks: LeftoversAsk[] = [];
  /**
   * How the fake coordinator answers `headnode.leftovers.v1`; throwing means no
   * coordinator (the default: static assignments keep every directory).
   */
  answerLeftovers: (ask: LeftoversAsk) => unknown = () => {
    throw new BallastError(ErrorCode.Unavailable, "no coordinator");
  };
  /**
   * Test hook: a subject's stop, once it takes no new message, also waits for the gate
   * set here for that subject (as a stop on NATS waits a round trip), so a test can
   * hold a shell mid-stop and interleave something else.
   */
  readonly stopGates = new Map<string, Promise<void>>();
  private closers: (() => Promise<void>)[] = [];
  /**
   * Test hook: the NATS connection closed for good (an explicit close, revoked
   * credentials). As on nats.js, a publish or a subscription then throws.
   */
  connectionClosed = false;

  readonly bus = {
    connection: { isClosed: () => this.connectionClosed },
    request: async (subject: string, message?: Message) => {
      if (
        subject === subjects.coordinatorServices.build("headnode") &&
        message?.type === "headnode.report.v1"
      ) {
        this.reports.push(message);
        return this.answerReport(message);
      }
      if (
        subject === subjects.coordinatorServices.build("headnode") &&
        message?.type === "headnode.leftovers.v1"
      ) {
        this.leftoverAsks.push(message);
        return this.answerLeftovers(message);
      }
      const sledInboxes = subjects.node.kindPattern("sled").slice(0, -1);
      if (subject.startsWith(sledInboxes) && message !== undefined)
        return this.answerSled(subject.slice(sledInboxes.length), message);
      throw new BallastError(ErrorCode.Unavailable, `nothing answers ${subject} in this test`);
    },
    publish: () => {
      if (this.connectionClosed) throw closedConnection();
    },
  };

  serveInbox(_accept: readonly string[], dispatch: Handler) {
    return this.serve(subjects.node.build("headnode", this.nodeId), {}, dispatch);
  }

  /**
   * As the runtime's Service: a stop takes no new message, then waits for every handler
   * already called to finish (a shell that waits on its own held requests hangs here,
   * as it would on NATS).
   */
  serve(subject: string, _options: unknown, dispatch: Handler) {
    if (this.connectionClosed) throw closedConnection();
    const inFlight = new Set<Promise<unknown>>();
    const tracked: Handler = (message) => {
      let handling: Promise<unknown>;
      try {
        handling = Promise.resolve(dispatch(message));
      } catch (error) {
        handling = Promise.reject(error);
      }
      const settled = handling.then(
        () => undefined,
        () => undefined,
      );
      inFlight.add(settled);
      void settled.then(() => inFlight.delete(settled));
      return handling;
    };
    this.served.set(subject, tracked);
    return {
      stop: async () => {
        if (this.served.get(subject) === tracked) this.served.delete(subject);
        await this.stopGates.get(subject);
        await Promise.all(inFlight);
      },
    };
  }

  setDescription(describe: () => Record<string, unknown>): void {
    this.description = describe;
  }

  onClose(closer: () => Promise<void>): void {
    this.closers.push(closer);
  }

  async close(): Promise<void> {
    for (const closer of this.closers) await closer();
  }

  /** Sends to a served subject as a request would, and returns the answer. */
  async call(subject: string, message: Record<string, unknown>): Promise<unknown> {
    const handler = this.served.get(subject);
    if (handler === undefined) {
      throw new BallastError(ErrorCode.Unavailable, `nobody serves ${subject}`);
    }
    return handler(message as unknown as Message);
  }

  inbox(message: Record<string, unknown>) {
    return this.call(subjects.node.build("headnode", this.nodeId), message);
  }
}

/** What nats.js throws on a closed connection (its ClosedConnectionError). */
function closedConnection(): Error {
  return Object.assign(new Error("closed connection"), { name: "ClosedConnectionError" });
}

export interface StartedHeadNode {
  dataDir: string;
  service: FakeService;
  node: HeadNode;
  /** Closes the node (through its service) and deletes its data directory. */
  stop(): Promise<void>;
}

/**
 * A started head node on a fresh temporary data directory named from `prefix`.
 * `beforeStart` prepares the directory and the service before the node starts (what a
 * restarted node finds on its disk, how the coordinator will answer).
 */
export async function startHeadNode(
  prefix: string,
  beforeStart?: (dataDir: string, service: FakeService) => Promise<void> | void,
): Promise<StartedHeadNode> {
  const dataDir = await mkdtemp(join(tmpdir(), prefix));
  const service = new FakeService();
  await beforeStart?.(dataDir, service);
  const node = new HeadNode(
    service as unknown as Service,
    { dataDir } as unknown as CommonConfig,
    1,
  );
  node.start();
  return {
    dataDir,
    service,
    node,
    stop: async () => {
      await service.close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}
