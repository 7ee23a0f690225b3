// The pure decisions: what the server does with each option and each request, from
// the message alone. These tables are the server's policy; the socket tests check that
// the shell carries them out.

import { describe, expect, test } from "vitest";
import type { RequestHeader } from "../src/codec.ts";
import { decideOption, decodeExportRequest, decodeString } from "../src/option-decision.ts";
import { decideRequest } from "../src/request-decision.ts";
import { Command, CommandFlag, Option, OptionReply, ReplyError } from "../src/wire.ts";

const mebibyte = 1024 * 1024;
const geometry = { sizeBytes: 8 * mebibyte, payloadBytesMax: 32 * mebibyte };

function request(fields: Partial<RequestHeader> & { command: number }): RequestHeader {
  return { flags: 0, handle: 1n, offset: 0n, length: 512, ...fields };
}

function exportRequest(name: string, types: number[]): Buffer {
  const nameBytes = Buffer.from(name);
  const bytes = Buffer.alloc(6 + nameBytes.byteLength + 2 * types.length);
  bytes.writeUInt32BE(nameBytes.byteLength, 0);
  nameBytes.copy(bytes, 4);
  bytes.writeUInt16BE(types.length, 4 + nameBytes.byteLength);
  for (const [index, type] of types.entries()) {
    bytes.writeUInt16BE(type, 6 + nameBytes.byteLength + 2 * index);
  }
  return bytes;
}

describe("decideOption", () => {
  test("GO and INFO name an export and list the information wanted", () => {
    expect(decideOption(Option.Go, exportRequest("vol", [3, 1]))).toEqual({
      kind: "go",
      request: { name: "vol", informationRequested: new Set([3, 1]) },
    });
    expect(decideOption(Option.Info, exportRequest("", []))).toEqual({
      kind: "info",
      request: { name: "", informationRequested: new Set() },
    });
  });

  test("EXPORT_NAME takes the whole data as the name; a bad name cannot be answered", () => {
    expect(decideOption(Option.ExportName, Buffer.from("vol-1"))).toEqual({
      kind: "export-name",
      name: "vol-1",
    });
    expect(decideOption(Option.ExportName, Buffer.alloc(4097, 0x61)).kind).toBe("abandon");
    expect(decideOption(Option.ExportName, Buffer.from([0xff])).kind).toBe("abandon");
  });

  test("LIST takes no data; ABORT ignores any", () => {
    expect(decideOption(Option.List, Buffer.alloc(0))).toEqual({ kind: "list" });
    expect(decideOption(Option.List, Buffer.alloc(1))).toMatchObject({
      kind: "refuse",
      reply: OptionReply.ErrorInvalid,
    });
    expect(decideOption(Option.Abort, Buffer.from("ignored"))).toEqual({ kind: "abort" });
  });

  test("options this server does not offer are NBD_REP_ERR_UNSUP", () => {
    for (const option of [
      Option.StartTls,
      Option.StructuredReply,
      Option.ListMetaContext,
      Option.SetMetaContext,
      4,
      11,
      0xffff_ffff,
    ]) {
      expect(decideOption(option, Buffer.alloc(0))).toMatchObject({
        kind: "refuse",
        reply: OptionReply.ErrorUnsupported,
      });
    }
  });

  test("malformed GO data says what is wrong", () => {
    expect(decodeExportRequest(Buffer.alloc(5))).toMatch(/at least 6 bytes, got 5/);
    const long = exportRequest("vol", []);
    long.writeUInt32BE(4, 0);
    expect(decodeExportRequest(long)).toMatch(/name length 4 does not fit/);
    expect(
      decodeExportRequest(Buffer.concat([exportRequest("vol", [1]), Buffer.alloc(2)])),
    ).toMatch(/1 information requests need 11 bytes of option data, got 13/);
  });

  test("protocol strings are UTF-8 without NUL, at most 4096 bytes", () => {
    expect(decodeString(Buffer.from("vólume"))).toBe("vólume");
    expect(decodeString(Buffer.alloc(4096, 0x61))).toHaveLength(4096);
    expect(decodeString(Buffer.alloc(4097, 0x61))).toBeUndefined();
    expect(decodeString(Buffer.from([0x61, 0, 0x62]))).toBeUndefined();
    expect(decodeString(Buffer.from([0xc3]))).toBeUndefined();
  });
});

describe("decideRequest", () => {
  test("in-range, aligned requests are carried out", () => {
    expect(
      decideRequest(request({ command: Command.Read, offset: 4096n, length: 8192 }), geometry),
    ).toEqual({
      kind: "read",
      offset: 4096,
      length: 8192,
    });
    expect(
      decideRequest(
        request({ command: Command.Write, flags: CommandFlag.ForceUnitAccess, length: 1024 }),
        geometry,
      ),
    ).toEqual({ kind: "write", offset: 0, length: 1024, forceUnitAccess: true });
    expect(
      decideRequest(
        request({ command: Command.WriteZeroes, flags: CommandFlag.NoHole, length: 8 * mebibyte }),
        geometry,
      ),
    ).toEqual({ kind: "write-zeroes", offset: 0, length: 8 * mebibyte, forceUnitAccess: false });
    expect(decideRequest(request({ command: Command.Trim, offset: 512n }), geometry)).toEqual({
      kind: "trim",
      offset: 512,
      length: 512,
      forceUnitAccess: false,
    });
    expect(decideRequest(request({ command: Command.Flush, length: 0 }), geometry)).toEqual({
      kind: "flush",
    });
    expect(decideRequest(request({ command: Command.Disconnect, length: 0 }), geometry)).toEqual({
      kind: "disconnect",
    });
  });

  test("the last block of the export is in range; one past it is not", () => {
    const last = BigInt(geometry.sizeBytes - 512);
    expect(decideRequest(request({ command: Command.Read, offset: last }), geometry).kind).toBe(
      "read",
    );
    expect(
      decideRequest(request({ command: Command.Read, offset: last, length: 1024 }), geometry),
    ).toMatchObject({
      kind: "refuse",
      error: ReplyError.InvalidArgument,
    });
  });

  test("trim and write zeroes are bounded by the export, not the maximum payload", () => {
    const small = { sizeBytes: 64 * mebibyte, payloadBytesMax: mebibyte };
    expect(
      decideRequest(request({ command: Command.Trim, length: 64 * mebibyte }), small).kind,
    ).toBe("trim");
    expect(
      decideRequest(request({ command: Command.WriteZeroes, length: 64 * mebibyte }), small).kind,
    ).toBe("write-zeroes");
  });

  test("a refused write says how much data to skip; an oversized write is abandoned", () => {
    expect(
      decideRequest(request({ command: Command.Write, offset: 3n, length: 4096 }), geometry),
    ).toMatchObject({
      kind: "refuse",
      error: ReplyError.InvalidArgument,
      discardBytes: 4096,
    });
    expect(
      decideRequest(
        request({ command: Command.Write, offset: BigInt(geometry.sizeBytes), length: 512 }),
        geometry,
      ),
    ).toMatchObject({ kind: "refuse", error: ReplyError.NoSpace, discardBytes: 512 });
    expect(
      decideRequest(
        request({ command: Command.Write, length: geometry.payloadBytesMax + 512 }),
        geometry,
      ),
    ).toMatchObject({ kind: "abandon", reason: expect.stringMatching(/over the 33554432-byte/) });
    // Over a smaller advertised maximum, yet within 2^25 bytes: refused, its data skipped.
    const small = { sizeBytes: 64 * mebibyte, payloadBytesMax: mebibyte };
    expect(
      decideRequest(request({ command: Command.Write, length: 2 * mebibyte }), small),
    ).toMatchObject({
      kind: "refuse",
      error: ReplyError.InvalidArgument,
      discardBytes: 2 * mebibyte,
    });
    expect(
      decideRequest(request({ command: Command.Write, length: 32 * mebibyte + 512 }), small).kind,
    ).toBe("abandon");
    expect(
      decideRequest(request({ command: Command.Write, length: geometry.payloadBytesMax }), {
        ...geometry,
        sizeBytes: 64 * mebibyte,
      }).kind,
    ).toBe("write");
  });

  test("refusals other than for writes skip nothing", () => {
    for (const header of [
      request({ command: Command.Read, length: 100 }),
      request({ command: 42 }),
      request({ command: Command.Flush, length: 512 }),
      request({ command: Command.Trim, flags: CommandFlag.NoHole }),
    ]) {
      expect(decideRequest(header, geometry)).toMatchObject({
        kind: "refuse",
        error: ReplyError.InvalidArgument,
        discardBytes: 0,
      });
    }
  });

  test("a read-only export (a snapshot) reads and flushes, and refuses changes with EPERM", () => {
    const readOnly = { ...geometry, readOnly: true };
    expect(decideRequest(request({ command: Command.Read, length: 4096 }), readOnly)).toEqual({
      kind: "read",
      offset: 0,
      length: 4096,
    });
    expect(decideRequest(request({ command: Command.Flush, length: 0 }), readOnly)).toEqual({
      kind: "flush",
    });
    expect(
      decideRequest(request({ command: Command.Write, length: 1024 }), readOnly),
    ).toMatchObject({
      kind: "refuse",
      error: ReplyError.NotPermitted,
      discardBytes: 1024, // the write's data is read and dropped: the stream stays framed
    });
    for (const command of [Command.Trim, Command.WriteZeroes]) {
      expect(decideRequest(request({ command, length: 512 }), readOnly)).toMatchObject({
        kind: "refuse",
        error: ReplyError.NotPermitted,
      });
    }
  });
});
