// The rule that lets large write data be kept without a copy (byte-slab.ts, `keptInPlace`)
// and the end-to-end check that kept data never shares memory with a sender's buffers:
// what arrived over a NATS message or a socket read is copied, only a frame a link decoder
// assembled into a buffer of its own is kept as it is.

import {
  decodeMessage,
  encodeLinkFrame,
  encodeMessageParts,
  isAssembledByLink,
  type LinkFrame,
  LinkFrameDecoder,
  type Message,
} from "@ballast/protocol";
import fc from "fast-check";
import { describe, expect, test } from "vitest";
import { ByteSlab, copyInSlabBytesMax, keptInPlace } from "../src/byte-slab.ts";

const large = copyInSlabBytesMax + 4096;
const always = () => true;
const never = () => false;

function pattern(bytes: number, seed: number): Uint8Array {
  return Uint8Array.from({ length: bytes }, (_, index) => (index * 31 + seed) % 251);
}

/** The frames a decoder makes of `parts` sent as one stream, cut into `cut`-byte reads. */
function receive(parts: Uint8Array[], cut: number): { frames: LinkFrame[]; reads: Buffer[] } {
  const stream = Buffer.concat(parts);
  const reads: Buffer[] = [];
  for (let at = 0; at < stream.byteLength; at += cut) {
    // Each read a buffer of its own, as a socket's would be.
    reads.push(Buffer.from(stream.subarray(at, at + cut)));
  }
  const decoder = new LinkFrameDecoder();
  const frames = reads.flatMap((read) => decoder.push(read));
  return { frames, reads };
}

function publishOf(message: Message): Uint8Array[] {
  return encodeLinkFrame(
    { kind: "publish", subject: "ballast.replica.x", traceparent: undefined },
    encodeMessageParts(message),
  );
}

function writeMessage(datas: Uint8Array[]): Message {
  return {
    type: "volume.write.v1",
    volume: "v",
    partition: 0,
    epoch: 1,
    writes: datas.map((data, index) => ({ offset: index * 1024 * 1024, data })),
  } as Message;
}

function payloadOf(frame: LinkFrame): Uint8Array {
  if (frame.kind !== "publish") throw new Error(`a ${frame.kind} frame`);
  return frame.payload;
}

describe("keptInPlace", () => {
  test("large private data that is most of its buffer is kept", () => {
    const buffer = new ArrayBuffer(large + 100);
    expect(keptInPlace([new Uint8Array(buffer, 50, large)], always)).toEqual([true]);
  });

  test("data not proven private is never kept, however large", () => {
    const data = new Uint8Array(large);
    expect(keptInPlace([data], never)).toEqual([false]);
  });

  test("small data is never kept (it goes to a slab), private or not", () => {
    const data = new Uint8Array(copyInSlabBytesMax);
    expect(keptInPlace([data], always)).toEqual([false]);
    expect(keptInPlace([undefined], always)).toEqual([false]);
  });

  test("kept views must be at least three quarters of the buffer they pin", () => {
    const buffer = new ArrayBuffer(4 * large);
    const one = new Uint8Array(buffer, 0, large);
    const two = new Uint8Array(buffer, large, large);
    const three = new Uint8Array(buffer, 2 * large, large);
    expect(keptInPlace([one], always)).toEqual([false]);
    expect(keptInPlace([one, two], always)).toEqual([false, false]);
    // Together they are three quarters of it: all kept; a small sibling is copied.
    const small = new Uint8Array(buffer, 3 * large, 100);
    expect(keptInPlace([one, small, two, three], always)).toEqual([true, false, true, true]);
    // A large part not proven private counts for nothing.
    const privates = new Set<Uint8Array>([one, two]);
    expect(keptInPlace([one, two, three], (bytes) => privates.has(bytes))).toEqual([
      false,
      false,
      false,
    ]);
  });

  test("any part kept is large, private and, with its buffer's other kept parts, at least three quarters of it", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            buffer: fc.nat({ max: 2 }),
            bytes: fc.nat({ max: 3 * large }),
            private: fc.boolean(),
            absent: fc.boolean(),
          }),
          { maxLength: 8 },
        ),
        (specs) => {
          const buffers = [0, 1, 2].map(() => new ArrayBuffer(6 * large));
          const offsets = [0, 0, 0];
          const privates = new Set<Uint8Array>();
          const parts = specs.map((spec) => {
            if (spec.absent) return undefined;
            const at = offsets[spec.buffer]!;
            const bytes = Math.min(spec.bytes, 6 * large - at);
            offsets[spec.buffer] = at + bytes;
            const part = new Uint8Array(buffers[spec.buffer]!, at, bytes);
            if (spec.private) privates.add(part);
            return part;
          });
          const kept = keptInPlace(parts, (bytes) => privates.has(bytes));
          const keptBytes = new Map<ArrayBufferLike, number>();
          parts.forEach((part, index) => {
            if (!kept[index]) return;
            expect(part!.byteLength).toBeGreaterThan(copyInSlabBytesMax);
            expect(privates.has(part!)).toBe(true);
            keptBytes.set(part!.buffer, (keptBytes.get(part!.buffer) ?? 0) + part!.byteLength);
          });
          for (const [buffer, bytes] of keptBytes) {
            expect(bytes * 4).toBeGreaterThanOrEqual(buffer.byteLength * 3);
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe("what is private", () => {
  test("a frame the decoder assembled from several reads is private; its reads are not", () => {
    const data = pattern(large, 1);
    const { frames, reads } = receive(publishOf(writeMessage([data])), 16 * 1024);
    expect(frames).toHaveLength(1);
    const payload = payloadOf(frames[0]!);
    expect(isAssembledByLink(payload)).toBe(true);
    for (const read of reads) expect(isAssembledByLink(read)).toBe(false);
  });

  test("a frame within one read is a view of that read, not private", () => {
    const data = pattern(large, 2);
    const { frames } = receive(publishOf(writeMessage([data])), 4 * large);
    expect(isAssembledByLink(payloadOf(frames[0]!))).toBe(false);
  });

  test("a small frame assembled from reads (from Node's shared pool) is not private", () => {
    const { frames } = receive(publishOf(writeMessage([pattern(512, 3)])), 100);
    expect(isAssembledByLink(payloadOf(frames[0]!))).toBe(false);
  });

  test("a plain buffer (a NATS message's) is not private and is copied", () => {
    const slab = new ByteSlab();
    const nats = pattern(large, 4);
    const [kept] = slab.keepAll([nats]) as [Uint8Array];
    expect(kept.buffer).not.toBe(nats.buffer);
    expect(Buffer.compare(kept, pattern(large, 4))).toBe(0);
  });
});

describe("kept write data and the sender's buffers", () => {
  // Every buffer the data passed through on its way in (the sender's, each read, the
  // decoded message's) is overwritten after keeping: kept bytes must not change.
  for (const [name, cut, sizes] of [
    ["one large write over many reads", 16 * 1024, [1024 * 1024]],
    ["large and small writes in one message", 60 * 1024, [512 * 1024, 4096, 300 * 1024]],
    ["a large write within one read", 4 * 1024 * 1024, [large]],
    ["small writes over small reads", 1000, [4096, 4096, 512]],
  ] as const) {
    test(name, () => {
      const datas = sizes.map((bytes, index) => pattern(bytes, index + 10));
      const sent = encodeMessageParts(writeMessage(datas));
      const { frames, reads } = receive(publishOf(writeMessage(datas)), cut);
      const message = decodeMessage(payloadOf(frames[0]!));
      if (message.type !== "volume.write.v1") throw new Error(message.type);
      const slab = new ByteSlab();
      const kept = slab.keepAll(message.writes.map((write) => write.data)) as Uint8Array[];
      for (const buffer of [...sent, ...datas, ...reads]) buffer.fill(0xee);
      kept.forEach((bytes, index) => {
        expect(Buffer.compare(bytes, pattern(sizes[index]!, index + 10))).toBe(0);
      });
      // A second message through the same slab leaves the first's bytes alone.
      slab.keepAll(message.writes.map((write) => new Uint8Array(write.data.byteLength)));
      kept.forEach((bytes, index) => {
        expect(Buffer.compare(bytes, pattern(sizes[index]!, index + 10))).toBe(0);
      });
    });
  }

  test("what is kept of one frame survives the frames after it on the same link", () => {
    const decoder = new LinkFrameDecoder();
    const slab = new ByteSlab();
    const kept: Uint8Array[] = [];
    for (let round = 0; round < 4; round++) {
      const stream = Buffer.concat(publishOf(writeMessage([pattern(1024 * 1024, round)])));
      for (let at = 0; at < stream.byteLength; at += 64 * 1024) {
        for (const frame of decoder.push(Buffer.from(stream.subarray(at, at + 64 * 1024)))) {
          const message = decodeMessage(payloadOf(frame));
          if (message.type !== "volume.write.v1") throw new Error(message.type);
          const [data] = slab.keepAll([message.writes[0]!.data]);
          expect(data).toBe(message.writes[0]!.data);
          kept.push(data!);
        }
      }
    }
    kept.forEach((bytes, round) => {
      expect(Buffer.compare(bytes, pattern(1024 * 1024, round)), `round ${round}`).toBe(0);
    });
  });

  test("large writes of one message (a client's batch) are kept in place together", () => {
    const datas = [1, 2, 3].map((seed) => pattern(1024 * 1024, seed + 30));
    const { frames, reads } = receive(publishOf(writeMessage(datas)), 64 * 1024);
    const message = decodeMessage(payloadOf(frames[0]!));
    if (message.type !== "volume.write.v1") throw new Error(message.type);
    const parts = message.writes.map((write) => write.data);
    const kept = new ByteSlab().keepAll(parts);
    // Each alone is a third of the frame, too little to pin it; together they are all of it.
    expect(new ByteSlab().keepAll([parts[0]!])[0]).not.toBe(parts[0]);
    kept.forEach((bytes, index) => {
      expect(bytes).toBe(parts[index]);
    });
    for (const buffer of [...datas, ...reads]) buffer.fill(0xee);
    kept.forEach((bytes, index) => {
      expect(Buffer.compare(bytes!, pattern(1024 * 1024, index + 31))).toBe(0);
    });
  });

  test("notes of one message are kept in place together when they fill its frame", () => {
    const datas = [pattern(1024 * 1024, 20), pattern(1024 * 1024, 21), pattern(8192, 22)];
    const message = {
      type: "replica.notes.v1",
      volume: "v",
      partition: 0,
      epoch: 1,
      primary: "h1",
      session: 1,
      commitOpNum: 0,
      previousOpNum: 0,
      previousEpoch: 0,
      previousSession: 0,
      notes: datas.map((data, index) => ({
        opNum: index + 1,
        epoch: 1,
        session: 1,
        kind: "write",
        offset: 0,
        length: data.byteLength,
        data,
        checksum: 0,
      })),
    } as Message;
    const { frames, reads } = receive(publishOf(message), 64 * 1024);
    const decoded = decodeMessage(payloadOf(frames[0]!));
    if (decoded.type !== "replica.notes.v1") throw new Error(decoded.type);
    const kept = new ByteSlab().keepAll(decoded.notes.map((note) => note.data));
    expect(kept[0]).toBe(decoded.notes[0]!.data);
    expect(kept[1]).toBe(decoded.notes[1]!.data);
    expect(kept[2]).not.toBe(decoded.notes[2]!.data);
    for (const buffer of [...datas, ...reads]) buffer.fill(0xee);
    kept.forEach((bytes, index) => {
      expect(Buffer.compare(bytes!, pattern(datas[index]!.byteLength, index + 20))).toBe(0);
    });
  });
});

describe("keepNotes", () => {
  test("a resend of notes held already keeps none of them in place, nor the new one it carries", () => {
    // One frame of four large notes, all private: as a first send, all are kept in place.
    const buffer = new ArrayBuffer(4 * large + 64);
    const notes = [0, 1, 2, 3].map((index) => ({
      opNum: 10 + index,
      data: new Uint8Array(buffer, 16 + index * large, large),
    }));
    const slab = new ByteSlab(always);
    const first = slab.keepNotes(notes, 9);
    for (const [index, data] of first.entries()) expect(data).toBe(notes[index]!.data);
    // As a resend to a replica that holds ops up to 12: only op 13 is new, a quarter of
    // the frame, so it is copied rather than pin the frame; the held ones are copied too
    // (the core skips them).
    const resent = slab.keepNotes(notes, 12);
    resent.forEach((data, index) => {
      expect(data).not.toBe(notes[index]!.data);
      expect(data!.buffer).not.toBe(buffer);
      expect(Buffer.from(data!).equals(Buffer.from(notes[index]!.data))).toBe(true);
    });
  });

  test("notes without data stay without", () => {
    const slab = new ByteSlab(always);
    const kept = slab.keepNotes([{ opNum: 5 }, { opNum: 6, data: new Uint8Array(8).fill(3) }], 0);
    expect(kept[0]).toBeUndefined();
    expect([...kept[1]!]).toEqual(new Array(8).fill(3));
  });
});
