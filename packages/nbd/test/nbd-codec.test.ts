// The codec, byte for byte against the layouts in the NBD spec: the magics and field
// offsets are written out here as literals, so that a wrong constant in wire.ts fails.

import { describe, expect, test } from "vitest";
import {
  decodeClientFlags,
  decodeOptionHeader,
  decodeRequestHeader,
  encodeBlockSizeInformation,
  encodeExportInformation,
  encodeExportNameReply,
  encodeGreeting,
  encodeOptionReply,
  encodeServerData,
  encodeSimpleReplyHeader,
  encodeString,
  encodeTextInformation,
} from "../src/codec.ts";
import { NbdProtocolError } from "../src/index.ts";
import { Information, OptionReply, ReplyError } from "../src/wire.ts";

describe("NBD codec", () => {
  test("the greeting is NBDMAGIC, IHAVEOPT, then flags FIXED_NEWSTYLE | NO_ZEROES", () => {
    expect(encodeGreeting().toString("hex")).toBe(
      `${Buffer.from("NBDMAGICIHAVEOPT").toString("hex")}0003`,
    );
  });

  test("client flags: the two known bits pass, any other closes", () => {
    expect(decodeClientFlags(Buffer.from([0, 0, 0, 3]))).toBe(3);
    expect(decodeClientFlags(Buffer.from([0, 0, 0, 0]))).toBe(0);
    expect(() => decodeClientFlags(Buffer.from([0, 0, 0, 4]))).toThrow(NbdProtocolError);
    expect(() => decodeClientFlags(Buffer.from([0x80, 0, 0, 1]))).toThrow(/unknown flags/);
  });

  test("an option header is IHAVEOPT, option, length", () => {
    const header = Buffer.from("IHAVEOPT\0\0\0\x07\0\0\x01\x02", "latin1");
    expect(decodeOptionHeader(header)).toEqual({ option: 7, length: 258 });
    header[0] = 0x4a;
    expect(() => decodeOptionHeader(header)).toThrow(NbdProtocolError);
  });

  test("an option reply is magic 0x3e889045565a9, option, type, length, data", () => {
    const reply = encodeOptionReply(6, OptionReply.ErrorUnknown, Buffer.from("why"));
    expect(reply.toString("hex")).toBe(
      "0003e889045565a9" +
        "00000006" +
        "80000006" +
        "00000003" +
        Buffer.from("why").toString("hex"),
    );
    expect(encodeOptionReply(2, OptionReply.Acknowledge).byteLength).toBe(20);
  });

  test("export information: type 0, size (64 bits), flags (16 bits)", () => {
    expect(encodeExportInformation(2 ** 40 + 512, 0x016d).toString("hex")).toBe(
      "0000" + "0000010000000200" + "016d",
    );
  });

  test("block size information: type 3, minimum, preferred, maximum", () => {
    const bytes = encodeBlockSizeInformation({
      minimumBytes: 512,
      preferredBytes: 4096,
      maximumBytes: 32 * 1024 * 1024,
    });
    expect(bytes.toString("hex")).toBe("0003" + "00000200" + "00001000" + "02000000");
  });

  test("text information and server data carry their strings", () => {
    expect(encodeTextInformation(Information.Name, "vol").toString("hex")).toBe("0001766f6c");
    expect(encodeServerData("vol").toString("hex")).toBe("00000003766f6c");
  });

  test("the NBD_OPT_EXPORT_NAME answer is 134 bytes with padding, 10 without", () => {
    const padded = encodeExportNameReply(1024, 0x0d, true);
    expect(padded.byteLength).toBe(134);
    expect(padded.subarray(0, 10).toString("hex")).toBe("0000000000000400000d");
    expect(padded.subarray(10).every((byte) => byte === 0)).toBe(true);
    expect(encodeExportNameReply(1024, 0x0d, false).toString("hex")).toBe("0000000000000400000d");
  });

  test("a request is magic 0x25609513, flags, type, handle, offset, length", () => {
    const bytes = Buffer.from(
      "25609513" + "0001" + "0006" + "0102030405060708" + "ffffffffffffff00" + "00010000",
      "hex",
    );
    expect(decodeRequestHeader(bytes)).toEqual({
      flags: 1,
      command: 6,
      handle: 0x0102030405060708n,
      offset: 0xffffffffffffff00n,
      length: 65536,
    });
    bytes[3] = 0x14;
    expect(() => decodeRequestHeader(bytes)).toThrow(/expected magic 0x25609513/);
  });

  test("a simple reply is magic 0x67446698, error, handle", () => {
    expect(encodeSimpleReplyHeader(ReplyError.NoSpace, 0xfedcba9876543210n).toString("hex")).toBe(
      "67446698" + "0000001c" + "fedcba9876543210",
    );
  });

  test("strings longer than 4096 bytes are cut on a character boundary", () => {
    expect(encodeString("short").toString()).toBe("short");
    const cut = encodeString("é".repeat(3000));
    expect(cut.byteLength).toBe(4096);
    expect(cut.toString("utf8")).toBe("é".repeat(2048));
    const odd = encodeString(`x${"é".repeat(3000)}`);
    expect(odd.byteLength).toBe(4095);
    expect(odd.toString("utf8")).toBe(`x${"é".repeat(2047)}`);
  });
});
