// NBD has no access control: the protocol has no credentials, and the gateway serves
// every volume and snapshot, writable, to whoever completes the handshake (it runs as the
// gateway NATS role, so it can reach them all). Who can connect is therefore exactly who
// can reach the listener, and a listener on an address other hosts reach hands the whole
// cluster's data to the network. The gateway still serves there (a per-host gateway on a
// private network, a firewalled port are fine choices), but says so at every start.
//
// What it serves can be narrowed: `--nbd-exports` names the volumes a gateway serves
// (with their snapshots); any other name is answered as an unknown export and left out
// of export lists. That limits what one gateway exposes (a per-host gateway serving only
// that host's disks); it still tells nothing about who connects.

import { BlockList, isIP } from "node:net";
import { isValidName, limits } from "@ballast/protocol";

/** 127.0.0.0/8 and ::1 (BlockList also matches their IPv4-mapped and long spellings). */
const loopbackAddresses = new BlockList();
loopbackAddresses.addSubnet("127.0.0.0", 8, "ipv4");
loopbackAddresses.addAddress("::1", "ipv6");

/**
 * Whether `address`, as a listener was bound (an IP address) or as configured (a name),
 * reaches this host only: 127.0.0.0/8, ::1 (also IPv4-mapped), or the name `localhost`.
 * Every other name counts as reachable from elsewhere: what it resolves to is not known
 * here.
 */
export function isLoopbackAddress(address: string): boolean {
  const host = address
    .trim()
    .toLowerCase()
    .replace(/^\[(.*)\]$/, "$1");
  if (host === "localhost") return true;
  const family = isIP(host);
  if (family === 0) return false;
  return loopbackAddresses.check(host, family === 6 ? "ipv6" : "ipv4");
}

/**
 * The warning for an NBD listener bound to `address` (shown as `where`), or undefined for
 * a loopback one. A Unix socket is not judged here: its file's mode decides who connects.
 */
export function nbdExposureWarning(address: string, where: string): string | undefined {
  if (isLoopbackAddress(address)) return undefined;
  return (
    `NBD on ${where} can be reached from other hosts, and NBD has no access control: ` +
    "anyone who connects can read and write every volume and snapshot this gateway serves " +
    "(all of them unless --nbd-exports names some). Serve on 127.0.0.1 " +
    "or a Unix socket (--nbd-socket) and reach it over SSH or a VPN, or firewall the port " +
    "to the hosts that may use it"
  );
}

/** The volume names of an `--nbd-exports` value: comma-separated, spaces around ignored. */
export function exportListOf(value: string): string[] {
  return value
    .split(",")
    .map((name) => name.trim())
    .filter((name) => name !== "");
}

/** Why an `--nbd-exports` value is refused, or undefined when every name is a volume name. */
export function exportListProblem(value: string): string | undefined {
  const names = exportListOf(value);
  if (names.length === 0) {
    return "must name at least one volume (leave it unset to serve every volume)";
  }
  const bad = names.filter((name) => !isValidName(name, limits.volumeNameLengthMax));
  if (bad.length > 0) {
    return `must be volume names separated by commas (a snapshot is served with its volume); not volume names: ${bad.map((name) => JSON.stringify(name)).join(", ")}`;
  }
  return undefined;
}
