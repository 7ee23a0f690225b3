// @ballast/client: block I/O on Ballast volumes. A BallastClient opens a volume by name
// and returns it as a BlockDevice; the volume splits I/O across partitions and request
// limits, batches concurrent operations per partition, and rides out failovers by
// re-describing itself and retrying with the new epoch. Failures are BallastErrors with
// the wire's codes, plus the client-side errors of errors.ts.

export type { BlockDevice, OperationOptions } from "./block-device.ts";
export { BallastClient } from "./client.ts";
export * as constants from "./constants.ts";
export * from "./errors.ts";
export { type ClientOptions, type Clock, clientOptionsDefault, systemClock } from "./options.ts";
export { Volume } from "./volume.ts";
export { describeVolumeWhole, type RequestBus } from "./wire.ts";
