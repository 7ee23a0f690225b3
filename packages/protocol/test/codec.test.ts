import { createHash } from "node:crypto";
import fc from "fast-check";
import { Packr, pack } from "msgpackr";
import { describe, expect, test } from "vitest";
import {
  BallastError,
  decodeControlRecord,
  decodeMessage,
  decodeValue,
  ErrorCode,
  encodeLargeValueParts,
  encodeMessage,
  encodeValue,
  encodeValueParts,
  limits,
  type MessageType,
  messageTypes,
  referencedBytesMin,
} from "../src/index.ts";
import { anyMessage, messageArbitraries, plain } from "./arbitraries.ts";

function codeOf(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(BallastError);
    return (error as BallastError).code;
  }
  throw new Error("expected a BallastError, but nothing was thrown");
}

const validWrite = {
  type: "volume.write.v1",
  volume: "vol-1",
  partition: 0,
  epoch: 3,
  writes: [{ offset: 4096, data: new Uint8Array(512).fill(7) }],
};

describe("codec round trip", () => {
  test("every message type has a generator", () => {
    expect(Object.keys(messageArbitraries).sort()).toEqual([...messageTypes].sort());
  });

  test("every valid message decodes to what was encoded", () => {
    fc.assert(
      fc.property(anyMessage, (message) => {
        const decoded = decodeMessage(encodeMessage(message));
        expect(plain(decoded)).toEqual(plain(message));
      }),
      { numRuns: 500 },
    );
  });

  test("large offsets survive as exact integers", () => {
    const message = { ...validWrite, writes: [{ offset: 2 ** 49 + 512, data: new Uint8Array(1) }] };
    const decoded = decodeMessage(encodeValue(message));
    expect(decoded.type === "volume.write.v1" && decoded.writes[0]?.offset).toBe(2 ** 49 + 512);
  });
});

describe("codec edge", () => {
  test("random bytes never throw anything but a BallastError", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 512 }), (bytes) => {
        try {
          decodeMessage(bytes);
        } catch (error) {
          expect(error).toBeInstanceOf(BallastError);
        }
      }),
      { numRuns: 2000 },
    );
  });

  test("mutated valid messages decode or fail with a BallastError", () => {
    fc.assert(
      fc.property(anyMessage, fc.nat(), fc.integer({ min: 0, max: 255 }), (message, at, byte) => {
        const bytes = new Uint8Array(encodeMessage(message));
        bytes[at % bytes.length] = byte;
        try {
          decodeMessage(bytes);
        } catch (error) {
          expect(error).toBeInstanceOf(BallastError);
        }
      }),
      { numRuns: 1000 },
    );
  });

  test("an empty message is malformed", () => {
    expect(codeOf(() => decodeMessage(new Uint8Array()))).toBe(ErrorCode.MalformedMessage);
  });

  test("truncated msgpack is malformed", () => {
    const bytes = encodeValue(validWrite);
    expect(codeOf(() => decodeMessage(bytes.subarray(0, bytes.length - 3)))).toBe(
      ErrorCode.MalformedMessage,
    );
  });

  test("trailing bytes after one value are malformed", () => {
    const bytes = Buffer.concat([encodeValue(validWrite), pack(1)]);
    expect(codeOf(() => decodeMessage(bytes))).toBe(ErrorCode.MalformedMessage);
  });

  test("a timestamp or the reserved code 0xc1 is malformed, and named for what it is", () => {
    const timestamp = new Uint8Array([0xd6, 0xff, 0, 0, 0, 1]);
    expect(() => decodeMessage(timestamp)).toThrow(
      "refused a message that is not valid msgpack: found a msgpack timestamp (extension type -1), which no message holds",
    );
    expect(() => decodeMessage(new Uint8Array([0xc1]))).toThrow(
      "refused a message that is not valid msgpack: found the reserved msgpack code 0xc1",
    );
  });

  test("a value that is not a map is malformed", () => {
    for (const value of [1, "x", null, [1, 2], true]) {
      expect(codeOf(() => decodeMessage(pack(value)))).toBe(ErrorCode.MalformedMessage);
    }
  });

  test("a map without a string type is malformed", () => {
    expect(codeOf(() => decodeMessage(pack({ volume: "a" })))).toBe(ErrorCode.MalformedMessage);
    expect(codeOf(() => decodeMessage(pack({ type: 7 })))).toBe(ErrorCode.MalformedMessage);
  });

  test("an unknown type is named as such", () => {
    expect(codeOf(() => decodeMessage(pack({ type: "volume.write.v9" })))).toBe(
      ErrorCode.UnknownMessageType,
    );
    // Prototype keys are not message types.
    expect(codeOf(() => decodeMessage(pack({ type: "toString" })))).toBe(
      ErrorCode.UnknownMessageType,
    );
  });

  test("a missing field is invalid and the error names it", () => {
    const { epoch: _epoch, ...withoutEpoch } = validWrite;
    try {
      decodeMessage(pack(withoutEpoch));
      expect.unreachable();
    } catch (error) {
      expect((error as BallastError).code).toBe(ErrorCode.InvalidMessage);
      expect((error as BallastError).message).toContain("epoch");
    }
  });

  test("a name that breaks the name rule is invalid, and the error says the rule in words", () => {
    for (const name of ["Vol", "a.b", "-a", "vol@s1", "vol\u00e9"]) {
      expect(() => decodeMessage(pack({ type: "volume.describe.v1", name }))).toThrow(
        "refused a volume.describe.v1 message: name: must be lowercase letters, digits and '-', starting with a letter or digit",
      );
    }
  });

  test("wrong field types are invalid", () => {
    const cases: Record<string, unknown>[] = [
      { ...validWrite, epoch: "3" },
      { ...validWrite, epoch: -1 },
      { ...validWrite, epoch: 1.5 },
      { ...validWrite, partition: 2 ** 60 },
      { ...validWrite, volume: "Bad.Name" },
      { ...validWrite, volume: "a".repeat(64) },
      { ...validWrite, writes: [] },
      { ...validWrite, writes: [{ offset: 0, data: "text, not bytes" }] },
      { ...validWrite, writes: [{ offset: limits.volumeBytesMax + 1, data: new Uint8Array(1) }] },
    ];
    for (const message of cases) {
      expect(codeOf(() => decodeMessage(pack(message)))).toBe(ErrorCode.InvalidMessage);
    }
  });

  test("a disk id that is not 32 hex digits, or a stall that is not a count, is invalid", () => {
    const heartbeat = {
      type: "heartbeat.v1",
      kind: "headnode",
      nodeId: "head-1",
      pid: 1,
      startedAtMs: 1,
      sentAtMs: 2,
      sequence: 0,
      version: "0.1.0",
    };
    const disk = "0123456789abcdef".repeat(2);
    expect(decodeMessage(pack({ ...heartbeat, disk }))).toMatchObject({ disk });
    for (const bad of [
      "",
      "ABCDEF0123456789".repeat(2),
      `${disk}0`,
      "not-hex".padEnd(32, "x"),
      7,
    ]) {
      expect(codeOf(() => decodeMessage(pack({ ...heartbeat, disk: bad })))).toBe(
        ErrorCode.InvalidMessage,
      );
    }
    const configure = {
      type: "headnode.configure.v1",
      volume: "v",
      partition: 0,
      partitionStart: 0,
      partitionBytes: 4096,
      epoch: 1,
      primary: "head-1",
      secondaries: [],
      sleds: ["sled-1"],
    };
    expect(decodeMessage(pack({ ...configure, disk }))).toMatchObject({ disk });
    expect(codeOf(() => decodeMessage(pack({ ...configure, disk: "short" })))).toBe(
      ErrorCode.InvalidMessage,
    );
  });

  test("a configure's and a partition record's servedBytes is at most the partition", () => {
    const configure = {
      type: "headnode.configure.v1",
      volume: "v",
      partition: 0,
      partitionStart: 0,
      partitionBytes: 4096,
      epoch: 1,
      primary: "head-1",
      secondaries: [],
      sleds: ["sled-1"],
    };
    for (const servedBytes of [0, 512, 4096]) {
      expect(decodeMessage(pack({ ...configure, servedBytes }))).toMatchObject({ servedBytes });
    }
    // Absent: the whole partition, as from a coordinator that predates it.
    expect(decodeMessage(pack(configure))).not.toHaveProperty("servedBytes");
    for (const servedBytes of [4097, -1, 1.5, "512"]) {
      expect(codeOf(() => decodeMessage(pack({ ...configure, servedBytes })))).toBe(
        ErrorCode.InvalidMessage,
      );
    }
    const record = {
      volume: "v",
      partition: 0,
      partitionStart: 0,
      partitionBytes: 4096,
      epoch: 1,
      primary: "head-1",
      secondaries: [],
    };
    const stored = (value: object) => new TextEncoder().encode(JSON.stringify(value));
    expect(decodeControlRecord("partition", "k", stored(record))).not.toHaveProperty("servedBytes");
    expect(
      decodeControlRecord("partition", "k", stored({ ...record, servedBytes: 0 })),
    ).toMatchObject({ servedBytes: 0 });
    expect(() =>
      decodeControlRecord("partition", "k", stored({ ...record, servedBytes: 8192 })),
    ).toThrow(/servedBytes/);
  });

  test("too many entries in one request are invalid", () => {
    const writes = Array.from({ length: limits.requestEntriesMax + 1 }, () => ({
      offset: 0,
      data: new Uint8Array(1),
    }));
    expect(codeOf(() => decodeMessage(pack({ ...validWrite, writes })))).toBe(
      ErrorCode.InvalidMessage,
    );
  });

  test("an oversized payload is refused before it is parsed", () => {
    const bytes = new Uint8Array(limits.messageBytesMax + 1);
    expect(codeOf(() => decodeMessage(bytes))).toBe(ErrorCode.PayloadTooLarge);
    expect(codeOf(() => decodeValue(new Uint8Array(100), 99))).toBe(ErrorCode.PayloadTooLarge);
  });

  test("encoding refuses a message over the limit", () => {
    expect(codeOf(() => encodeValue({ type: "x", data: new Uint8Array(2000) }, 1000))).toBe(
      ErrorCode.PayloadTooLarge,
    );
  });

  test("a subject refuses types it does not take", () => {
    const accept = new Set<MessageType>(["node.info.v1"]);
    expect(codeOf(() => decodeMessage(encodeValue(validWrite), { accept }))).toBe(
      ErrorCode.UnexpectedMessageType,
    );
    expect(decodeMessage(pack({ type: "node.info.v1" }), { accept }).type).toBe("node.info.v1");
  });
});

describe("large data", () => {
  const chunk = new Uint8Array(4 * 1024 * 1024);
  for (let at = 0; at < chunk.length; at += 4093) chunk[at] = at % 251;
  const write = {
    type: "sled.chunk.write.v1",
    owner: { volumeId: "v-1", partition: 3 },
    chunkId: "c-7",
    data: chunk,
  } as const;

  test("a chunk message decodes to what was encoded, data and all", () => {
    const decoded = decodeValue(encodeValue(write)) as typeof write;
    expect(decoded.type).toBe(write.type);
    expect(decoded.owner).toEqual(write.owner);
    expect(decoded.chunkId).toBe(write.chunkId);
    expect(Buffer.compare(decoded.data, chunk)).toBe(0);
    // Any msgpack decoder reads it the same way: compare with msgpackr's own encoding.
    const other = decodeValue(new Packr({ useRecords: false }).pack(write)) as typeof write;
    expect({ ...other, data: undefined }).toEqual({ ...decoded, data: undefined });
    expect(Buffer.compare(other.data, decoded.data)).toBe(0);
  });

  test("is encoded in one buffer of its own size, not a quadrupled growth buffer", () => {
    const encoded = encodeValue(write);
    // The map header, three short keys and values, the data's key and bin 32 header.
    expect(encoded.byteLength).toBeLessThan(chunk.byteLength + 128);
    expect(encoded.buffer.byteLength).toBe(encoded.byteLength);
  });

  test("the data bytes of every size around the threshold round-trip", () => {
    for (const bytes of [0, 1, 255, 256, 65_535, 65_536, 65_537, 200_000]) {
      const data = new Uint8Array(bytes).fill(7);
      const decoded = decodeValue(encodeValue({ a: 1, data, z: "last" })) as {
        a: number;
        data: Uint8Array;
        z: string;
      };
      expect(decoded.a).toBe(1);
      expect(decoded.z).toBe("last");
      expect(decoded.data.byteLength).toBe(bytes);
      expect(decoded.data.every((byte) => byte === 7)).toBe(true);
    }
  });

  test("the size limit still holds", () => {
    expect(codeOf(() => encodeValue(write, 1024 * 1024))).toBe(ErrorCode.PayloadTooLarge);
  });

  // Replies of reads: a sled's chunk read answers `result.data`, a primary's
  // volume.read.v1 an array of byte arrays there (and a clone's unmapped ranges).
  const pieces = [chunk.subarray(0, 300_000), chunk.subarray(4096, 4096 + 512), chunk.subarray(7)];
  const replies = [
    { ok: true, result: { data: chunk.subarray(100, 100 + 1024 * 1024) } },
    { ok: true, result: { data: pieces } },
    { ok: true, result: { data: pieces, unmapped: [[{ offset: 0, length: 512 }], [], []] } },
    { ok: true, result: { data: pieces.map((piece) => piece.subarray(0, 40_000)) } },
    { data: pieces, z: "after" },
  ];

  /** The value with each byte array as its length and a hash (deep equality is slow on MiBs). */
  const summary = (value: unknown): unknown => {
    if (value instanceof Uint8Array) {
      return `bin ${value.byteLength} ${createHash("sha1").update(value).digest("hex")}`;
    }
    if (Array.isArray(value)) return value.map(summary);
    if (typeof value === "object" && value !== null) {
      return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, summary(item)]));
    }
    return value;
  };

  test("a read reply decodes to what msgpackr's own encoding does", () => {
    for (const reply of replies) {
      const ours = decodeValue(encodeValue(reply));
      const theirs = decodeValue(new Packr({ useRecords: false }).pack(reply));
      expect(summary(ours)).toEqual(summary(theirs));
      expect(summary(ours)).toEqual(summary(reply));
    }
  });

  test("a read reply with large data is one buffer of its own size", () => {
    for (const reply of replies.slice(0, 4)) {
      const encoded = encodeValue(reply);
      expect(encoded.buffer.byteLength).toBe(encoded.byteLength);
    }
    const [single] = replies;
    expect(encodeValue(single).byteLength).toBeLessThan(1024 * 1024 + 64);
  });

  test("a read reply in parts is its whole encoding, the large pieces by reference, small ones copied", () => {
    for (const reply of replies) {
      const parts = encodeValueParts(reply);
      expect(Buffer.concat(parts).equals(Buffer.from(encodeValue(reply)))).toBe(true);
    }
    // The second reply: 300,000 bytes, 512 and the chunk's rest. The 512 bytes and the
    // bin headers around them are one copied run between the two large pieces.
    const parts = encodeValueParts(replies[1]!);
    expect(parts).toHaveLength(4);
    expect(parts[1]).toBe(pieces[0]);
    expect(parts[2]!.byteLength).toBe(5 + 512 + 5);
    expect(parts[2]!.buffer).not.toBe(chunk.buffer);
    expect(parts[3]).toBe(pieces[2]);
    // Many small pieces, together large: one buffer, nothing by reference (a part each
    // would cost a socket write request apiece).
    const many = { ok: true, result: { data: Array.from({ length: 32 }, () => pieces[1]!) } };
    const manyParts = encodeValueParts(many);
    expect(manyParts).toHaveLength(1);
    expect(Buffer.from(manyParts[0]!).equals(Buffer.from(encodeValue(many)))).toBe(true);
  });

  test("small read replies take msgpackr's path; data that is not all bytes the nested one", () => {
    const small = { ok: true, result: { data: [new Uint8Array(4096).fill(3)] } };
    const encodedSmall = encodeValue(small);
    expect(summary(decodeValue(encodedSmall))).toEqual(summary(small));
    // msgpackr's growth buffer, not an exact one.
    expect(encodedSmall.buffer.byteLength).toBeGreaterThan(encodedSmall.byteLength);
    const mixed = { ok: true, result: { data: [chunk, "text"] } };
    const encoded = encodeValue(mixed);
    expect(summary(decodeValue(encoded))).toEqual(summary(mixed));
    expect(encoded.buffer.byteLength).toBe(encoded.byteLength);
  });
});

describe("large nested data", () => {
  /** Byte arrays of sizes around both thresholds (16 KiB per array, 64 KiB in all). */
  const bytesOf = fc
    .tuple(
      fc.constantFrom(0, 1, 4096, 16_383, 16_384, 16_385, 65_536, 300_000),
      fc.integer({ min: 0, max: 255 }),
    )
    .map(([length, seed]) => {
      const bytes = new Uint8Array(length);
      for (let at = 0; at < length; at += 997) bytes[at] = (seed + at) % 256;
      return bytes;
    });
  const scalar = fc.oneof(
    fc.integer(),
    fc.double({ noNaN: true }),
    fc.string({ maxLength: 8 }),
    fc.boolean(),
    fc.constant(null),
  );
  const key = fc.constantFrom("type", "data", "offset", "opNum", "writes", "notes", "a", "zz");
  /** Maps and arrays up to three deep, with byte arrays and scalars as leaves. */
  const { tree } = fc.letrec((tie) => ({
    leaf: fc.oneof(scalar, bytesOf),
    tree: fc.oneof(
      { depthSize: "small", withCrossShrink: true },
      tie("leaf"),
      fc.array(tie("tree"), { maxLength: 5 }),
      fc.dictionary(key, tie("tree"), { maxKeys: 5 }),
    ),
  }));
  const message = fc.dictionary(key, tree, { minKeys: 1, maxKeys: 5 });
  const summary = (value: unknown): unknown => {
    if (value instanceof Uint8Array) {
      return `bin ${value.byteLength} ${createHash("sha1").update(value).digest("hex")}`;
    }
    if (Array.isArray(value)) return value.map(summary);
    if (typeof value === "object" && value !== null) {
      // Key order is not part of a msgpack map's meaning.
      return Object.fromEntries(
        Object.entries(value)
          .sort(([left], [right]) => (left < right ? -1 : 1))
          .map(([name, item]) => [name, summary(item)]),
      );
    }
    return value;
  };

  test("any map decodes to what msgpackr's own encoding does", () => {
    fc.assert(
      fc.property(message, (value) => {
        const ours = decodeValue(encodeValue(value));
        const theirs = decodeValue(new Packr({ useRecords: false }).pack(value));
        expect(summary(ours)).toEqual(summary(theirs));
      }),
      { numRuns: 300 },
    );
  });

  test("the room, then framed and tail, are encodeValue's bytes; large data is not copied, small data is", () => {
    fc.assert(
      fc.property(message, fc.integer({ min: 0, max: 40 }), (value, room) => {
        const parts = encodeLargeValueParts(value, room);
        if (parts === undefined) return;
        const { framed, tail } = parts;
        expect(framed.buffer.byteLength).toBe(framed.byteLength);
        const whole = Buffer.concat([framed.subarray(room), ...tail]);
        expect(whole.equals(Buffer.from(encodeValue(value)))).toBe(true);
        // Every byte array of the tail that is large is one of the value's own.
        const own = new Set<Uint8Array>();
        const collect = (item: unknown): void => {
          if (item instanceof Uint8Array) own.add(item);
          else if (Array.isArray(item)) item.forEach(collect);
          else if (typeof item === "object" && item !== null) Object.values(item).forEach(collect);
        };
        collect(value);
        const buffers = new Set([...own].map((item) => item.buffer));
        for (const part of tail) {
          // A part is the value's own byte array, of referencedBytesMin or more, or a run
          // copied into memory of its own.
          if (own.has(part)) expect(part.byteLength).toBeGreaterThanOrEqual(referencedBytesMin);
          else expect(buffers.has(part.buffer)).toBe(false);
        }
      }),
      { numRuns: 200 },
    );
  });

  const big = new Uint8Array(1024 * 1024);
  for (let at = 0; at < big.length; at += 4093) big[at] = at % 251;
  const write = {
    type: "volume.write.v1",
    volume: "v",
    partition: 0,
    epoch: 3,
    writes: [
      { offset: 0, data: big },
      { offset: 1024 * 1024, data: big.subarray(0, 4096) },
      { offset: 4 * 1024 * 1024, data: big.subarray(5, 5 + 100_000) },
    ],
  };
  const notes = {
    type: "replica.notes.v1",
    commitOpNum: 7,
    notes: [
      { opNum: 8, kind: "write", offset: 0, data: big, checksum: 12 },
      { opNum: 9, kind: "trim", offset: 0, length: 4096, checksum: 13 },
    ],
  };

  test("a write or notes message with large data is one buffer of its own size", () => {
    for (const value of [write, notes]) {
      const encoded = encodeValue(value);
      expect(encoded.buffer.byteLength).toBe(encoded.byteLength);
      expect(encoded.byteLength).toBeLessThan(big.byteLength + 100_000 + 4096 + 256);
      const decoded = decodeValue(encoded);
      expect(summary(decoded)).toEqual(summary(value));
    }
    const decoded = decodeMessage(encodeValue(write)) as typeof write;
    expect(decoded.writes.map((entry) => entry.offset)).toEqual([0, 1024 * 1024, 4 * 1024 * 1024]);
  });

  test("small nested data takes msgpackr's path, unchanged", () => {
    const small = { ...write, writes: [{ offset: 0, data: big.subarray(0, 4096) }] };
    expect(Buffer.from(encodeValue(small)).equals(Buffer.from(packr().pack(small)))).toBe(true);
    expect(encodeLargeValueParts(small, 28)).toBeUndefined();
  });
});

function packr(): Packr {
  return new Packr({ useRecords: false, moreTypes: false, int64AsType: "number" });
}
