// A minimal NBD client for the chaos workload: fixed newstyle handshake with NBD_OPT_GO,
// then simple (not structured) replies, one request at a time. It is written from the
// protocol spec, independent of the gateway's codec, so the chaos run checks the
// gateway as an outside client sees it. Any protocol surprise, timeout or closed socket
// rejects the request and poisons the connection: the caller drops it and reconnects.

import { connect, type Socket } from "node:net";

const nbdMagic = 0x4e42444d41474943n; // "NBDMAGIC"
const optionMagic = 0x49484156454f5054n; // "IHAVEOPT"
const optionReplyMagic = 0x3e889045565a9n;
const requestMagic = 0x25609513;
const simpleReplyMagic = 0x67446698;
const clientFixedNewstyle = 1;
const clientNoZeroes = 2;
const optionGo = 7;
const replyAck = 1;
const replyInfo = 3;
const infoExport = 0;

export const nbdCommand = { read: 0, write: 1, disconnect: 2, flush: 3, trim: 4, writeZeroes: 6 };

/** An error the server answered with (errno), as opposed to a lost connection. */
export class NbdReplyError extends Error {
  constructor(readonly errno: number) {
    super(`NBD server answered error ${errno}`);
  }
}

export class ChaosNbdClient {
  private buffer = Buffer.alloc(0);
  private wanted: { bytes: number; resolve: (data: Buffer) => void } | undefined;
  private failure: Error | undefined;
  private failWaiter: ((error: Error) => void) | undefined;
  private handle = 0n;
  sizeBytes = 0;

  private constructor(private readonly socket: Socket) {
    socket.on("data", (data: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, data]);
      this.pump();
    });
    const fail = (error: Error) => {
      this.failure ??= error;
      this.failWaiter?.(this.failure);
    };
    socket.on("error", fail);
    socket.on("close", () => fail(new Error("NBD connection closed")));
  }

  /** Connects and negotiates `exportName`, within `timeoutMs`. */
  static async open(port: number, exportName: string, timeoutMs: number): Promise<ChaosNbdClient> {
    const socket = connect({ host: "127.0.0.1", port });
    socket.setNoDelay(true);
    const client = new ChaosNbdClient(socket);
    try {
      await client.withTimeout(timeoutMs, async () => {
        const greeting = await client.take(18);
        if (
          greeting.readBigUInt64BE(0) !== nbdMagic ||
          greeting.readBigUInt64BE(8) !== optionMagic
        ) {
          throw new Error("not an NBD newstyle server");
        }
        const flags = Buffer.alloc(4);
        flags.writeUInt32BE(clientFixedNewstyle | clientNoZeroes);
        const name = Buffer.from(exportName, "utf8");
        const option = Buffer.alloc(16 + 4 + name.length + 2);
        option.writeBigUInt64BE(optionMagic, 0);
        option.writeUInt32BE(optionGo, 8);
        option.writeUInt32BE(4 + name.length + 2, 12);
        option.writeUInt32BE(name.length, 16);
        name.copy(option, 20);
        option.writeUInt16BE(0, 20 + name.length);
        socket.write(Buffer.concat([flags, option]));
        for (;;) {
          const header = await client.take(20);
          if (header.readBigUInt64BE(0) !== optionReplyMagic) throw new Error("bad option reply");
          const type = header.readUInt32BE(12);
          const data = await client.take(header.readUInt32BE(16));
          if (type === replyAck) break;
          if (type >= 0x80000000) throw new Error(`NBD_OPT_GO refused (${type.toString(16)})`);
          if (type === replyInfo && data.readUInt16BE(0) === infoExport) {
            client.sizeBytes = Number(data.readBigUInt64BE(2));
          }
        }
      });
    } catch (error) {
      client.close();
      throw error;
    }
    return client;
  }

  /** One request, answered within `timeoutMs`; resolves with read data (empty otherwise). */
  request(
    command: number,
    offset: number,
    length: number,
    timeoutMs: number,
    data?: Uint8Array,
  ): Promise<Buffer> {
    return this.withTimeout(timeoutMs, async () => {
      const handle = ++this.handle;
      const header = Buffer.alloc(28);
      header.writeUInt32BE(requestMagic, 0);
      header.writeUInt16BE(0, 4);
      header.writeUInt16BE(command, 6);
      header.writeBigUInt64BE(handle, 8);
      header.writeBigUInt64BE(BigInt(offset), 16);
      header.writeUInt32BE(length, 24);
      this.socket.write(data === undefined ? header : Buffer.concat([header, data]));
      const reply = await this.take(16);
      if (reply.readUInt32BE(0) !== simpleReplyMagic) throw new Error("bad NBD reply magic");
      if (reply.readBigUInt64BE(8) !== handle) throw new Error("NBD reply to another request");
      const errno = reply.readUInt32BE(4);
      if (errno !== 0) throw new NbdReplyError(errno);
      return command === nbdCommand.read ? this.take(length) : Buffer.alloc(0);
    });
  }

  close(): void {
    this.socket.destroy();
  }

  private async withTimeout<T>(timeoutMs: number, body: () => Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const failed = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`NBD timed out after ${timeoutMs} ms`)), timeoutMs);
      if (this.failure !== undefined) reject(this.failure);
      this.failWaiter = reject;
    });
    try {
      return await Promise.race([body(), failed]);
    } catch (error) {
      this.failure ??= error as Error;
      this.socket.destroy();
      throw error;
    } finally {
      clearTimeout(timer);
      this.failWaiter = undefined;
    }
  }

  private take(bytes: number): Promise<Buffer> {
    return new Promise((resolve) => {
      this.wanted = { bytes, resolve };
      this.pump();
    });
  }

  private pump(): void {
    const wanted = this.wanted;
    if (wanted === undefined || this.buffer.length < wanted.bytes) return;
    this.wanted = undefined;
    const data = this.buffer.subarray(0, wanted.bytes);
    this.buffer = this.buffer.subarray(wanted.bytes);
    wanted.resolve(Buffer.from(data));
  }
}
