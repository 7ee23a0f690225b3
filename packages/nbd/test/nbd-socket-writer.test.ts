// The reply writer: a reply's header and data leave together, and the replies written in
// one turn of the event loop leave in one writev at the end of that turn.

import { Writable } from "node:stream";
import { describe, expect, test } from "vitest";
import { SocketWriter } from "../src/socket-writer.ts";

/** A stream that records each write or writev it gets, as the list of its chunks' bytes. */
function recordingStream() {
  const calls: number[][] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      calls.push([chunk.byteLength]);
      callback();
    },
    writev(chunks, callback) {
      calls.push(chunks.map(({ chunk }) => (chunk as Buffer).byteLength));
      callback();
    },
  });
  return { stream, calls };
}

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

describe("socket writer", () => {
  test("the replies of one turn leave in one writev, in the order written", async () => {
    const { stream, calls } = recordingStream();
    const writer = new SocketWriter(stream);
    await Promise.resolve().then(() => {
      void writer.send(new Uint8Array(16), new Uint8Array(4096));
      void writer.send(new Uint8Array(16));
    });
    // Callbacks of the same turn, as a batched answer's entries settle.
    void writer.send(new Uint8Array(16), new Uint8Array(512));
    expect(calls).toEqual([]);
    await turn();
    expect(calls).toEqual([[16, 4096, 16, 16, 512]]);
    // A later turn's reply is not held back past its own turn.
    void writer.send(new Uint8Array(16), new Uint8Array(1024));
    await turn();
    expect(calls).toEqual([
      [16, 4096, 16, 16, 512],
      [16, 1024],
    ]);
  });

  test("a closed socket drops replies and resolves", async () => {
    const { stream, calls } = recordingStream();
    const writer = new SocketWriter(stream);
    stream.destroy();
    await writer.send(new Uint8Array(16), new Uint8Array(512));
    await turn();
    expect(calls).toEqual([]);
  });
});
