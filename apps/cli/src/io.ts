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
import { Pipeline } from "./pipeline.ts";
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
  const file = source === undefined ? undefined : await fileStep(source, "open", open(source, "r"));
  const size = file === undefined ? undefined : (await fileStep(source!, "read", file.stat())).size;
  if (size !== undefined && offset + size > volume.sizeBytes) {
    await file?.close();
    throw new CliError(
      exitCodes.failed,
      `${source} is ${formatSize(size)}: it does not fit in ${volume.name} (${formatSize(volume.sizeBytes)}) at ${offset}`,
    );
  }
  const writes = new Pipeline(piecesInflightMax);
  let position = 0;
  try {
    const pieces = file === undefined ? readStdin() : readFile(file, source!);
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
      await writes.add(() => volume.write(at, piece));
      progress(position, size);
    }
    await writes.drain();
    await volume.flush();
    return position;
  } finally {
    // Nothing may be left running when the volume closes, failed or not.
    await writes.settled();
    await file?.close();
  }
}

async function* readFile(
  file: Awaited<ReturnType<typeof open>>,
  path: string,
): AsyncGenerator<Uint8Array> {
  for (;;) {
    const buffer = new Uint8Array(pieceBytes);
    const { bytesRead } = await fileStep(path, "read", file.read(buffer, 0, pieceBytes, null));
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
  // Refused before anything is read or a file is made: a range past the end would
  // otherwise fail only at its first piece past the end, after the pieces before it
  // had gone to the output.
  if (offset > volume.sizeBytes || total > volume.sizeBytes - offset) {
    throw new CliError(
      exitCodes.failed,
      `OutOfRange: cannot read ${formatSize(Math.max(0, total))} at offset ${offset} of ${volume.name}: the volume ends at ${volume.sizeBytes} (${formatSize(volume.sizeBytes)})`,
    );
  }
  const file =
    target === undefined ? undefined : await fileStep(target, "create", open(target, "w"));
  const reads: Promise<Uint8Array>[] = [];
  try {
    let issued = 0;
    let done = 0;
    const issue = () => {
      const length = Math.min(pieceBytes, total - issued);
      const read = volume.read(offset + issued, length);
      // Handled here as well as where it is awaited, in order: a later piece may fail
      // while an earlier one is awaited, and an unhandled rejection ends the process.
      read.catch(() => undefined);
      reads.push(read);
      issued += length;
    };
    while (issued < total && reads.length < piecesInflightMax) issue();
    while (reads.length > 0) {
      const data = await reads.shift()!;
      if (file === undefined) {
        await writeStdout(data);
      } else {
        await fileStep(target!, "write", file.write(data));
      }
      done += data.byteLength;
      progress(done, total);
      if (issued < total) issue();
    }
    if (file !== undefined) await fileStep(target!, "write", file.sync());
    else {
      // The last write's EPIPE comes a turn after it returned.
      await new Promise((resolve) => setImmediate(resolve));
      throwIfStdoutFailed();
    }
  } finally {
    await Promise.allSettled(reads);
    await file?.close();
  }
}

/**
 * Standard output's first error, watched from the first write on: a reader that has gone
 * (`ballast read ... | head -c 1`) fails a write with EPIPE, which node reports as an
 * 'error' event, often a turn after the write returned. With no listener it ended the
 * process with a stack; a write waiting for 'drain' would have waited for good.
 */
let stdoutFailure: Error | undefined;
let stdoutFailed: Promise<never> | undefined;

function watchStdout(): Promise<never> {
  if (stdoutFailed === undefined) {
    stdoutFailed = new Promise<never>((_, reject) => {
      process.stdout.on("error", (error: Error) => {
        stdoutFailure ??= error;
        reject(error);
      });
    });
    stdoutFailed.catch(() => undefined);
  }
  return stdoutFailed;
}

function throwIfStdoutFailed(): void {
  if (stdoutFailure !== undefined) {
    throw new CliError(
      exitCodes.failed,
      `cannot write to standard output: ${stdoutFailure.message}`,
      { cause: stdoutFailure },
    );
  }
}

/** Writes `data` to standard output, waiting while its buffer is full. */
async function writeStdout(data: Uint8Array): Promise<void> {
  const failed = watchStdout();
  throwIfStdoutFailed();
  if (!process.stdout.write(data)) {
    await Promise.race([
      new Promise((resolve) => process.stdout.once("drain", resolve)),
      failed,
    ]).catch(() => undefined);
  }
  throwIfStdoutFailed();
}

/**
 * `step` on the file at `path`, its failure (no such file, a directory, no space) as
 * the command's error: what could not be done to which file, and why.
 */
async function fileStep<T>(path: string, action: string, step: Promise<T>): Promise<T> {
  try {
    return await step;
  } catch (error) {
    throw new CliError(exitCodes.failed, `cannot ${action} ${path}: ${(error as Error).message}`, {
      cause: error,
    });
  }
}
