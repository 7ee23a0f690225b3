// The NBD server: block devices (the gateway's are Ballast volumes) served to standard
// NBD clients (the Linux nbd client, qemu, libnbd's tools, fio). A library of its own,
// below the services: it knows the NBD protocol and the BlockDevice contract, not
// volumes, partitions or NATS. This is its public surface; `@ballast/nbd/wire` has the
// protocol's numbers, and tests reach the other parts through their files.

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
