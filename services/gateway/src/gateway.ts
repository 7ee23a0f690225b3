// The gateway: serves Ballast volumes over NBD, so that standard block clients (qemu,
// nbdcopy, nbdinfo, fio, the Linux nbd-client) use a volume as a disk. The export name
// is the volume name (or a snapshot's, below). Each export is one client-library Volume shared by every
// connection to it, so a flush on any connection covers every connection's
// acknowledged writes, and waits for those in flight (which is what lets the server
// offer multi-connection). A flush sends nothing: acknowledged writes are already
// durable in every replica's journal.
//
// Size: each connection gets the volume's size as the coordinator says it when the
// connection opens the export (the shared Volume describes the volume again), and keeps
// it for its life, as NBD requires; so a resized volume shows its new size on the next
// connection, and never mid-connection.
//
// Snapshots: the export name `VOLUME@NAME` is snapshot NAME of VOLUME, served read-only
// (NBD_FLAG_READ_ONLY; writes, trims and write-zeroes answer EPERM). Export lists name
// each volume and each of its snapshots.
//
// Attachment: node.info.v1 details carry `attached: {volume: open connections}` (past
// the handshake, writable exports only), which the coordinator asks before a rollback.
//
// Failure model: a volume that fails over is followed by the client library (requests
// wait and retry); an unknown volume is an unknown export; a volume deleted while open
// fails its I/O with the coordinator's NotFound, as an NBD error.

import { BallastClient, type Volume } from "@ballast/client";
import { NbdServer } from "@ballast/nbd";
import { BallastError, ErrorCode, subjects } from "@ballast/protocol";
import type { CommonConfig, ConfigOf, OptionSpecs, Service } from "@ballast/runtime";
import { ObservedDevice } from "./observed-device.ts";

export const nbdPortDefault = 10809;

export const gatewayOptions = {
  nbdHost: {
    flag: "nbd-host",
    env: "BALLAST_NBD_HOST",
    type: "string",
    default: "127.0.0.1",
    description: "address the NBD server listens on",
  },
  nbdPort: {
    flag: "nbd-port",
    env: "BALLAST_NBD_PORT",
    type: "integer",
    default: nbdPortDefault,
    min: 0,
    max: 65_535,
    description: "NBD TCP port (0 picks a free one)",
  },
  nbdSocket: {
    flag: "nbd-socket",
    env: "BALLAST_NBD_SOCKET",
    type: "string",
    description: "listen on this Unix socket instead of TCP",
  },
  links: {
    flag: "links",
    env: "BALLAST_LINKS",
    type: "string",
    default: "on",
    check: (value: string) => (value === "on" || value === "off" ? undefined : "must be on or off"),
    description:
      "send volume I/O over direct links to the primaries that offer them (NATS until then, and as the fallback)",
  },
} as const satisfies OptionSpecs;

type GatewayConfig = ConfigOf<typeof gatewayOptions> & CommonConfig;

export class Gateway {
  private readonly client: BallastClient;
  private readonly volumes = new Map<string, Promise<Volume>>();
  private server: NbdServer | undefined;
  private address = "";

  constructor(
    private readonly service: Service,
    private readonly config: GatewayConfig,
  ) {
    this.client = new BallastClient(service.bus, { links: config.links === "on" });
  }

  async start(): Promise<void> {
    this.service.serveInbox([], () => undefined);
    this.server = new NbdServer({
      openExport: async (name) => {
        const device = await this.openExport(name);
        return device === undefined ? undefined : new ObservedDevice(device, this.service);
      },
      listExports: () => this.listExports(),
      logger: this.service.logger,
    });
    const bound = await this.server.listen(
      this.config.nbdSocket === undefined
        ? { host: this.config.nbdHost, port: this.config.nbdPort }
        : { path: this.config.nbdSocket },
    );
    this.address =
      bound.path !== undefined
        ? `nbd+unix:///?socket=${bound.path}`
        : `nbd://${this.config.nbdHost}:${bound.port}`;
    this.service.logger.info({ nbd: this.address }, "serving NBD");
    this.service.setDescription(() => ({
      nbd: this.address,
      connections: this.server?.connectionCount ?? 0,
      exports: [...this.volumes.keys()],
      // Open NBD connections per volume: the coordinator refuses a rollback of one.
      attached: this.server?.attachedDevices() ?? {},
    }));
    this.service.onClose(async () => {
      await this.server?.close();
      await Promise.allSettled(
        [...this.volumes.values()].map(async (volume) => (await volume).close()),
      );
    });
  }

  /**
   * One shared Volume per name; a name that is not a volume is not an export. A shared
   * Volume is described again for each connection (its current size); one found deleted
   * then, or before, is let go and the name opened anew, once, for a volume created
   * since under the name.
   */
  private async openExport(name: string): Promise<Volume | undefined> {
    const snapshot = parseSnapshotExport(name);
    if (snapshot !== undefined) {
      // Opened per connection, not shared: a snapshot takes no writes, so there is no
      // flush to share, and a snapshot deleted and taken again under its name is another
      // snapshot (another id) that the next connection must find.
      return this.unlessUnknown(this.client.openSnapshot(snapshot.volume, snapshot.snapshot));
    }
    return this.unlessUnknown(this.sharedVolume(name));
  }

  /**
   * The shared Volume of `name`, with the size the coordinator says now. A deletion
   * shows only at a describe, and an idle Volume describes nothing: the describe this
   * connection makes is often the first to find its volume deleted (and the name maybe
   * another volume's). That is no reason to refuse the connection: the Volume is let go
   * and the name opened anew, once. A Volume opened anew was described for this very
   * connection, so it is not checked again.
   */
  private async sharedVolume(name: string): Promise<Volume> {
    const opening = this.volumes.get(name);
    if (opening !== undefined) {
      const served = await settledValue(opening);
      if (served !== undefined) {
        if (!served.isDeleted) {
          try {
            return await this.withCurrentSize(served);
          } catch (error) {
            // NotFound without a deletion seen cannot come from a describe; pass it on.
            if (!served.isDeleted) throw error;
          }
        }
        this.letGo(name, opening);
      }
      // Another connection may have opened the name anew meanwhile: that Volume was
      // described after this connection arrived, so it is as current as a new one.
      const since = this.volumes.get(name);
      if (since !== undefined && since !== opening) return since;
    }
    const fresh = this.client.openVolume(name);
    this.volumes.set(name, fresh);
    fresh.catch(() => {
      if (this.volumes.get(name) === fresh) this.volumes.delete(name);
    });
    return fresh;
  }

  /**
   * Stops sharing a Volume found deleted. It is not closed: connections still attached
   * to it keep it, and each of their operations must fail with the NotFound that says
   * their volume was deleted while open (a head node refuses the old incarnation, and
   * the describe that follows says why), not with "the volume is closed", which reads
   * as a gateway fault. A Volume holds nothing that only a close releases (no timers, no
   * subscriptions); it goes when its last connection does.
   */
  private letGo(name: string, opening: Promise<Volume>): void {
    if (this.volumes.get(name) !== opening) return; // another connection let it go first
    this.service.logger.info({ export: name }, "volume deleted while served; opening anew");
    this.volumes.delete(name);
  }

  /** The opened volume, or undefined for a name that is no export (unknown or invalid). */
  private async unlessUnknown(opening: Promise<Volume>): Promise<Volume | undefined> {
    try {
      return await opening;
    } catch (error) {
      if (
        error instanceof BallastError &&
        (error.code === ErrorCode.NotFound || error.code === ErrorCode.InvalidArgument)
      ) {
        return undefined;
      }
      throw error;
    }
  }

  /**
   * The shared Volume, described again so that the connection opening it sees its
   * current size (a resize since the last connection). A describe that fails leaves the
   * size as last known: the export still opens, as it did before resizes existed.
   */
  private async withCurrentSize(volume: Volume): Promise<Volume> {
    await volume.refreshSize().catch((error: unknown) => {
      if (error instanceof BallastError && error.code === ErrorCode.NotFound) throw error;
      this.service.logger.warn(
        { export: volume.name, error: (error as Error).message },
        "could not learn the volume's current size; serving the last known",
      );
    });
    return volume;
  }

  /** Every volume, and each of its snapshots as `VOLUME@NAME` (one listing per volume). */
  private async listExports(): Promise<string[]> {
    const { volumes } = await this.service.bus.request(subjects.coordinator.build(), {
      type: "volume.list.v1",
    });
    const snapshots = await Promise.all(
      volumes.map(async (volume) => {
        try {
          const listed = await this.service.bus.request(subjects.coordinator.build(), {
            type: "snapshot.list.v1",
            volume: volume.name,
          });
          return listed.snapshots.map((snapshot) => `${volume.name}@${snapshot.name}`);
        } catch {
          return []; // a listing is best effort: the volume itself is still listed
        }
      }),
    );
    return volumes.flatMap((volume, index) => [volume.name, ...snapshots[index]!]);
  }
}

/**
 * `VOLUME@NAME` names snapshot NAME of VOLUME, served read-only; any other name is a
 * volume's. Names never hold `@`, so the split is unambiguous.
 */
export function parseSnapshotExport(
  name: string,
): { volume: string; snapshot: string } | undefined {
  const at = name.indexOf("@");
  if (at < 0) return undefined;
  return { volume: name.slice(0, at), snapshot: name.slice(at + 1) };
}

/** The value `promise` resolved with, or undefined if it rejected. */
async function settledValue<T>(promise: Promise<T>): Promise<T | undefined> {
  return promise.then(
    (value) => value,
    () => undefined,
  );
}

export const gatewayDefinition = {
  kind: "gateway" as const,
  options: gatewayOptions,
  async start(service: Service, config: GatewayConfig) {
    await new Gateway(service, config).start();
  },
};
