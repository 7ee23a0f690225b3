// The device files of one sled, in its data directory: `device-0.dev` … `device-(D-1).dev`.
//
// A sled's first start formats all D devices; every later start opens them and never
// formats again. Formatting is two phases, so that a crash at any point leaves a state
// the next start can finish or redo, never a half-formatted device under its real name:
//
//   1. every device is built as `device-N.dev.tmp`: preallocated, superblocks written
//      and synced;
//   2. only then is each renamed into place, and the directory synced.
//
// On a start that finds no device file, leftover temporary files are from phase 1 and
// are deleted and rebuilt. On a start that finds some device files, phase 2 had begun,
// so every temporary file is complete: it is renamed into place. Beyond that, a missing
// device of a sled that has others, a device beyond the configured count, or a device of
// another sled, format or size stops the start with a DeviceError instead of being
// silently "repaired" into an empty one. Every later start also reserves each device's
// blocks again (a no-op on a preallocated file), so a device left sparse is filled in or
// stops the start, rather than offering space a later write would not find.

import { randomUUID } from "node:crypto";
import { readdir, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { createZeroedFile, FileBlockFile, preallocateFile, syncDirectory } from "./block-file.ts";
import { blockBytes, deviceFileName, deviceTemporaryFileName } from "./constants.ts";
import { Device } from "./device.ts";
import { DeviceError } from "./errors.ts";

export interface DeviceSetOptions {
  dataDir: string;
  sledId: string;
  deviceCount: number;
  deviceBytes: number;
  /** Where notes about formatting go (preallocation fell back, a copy was repaired). */
  log: (message: string, details: Record<string, unknown>) => void;
}

const deviceFilePattern = /^device-(\d+)\.dev$/;

/** Opens (formatting on first start) every device of the sled; closes them all on failure. */
export async function openDeviceSet(options: DeviceSetOptions): Promise<Device[]> {
  const { dataDir, deviceCount, deviceBytes } = options;
  if (deviceBytes % blockBytes !== 0) {
    throw new DeviceError(
      join(dataDir, deviceFileName(0)),
      `the configured device size ${deviceBytes} is not a multiple of ${blockBytes} bytes`,
    );
  }
  const names = new Set(await readdir(dataDir));
  const present: number[] = [];
  for (const name of names) {
    const match = deviceFilePattern.exec(name);
    if (match === null) continue;
    const index = Number(match[1]);
    if (index >= deviceCount) {
      throw new DeviceError(
        join(dataDir, name),
        `the sled is configured with ${deviceCount} devices; changing the device count of an existing sled is refused`,
      );
    }
    present.push(index);
  }
  const formatted = present.length === 0;
  if (formatted) {
    await formatDeviceSet(options);
  } else {
    await finishInterruptedFormat(options, names, present);
  }
  const devices: Device[] = [];
  try {
    for (let index = 0; index < deviceCount; index++) {
      const path = join(dataDir, deviceFileName(index));
      const file = await FileBlockFile.open(path);
      try {
        const { device, report } = await Device.open(file, path, {
          sledId: options.sledId,
          deviceIndex: index,
          deviceCount,
          deviceBytes,
        });
        if (!formatted) await reservePreallocation(options, path);
        if (report.superblockCopiesRepaired > 0) {
          options.log("rewrote a damaged superblock copy from the good one", {
            path,
            copies: report.superblockCopiesRepaired,
          });
        }
        devices.push(device);
      } catch (error) {
        await file.close();
        throw error;
      }
    }
  } catch (error) {
    await Promise.allSettled(devices.map((device) => device.close()));
    throw error;
  }
  return devices;
}

/** Phase 1 for every device, then phase 2 for every device. */
async function formatDeviceSet(options: DeviceSetOptions): Promise<void> {
  const indexes = Array.from({ length: options.deviceCount }, (_, index) => index);
  for (const index of indexes) {
    const temporary = join(options.dataDir, deviceTemporaryFileName(index));
    await rm(temporary, { force: true });
    await formatDevice(options, index, temporary);
  }
  for (const index of indexes) {
    await rename(
      join(options.dataDir, deviceTemporaryFileName(index)),
      join(options.dataDir, deviceFileName(index)),
    );
  }
  await syncDirectory(options.dataDir);
}

/** Renames the formatted devices a crash left behind; refuses a device that is gone. */
async function finishInterruptedFormat(
  options: DeviceSetOptions,
  names: ReadonlySet<string>,
  present: readonly number[],
): Promise<void> {
  let renamed = 0;
  for (let index = 0; index < options.deviceCount; index++) {
    if (names.has(deviceFileName(index))) continue;
    const path = join(options.dataDir, deviceFileName(index));
    if (!names.has(deviceTemporaryFileName(index))) {
      throw new DeviceError(
        path,
        `it is missing, and the sled has other devices (${present.map(deviceFileName).join(", ")}); a sled never reformats a device it has had`,
      );
    }
    await rename(join(options.dataDir, deviceTemporaryFileName(index)), path);
    options.log("finished a format that a crash interrupted", { path });
    renamed++;
  }
  if (renamed > 0) await syncDirectory(options.dataDir);
}

/**
 * Reserves the blocks of an existing device again, once its size and superblock were found
 * right. On a preallocated device this changes nothing; a device left sparse (formatted where
 * preallocation was impossible, or by an older sled that fell back to a sparse file on a full
 * disk) gets its holes filled, or the start stops with a DeviceError that names the free
 * space, instead of the sled offering room that a later write would not find.
 */
async function reservePreallocation(options: DeviceSetOptions, path: string): Promise<void> {
  const preallocation = await preallocateFile(path, options.deviceBytes);
  if (!preallocation.preallocated) {
    options.log("device file not preallocated", { path, note: preallocation.note });
  }
}

async function formatDevice(
  options: DeviceSetOptions,
  index: number,
  temporary: string,
): Promise<void> {
  const preallocation = await createZeroedFile(temporary, options.deviceBytes);
  if (!preallocation.preallocated) {
    options.log("device file not preallocated", { path: temporary, note: preallocation.note });
  }
  const file = await FileBlockFile.open(temporary);
  try {
    await Device.format(
      file,
      {
        sledId: options.sledId,
        deviceIndex: index,
        deviceCount: options.deviceCount,
        deviceBytes: options.deviceBytes,
      },
      { createdAtMs: Date.now(), deviceUuid: randomUUID().replaceAll("-", "") },
    );
  } finally {
    await file.close();
  }
  options.log("formatted a device", {
    path: join(options.dataDir, deviceFileName(index)),
    deviceBytes: options.deviceBytes,
    preallocated: preallocation.preallocated,
  });
}
