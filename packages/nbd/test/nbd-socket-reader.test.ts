// The buffered reader over a stream that delivers arbitrary pieces: whole messages out,
// views instead of copies where possible, the read-ahead bound, and how it ends.

import { PassThrough } from "node:stream";
import fc from "fast-check";
import { describe, expect, test } from "vitest";
import { ConnectionClosedError } from "../src/index.ts";
import { SocketReader } from "../src/socket-reader.ts";

function setUp(readAheadBytesMax = 1024) {
  const stream = new PassThrough();
  const reader = new SocketReader(stream, readAheadBytesMax);
  return { stream, reader };
}

/** Lets stream events run. */
const settle = () => new Promise((resolve) => setImmediate(resolve));

describe("SocketReader", () => {
  test("a message split over many chunks is read whole, in order", async () => {
    const { stream, reader } = setUp();
    const reading = reader.read(10);
    for (const piece of ["ab", "cde", "f", "ghij", "klm"]) stream.write(Buffer.from(piece));
    expect((await reading).toString()).toBe("abcdefghij");
    expect((await reader.read(3)).toString()).toBe("klm");
  });

  test("bytes within one chunk are a view of it; across chunks, one copy", async () => {
    const { stream, reader } = setUp();
    // Not from Buffer's shared pool, so that "same memory" means "a view of this chunk".
    const chunk = Buffer.alloc(10);
    chunk.write("0123456789");
    stream.write(chunk);
    stream.write(Buffer.from("abcdef"));
    await settle();
    const view = await reader.read(4);
    expect(view.buffer).toBe(chunk.buffer);
    expect(view.byteOffset).toBe(chunk.byteOffset);
    const spanning = await reader.read(8);
    expect(spanning.toString()).toBe("456789ab");
    expect(spanning.buffer).not.toBe(chunk.buffer);
    expect(reader.buffered).toBe(4);
  });

  test("discard skips bytes as they arrive", async () => {
    const { stream, reader } = setUp();
    const discarding = reader.discard(6);
    stream.write(Buffer.from("xxx"));
    await settle();
    stream.write(Buffer.from("xxxOK"));
    await discarding;
    expect((await reader.read(2)).toString()).toBe("OK");
  });

  test("the stream is paused past the read-ahead limit and resumed when a read needs more", async () => {
    const { stream, reader } = setUp(8);
    stream.write(Buffer.alloc(8));
    await settle();
    expect(stream.isPaused()).toBe(true);
    const reading = reader.read(12);
    expect(stream.isPaused()).toBe(false);
    stream.write(Buffer.alloc(4));
    expect((await reading).byteLength).toBe(12);
  });

  test("a read larger than the read-ahead limit still completes", async () => {
    const { stream, reader } = setUp(8);
    const reading = reader.read(100);
    for (let index = 0; index < 10; index++) stream.write(Buffer.alloc(10, index));
    const data = await reading;
    expect(data.byteLength).toBe(100);
    expect(data[99]).toBe(9);
  });

  test("at the end of the stream, buffered bytes are served and a longer read fails", async () => {
    const { stream, reader } = setUp();
    stream.end(Buffer.from("abc"));
    await settle();
    expect((await reader.read(2)).toString()).toBe("ab");
    await expect(reader.read(2)).rejects.toThrow(ConnectionClosedError);
  });

  test("a read pending when the stream ends fails", async () => {
    const { stream, reader } = setUp();
    const reading = reader.read(4);
    stream.end(Buffer.from("ab"));
    await expect(reading).rejects.toThrow(/ended the stream/);
  });

  test("cancel fails the pending read and every later one, and drops the buffer", async () => {
    const { stream, reader } = setUp();
    stream.write(Buffer.from("abc"));
    await settle();
    const reading = reader.read(8);
    reader.cancel(new ConnectionClosedError("shutting down"));
    await expect(reading).rejects.toThrow("shutting down");
    await expect(reader.read(1)).rejects.toThrow("shutting down");
    expect(reader.buffered).toBe(0);
  });

  test("readNow takes bytes already buffered at once, and nothing when they are not all here", async () => {
    const { stream, reader } = setUp();
    expect(reader.readNow(1)).toBeUndefined();
    stream.write(Buffer.from("abcdef"));
    await settle();
    expect(reader.readNow(4)?.toString()).toBe("abcd");
    expect(reader.readNow(3)).toBeUndefined();
    expect(reader.buffered).toBe(2);
    expect((await reader.read(2)).toString()).toBe("ef");
  });

  test("readNow while a read waits is a bug: one read at a time", async () => {
    const { reader } = setUp();
    const reading = reader.read(4);
    expect(() => reader.readNow(1)).toThrow(/one read at a time/);
    reader.cancel(new ConnectionClosedError("done"));
    await expect(reading).rejects.toThrow("done");
  });

  test("reads through readNow where it can hand out the same bytes, in the same order, as reads alone", async () => {
    // The NBD loop's form (readNow, else read) against read alone, over the same stream
    // cut into random chunks, with random read sizes and pauses between the writes.
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.uint8Array({ minLength: 1, maxLength: 40 }), { minLength: 1, maxLength: 12 }),
        fc.array(fc.integer({ min: 0, max: 50 }), { minLength: 1, maxLength: 12 }),
        fc.array(fc.boolean(), { minLength: 12, maxLength: 12 }),
        async (chunks, sizes, pauses) => {
          const total = chunks.reduce((sum, chunk) => sum + chunk.byteLength, 0);
          const plan: number[] = [];
          let planned = 0;
          for (const size of sizes) {
            if (planned + size > total) break;
            plan.push(size);
            planned += size;
          }
          const run = async (fast: boolean): Promise<string[]> => {
            const { stream, reader } = setUp(16);
            const writing = (async () => {
              for (const [index, chunk] of chunks.entries()) {
                stream.write(Buffer.from(chunk));
                if (pauses[index]) await settle();
              }
            })();
            const out: string[] = [];
            for (const size of plan) {
              const bytes = fast
                ? (reader.readNow(size) ?? (await reader.read(size)))
                : await reader.read(size);
              out.push(Buffer.from(bytes).toString("hex"));
            }
            await writing;
            out.push(`left ${reader.buffered}`);
            return out;
          };
          expect(await run(true)).toEqual(await run(false));
        },
      ),
      { numRuns: 200 },
    );
  });
});
