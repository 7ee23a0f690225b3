// Block I/O from the command line, through the client library (which follows
// failovers): `ballast write` and `ballast read` for a range, `ballast import` and
// `ballast export` for a whole image with a progress line. Data moves in pieces of
// `pieceBytes` with `piecesInflightMax` in flight; everything written is durable in
// every replica's journal before the command reports success.

import { open } from "node:fs/promises";
import { type ParseArgsConfig, parseArgs } from "node:util";
import { BallastClient, type Volume } from "@ballast/client";
import { BallastError, limits } from "@ballast/protocol";
import { connectCli, findCluster } from "./connect.ts";
import { dataDirDefault } from "./constants.ts";
import { CliError, exitCodes } from "./errors.ts";
import { formatSize, parseSize, SizeError } from "./sizes.ts";

const pieceBytes = 4 * 1024 * 1024;
const piecesInflightMax = 8;

export const ioHelp = `Usage:
  ballast write VOLUME [--offset 0] [--file PATH] [--pad]   data from PATH or stdin
  ballast read VOLUME --length 4KiB [--offset 0] [--file PATH]   to PATH or stdout
  ballast import VOLUME PATH [--pad]                        a whole image into the volume
  ballast export VOLUME PATH                                the whole volume into a file

Offsets and lengths take KiB, MiB, GiB, TiB and must be multiples of 512; --pad fills
the last partial sector of the input with zeros. Every write is durable on every replica
before the command succeeds. --progress shows progress on stderr (import and export show
it anyway on a terminal).
Common options: --data-dir <dir> (default ${dataDirDefault}), --nats <url>.
`;

const options: ParseArgsConfig["options"] = {
  "data-dir": { type: "string" },
  nats: { type: "string" },
  offset: { type: "string" },
  length: { type: "string" },
  file: { type: "string" },
  pad: { type: "boolean" },
  progress: { type: "boolean" },
};

type Flags = Record<string, string | boolean | undefined>;

export async function ioCommand(command: "write" | "read" | "import" | "export", argv: string[]) {
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: argv, options, strict: true, allowPositionals: true });
  } catch (error) {
    throw new CliError(
      exitCodes.usage,
      `${(error as Error).message} (see ballast help ${command})`,
    );
  }
  const flags = parsed.values as Flags;
  const [name, path, ...extra] = parsed.positionals;
  const wantsPath = command === "import" || command === "export";
  if (
    name === undefined ||
    (wantsPath && path === undefined) ||
    extra.length > 0 ||
    (!wantsPath && path !== undefined)
  ) {
    throw new CliError(
      exitCodes.usage,
      `wrong arguments for ballast ${command} (see ballast help ${command})`,
    );
  }
  let offset: number;
  let length: number | undefined;
  try {
    offset = flags.offset === undefined ? 0 : parseSize(String(flags.offset), "--offset");
    length = flags.length === undefined ? undefined : parseSize(String(flags.length), "--length");
  } catch (error) {
    if (error instanceof SizeError) throw new CliError(exitCodes.usage, error.message);
    throw error;
  }
  if (command === "read" && length === undefined)
    throw new CliError(exitCodes.usage, "ballast read needs --length");
  // Volumes are addressed in sectors: say so here, before the cluster is looked for, rather
  // than as the volume's Unaligned refusal (exit 1) once connected.
  for (const [flag, value] of [
    ["--offset", offset],
    ["--length", length],
  ] as const) {
    if (value !== undefined && value % limits.sectorBytes !== 0) {
      throw new CliError(
        exitCodes.usage,
        `${flag} must be a multiple of ${limits.sectorBytes} bytes, got ${value}`,
      );
    }
  }

  const address = await findCluster({
    nats: flags.nats as string | undefined,
    dataDir: (flags["data-dir"] as string | undefined) ?? dataDirDefault,
  });
  const client = await connectCli(address);
  let volume: Volume | undefined;
  try {
    volume = await new BallastClient(client.bus).openVolume(name);
    const progress = progressLine(
      Boolean(flags.progress) || (wantsPath && process.stderr.isTTY === true),
    );
    switch (command) {
      case "write":
      case "import": {
        const source = command === "import" ? path : (flags.file as string | undefined);
        const written = await copyIn(volume, source, offset, flags.pad === true, progress);
        process.stderr.write(`wrote ${formatSize(written)} to ${name} at ${offset}, flushed\n`);
        break;
      }
      case "read":
      case "export": {
        const total = command === "export" ? volume.sizeBytes - offset : length!;
        const target = command === "export" ? path : (flags.file as string | undefined);
        await copyOut(volume, target, offset, total, progress);
        if (target !== undefined)
          process.stderr.write(`read ${formatSize(total)} of ${name} into ${target}\n`);
        break;
      }
      default: {
        const unreachable: never = command;
        throw new Error(`no such command ${unreachable}`);
      }
    }
    return exitCodes.ok;
  } catch (error) {
    if (error instanceof BallastError)
      throw new CliError(exitCodes.failed, `${error.code}: ${error.message}`, { cause: error });
    throw error;
  } finally {
    await volume?.close();
    await client.close();
  }
}

type Progress = (done: number, total: number | undefined) => void;

function progressLine(enabled: boolean): Progress {
  if (!enabled) return () => undefined;
  const startMs = Date.now();
  return (done, total) => {
    const seconds = Math.max(0.001, (Date.now() - startMs) / 1000);
    const rate = `${(done / seconds / 1024 / 1024).toFixed(1)} MiB/s`;
    const share =
      total === undefined ? "" : ` of ${formatSize(total)} (${((done / total) * 100).toFixed(0)}%)`;
    process.stderr.write(`\r${formatSize(done)}${share}  ${rate}   `);
    if (total !== undefined && done >= total) process.stderr.write("\n");
  };
}

/** Reads the source in pieces and writes them, several in flight; returns bytes written. */
async function copyIn(
  volume: Volume,
  source: string | undefined,
  offset: number,
  pad: boolean,
  progress: Progress,
) {
  const file = source === undefined ? undefined : await open(source, "r");
  const size = file === undefined ? undefined : (await file.stat()).size;
  if (size !== undefined && offset + size > volume.sizeBytes) {
    await file?.close();
    throw new CliError(
      exitCodes.failed,
      `${source} is ${formatSize(size)}: it does not fit in ${volume.name} (${formatSize(volume.sizeBytes)}) at ${offset}`,
    );
  }
  const inflight = new Set<Promise<void>>();
  let position = 0;
  try {
    const pieces = file === undefined ? readStdin() : readFile(file);
    for await (let piece of pieces) {
      if (piece.byteLength % limits.sectorBytes !== 0) {
        if (!pad) {
          throw new CliError(
            exitCodes.usage,
            `the input ends ${piece.byteLength % limits.sectorBytes} bytes into a sector: sizes must be multiples of ${limits.sectorBytes} (or pass --pad)`,
          );
        }
        const padded = new Uint8Array(
          Math.ceil(piece.byteLength / limits.sectorBytes) * limits.sectorBytes,
        );
        padded.set(piece);
        piece = padded;
      }
      const at = offset + position;
      position += piece.byteLength;
      const write = volume.write(at, piece).finally(() => inflight.delete(write));
      inflight.add(write);
      if (inflight.size >= piecesInflightMax) await Promise.race(inflight);
      progress(position, size);
    }
    await Promise.all(inflight);
    await volume.flush();
    return position;
  } finally {
    await file?.close();
  }
}

async function* readFile(file: Awaited<ReturnType<typeof open>>): AsyncGenerator<Uint8Array> {
  for (;;) {
    const buffer = new Uint8Array(pieceBytes);
    const { bytesRead } = await file.read(buffer, 0, pieceBytes, null);
    if (bytesRead === 0) return;
    yield buffer.subarray(0, bytesRead);
  }
}

/** Stdin in whole pieces: chunks are gathered until a piece is full or input ends. */
async function* readStdin(): AsyncGenerator<Uint8Array> {
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) {
    pending.push(chunk);
    pendingBytes += chunk.byteLength;
    while (pendingBytes >= pieceBytes) {
      const all = Buffer.concat(pending);
      yield all.subarray(0, pieceBytes);
      pending = [all.subarray(pieceBytes)];
      pendingBytes = pending[0]!.byteLength;
    }
  }
  if (pendingBytes > 0) yield Buffer.concat(pending);
}

/** Reads [offset, offset + total) in pieces, in order, into a file or stdout. */
async function copyOut(
  volume: Volume,
  target: string | undefined,
  offset: number,
  total: number,
  progress: Progress,
) {
  const file = target === undefined ? undefined : await open(target, "w");
  try {
    const reads: Promise<Uint8Array>[] = [];
    let issued = 0;
    let done = 0;
    const issue = () => {
      const length = Math.min(pieceBytes, total - issued);
      reads.push(volume.read(offset + issued, length));
      issued += length;
    };
    while (issued < total && reads.length < piecesInflightMax) issue();
    while (reads.length > 0) {
      const data = await reads.shift()!;
      if (file === undefined) {
        if (!process.stdout.write(data))
          await new Promise((resolve) => process.stdout.once("drain", resolve));
      } else {
        await file.write(data);
      }
      done += data.byteLength;
      progress(done, total);
      if (issued < total) issue();
    }
    await file?.sync();
  } finally {
    await file?.close();
  }
}
