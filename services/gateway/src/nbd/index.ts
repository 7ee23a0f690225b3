// The NBD server of the gateway: Ballast volumes as network block devices for standard
// clients (the Linux nbd client, qemu, libnbd's tools, fio). This is the module's
// public surface; tests reach the parts (codec, decisions, reader) through their files.

export type { BlockDevice } from "./block-device.ts";
export { type NbdLimits, nbdLimitsDefault } from "./constants.ts";
export {
  BackendContractError,
  ConnectionClosedError,
  NbdAssertionError,
  NbdLimitsError,
  NbdProtocolError,
  replyErrorOf,
} from "./errors.ts";
export {
  type BoundAddress,
  type ListenAddress,
  NbdServer,
  type NbdServerOptions,
} from "./server.ts";
