// A small NBD client for tests: it speaks the protocol byte by byte as the spec writes
// it, so that a test can send exactly what a real client would (and what no real client
// would: bad magics, oversized lengths, unknown flags). It is deliberately independent
// of the server's reader and codec: it keeps one growing buffer and decodes by hand.

import { connect, type Socket } from "node:net";
import { ClientFlag, Command, Information, Option, OptionReply } from "../src/wire.ts";

export type ServerAddress = { port: number } | { path: string };

export interface OptionReplyMessage {
  option: number;
  type: number;
  data: Buffer;
}

export interface SimpleReplyMessage {
  error: number;
  handle: bigint;
  data: Buffer;
}

export interface RequestMessage {
  command: number;
  handle: bigint;
  flags?: number;
  offset?: bigint | number;
  length?: number;
  /** Write data, sent right after the header. */
  data?: Uint8Array;
}

export interface ExportDescription {
  sizeBytes: number;
  transmissionFlags: number;
  blockSizes?: { minimumBytes: number; preferredBytes: number; maximumBytes: number };
  name?: string;
  description?: string;
  replies: OptionReplyMessage[];
}

const waitMsDefault = 5000;

export class TestNbdClient {
  private readonly socket: Socket;
  private buffer = Buffer.alloc(0);
  private wake: (() => void) | undefined;
  private ended = false;
  /** Resolves when the server's side is gone (end or close). */
  readonly closed: Promise<void>;
  /** Read lengths by handle, so that a reply knows whether data follows it. */
  private readonly pendingReads = new Map<bigint, number>();
  /** The replies to the last `information` call, successful or not. */
  lastReplies: OptionReplyMessage[] = [];

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.on("data", (chunk: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, chunk]);
      this.wake?.();
    });
    socket.on("error", () => {});
    this.closed = new Promise((resolve) => {
      const finish = () => {
        this.ended = true;
        this.wake?.();
        resolve();
      };
      socket.once("end", finish);
      socket.once("close", finish);
    });
  }

  static connect(address: ServerAddress): Promise<TestNbdClient> {
    return new Promise((resolve, reject) => {
      const socket = "path" in address ? connect(address.path) : connect(address.port, "127.0.0.1");
      socket.once("error", reject);
      socket.once("connect", () => {
        socket.off("error", reject);
        resolve(new TestNbdClient(socket));
      });
    });
  }

  /** Connects, reads the greeting, sends the flags and opens `name` with NBD_OPT_GO. */
  static async open(
    address: ServerAddress,
    name: string,
  ): Promise<{ client: TestNbdClient; export: ExportDescription }> {
    const client = await TestNbdClient.connect(address);
    await client.readGreeting();
    client.sendClientFlags(ClientFlag.FixedNewstyle | ClientFlag.NoZeroes);
    const description = await client.information(Option.Go, name, [Information.BlockSize]);
    if (description === undefined) throw new Error(`NBD_OPT_GO for ${name} failed`);
    return { client, export: description };
  }

  /** Bytes received and not yet read. */
  get unreadBytes(): number {
    return this.buffer.byteLength;
  }

  async readBytes(bytes: number, waitMs = waitMsDefault): Promise<Buffer> {
    const deadline = Date.now() + waitMs;
    while (this.buffer.byteLength < bytes) {
      if (this.ended) {
        throw new Error(`connection closed with ${this.buffer.byteLength} of ${bytes} bytes`);
      }
      const remainingMs = deadline - Date.now();
      if (remainingMs <= 0) {
        throw new Error(`timed out waiting for ${bytes} bytes (${this.buffer.byteLength} here)`);
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, remainingMs);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = undefined;
    }
    const result = this.buffer.subarray(0, bytes);
    this.buffer = this.buffer.subarray(bytes);
    return result;
  }

  write(bytes: Uint8Array): void {
    this.socket.write(bytes);
  }

  /** True once the server has closed the connection, false if it is still open after `waitMs`. */
  async isClosedWithin(waitMs: number): Promise<boolean> {
    const timeout = new Promise<false>((resolve) => setTimeout(() => resolve(false), waitMs));
    return Promise.race([this.closed.then(() => true as const), timeout]);
  }

  /** Stops taking bytes from the socket, so that the server meets backpressure. */
  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }

  destroy(): void {
    this.socket.destroy();
  }

  /** Ends our side of the stream, as a client does after NBD_CMD_DISC. */
  end(): void {
    this.socket.end();
  }

  // Handshake.

  async readGreeting(): Promise<{ magic: string; option: string; handshakeFlags: number }> {
    const bytes = await this.readBytes(18);
    return {
      magic: bytes.subarray(0, 8).toString("latin1"),
      option: bytes.subarray(8, 16).toString("latin1"),
      handshakeFlags: bytes.readUInt16BE(16),
    };
  }

  sendClientFlags(flags: number): void {
    const bytes = Buffer.alloc(4);
    bytes.writeUInt32BE(flags >>> 0, 0);
    this.write(bytes);
  }

  sendOption(option: number, data: Uint8Array = new Uint8Array(0), length = data.byteLength): void {
    const header = Buffer.alloc(16);
    header.write("IHAVEOPT", 0, "latin1");
    header.writeUInt32BE(option, 8);
    header.writeUInt32BE(length, 12);
    this.write(Buffer.concat([header, data]));
  }

  async readOptionReply(): Promise<OptionReplyMessage> {
    const header = await this.readBytes(20);
    const magic = header.readBigUInt64BE(0);
    if (magic !== 0x3e889045565a9n) throw new Error(`bad option reply magic ${magic}`);
    const length = header.readUInt32BE(16);
    return {
      option: header.readUInt32BE(8),
      type: header.readUInt32BE(12),
      data: Buffer.from(await this.readBytes(length)),
    };
  }

  /** Replies up to and including the first that is not NBD_REP_INFO or NBD_REP_SERVER. */
  async readOptionReplies(): Promise<OptionReplyMessage[]> {
    const replies: OptionReplyMessage[] = [];
    for (;;) {
      const reply = await this.readOptionReply();
      replies.push(reply);
      if (reply.type !== OptionReply.Information && reply.type !== OptionReply.Server) {
        return replies;
      }
    }
  }

  /** NBD_OPT_INFO or NBD_OPT_GO data: name length, name, count, information types. */
  static exportRequestData(name: string, informationTypes: number[]): Buffer {
    const nameBytes = Buffer.from(name, "utf8");
    const bytes = Buffer.alloc(4 + nameBytes.byteLength + 2 + 2 * informationTypes.length);
    bytes.writeUInt32BE(nameBytes.byteLength, 0);
    nameBytes.copy(bytes, 4);
    bytes.writeUInt16BE(informationTypes.length, 4 + nameBytes.byteLength);
    for (const [index, type] of informationTypes.entries()) {
      bytes.writeUInt16BE(type, 4 + nameBytes.byteLength + 2 + 2 * index);
    }
    return bytes;
  }

  /**
   * Sends NBD_OPT_INFO or NBD_OPT_GO and decodes the replies; undefined (with the replies
   * kept in `lastReplies`) when the final reply is an error.
   */
  async information(
    option: number,
    name: string,
    informationTypes: number[],
  ): Promise<ExportDescription | undefined> {
    this.sendOption(option, TestNbdClient.exportRequestData(name, informationTypes));
    const replies = await this.readOptionReplies();
    this.lastReplies = replies;
    const final = replies.at(-1);
    if (final?.type !== OptionReply.Acknowledge) return undefined;
    const description: ExportDescription = { sizeBytes: -1, transmissionFlags: 0, replies };
    for (const reply of replies) {
      if (reply.type !== OptionReply.Information) continue;
      const type = reply.data.readUInt16BE(0);
      if (type === Information.Export) {
        description.sizeBytes = Number(reply.data.readBigUInt64BE(2));
        description.transmissionFlags = reply.data.readUInt16BE(10);
      } else if (type === Information.BlockSize) {
        description.blockSizes = {
          minimumBytes: reply.data.readUInt32BE(2),
          preferredBytes: reply.data.readUInt32BE(6),
          maximumBytes: reply.data.readUInt32BE(10),
        };
      } else if (type === Information.Name) {
        description.name = reply.data.subarray(2).toString("utf8");
      } else if (type === Information.Description) {
        description.description = reply.data.subarray(2).toString("utf8");
      }
    }
    return description;
  }

  // Transmission.

  sendRequest(request: RequestMessage): void {
    const header = Buffer.alloc(28);
    header.writeUInt32BE(0x25609513, 0);
    header.writeUInt16BE(request.flags ?? 0, 4);
    header.writeUInt16BE(request.command, 6);
    header.writeBigUInt64BE(request.handle, 8);
    header.writeBigUInt64BE(BigInt(request.offset ?? 0), 16);
    header.writeUInt32BE(request.length ?? request.data?.byteLength ?? 0, 24);
    if (request.command === Command.Read) {
      this.pendingReads.set(request.handle, request.length ?? 0);
    }
    this.write(request.data === undefined ? header : Buffer.concat([header, request.data]));
  }

  async readReply(waitMs = waitMsDefault): Promise<SimpleReplyMessage> {
    const header = await this.readBytes(16, waitMs);
    const magic = header.readUInt32BE(0);
    if (magic !== 0x67446698) throw new Error(`bad reply magic 0x${magic.toString(16)}`);
    const error = header.readUInt32BE(4);
    const handle = header.readBigUInt64BE(8);
    const readBytes = this.pendingReads.get(handle);
    this.pendingReads.delete(handle);
    const data =
      error === 0 && readBytes !== undefined
        ? Buffer.from(await this.readBytes(readBytes, waitMs))
        : Buffer.alloc(0);
    return { error, handle, data };
  }

  /** Sends one request and reads the next reply (for tests with one request in flight). */
  async roundTrip(request: RequestMessage): Promise<SimpleReplyMessage> {
    this.sendRequest(request);
    return this.readReply();
  }
}
