// The gateway: serves Ballast volumes over NBD, so that standard block clients (qemu,
// nbdcopy, nbdinfo, fio, the Linux nbd-client) use a volume as a disk. The export name
// is the volume name (or a snapshot's, below). Each export is one client-library Volume shared by every
// connection to it, so a flush on any connection covers every connection's
// acknowledged writes, and waits for those in flight (which is what lets the server
// offer multi-connection). A flush sends nothing: acknowledged writes are already
// durable in every replica's journal.
//
// Lifetime: a shared Volume lives while some connection holds it (counted per name,
// from the lookup to the connection's end, NBD_OPT_INFO giving it back at once) and is
// closed when the last one ends; a name nobody is connected to keeps nothing here, so
// volumes attached, detached and deleted over months leave no trace in the gateway.
//
// Size: each connection gets the volume's size as the coordinator says it when the
// connection opens the export (the shared Volume describes the volume again), and keeps
// it for its life, as NBD requires; so a resized volume shows its new size on the next
// connection, and never mid-connection. After a shrink the shared Volume learns the new
// end (below), and a write past it fails with NBD_ENOSPC, whatever the connection's size.
//
// Snapshots: the export name `VOLUME@NAME` is snapshot NAME of VOLUME, served read-only
// (NBD_FLAG_READ_ONLY; writes, trims and write-zeroes answer EPERM). Export lists name
// each volume and each of its snapshots.
//
// Attachment: node.info.v1 details carry `attached: {volume: open connections}` (past
// the handshake, writable exports only), which the coordinator asks before a rollback,
// a shrink or a delete. After a shrink (forced, or a client that attached after that
// check) the coordinator says `gateway.volume.shrunk.v1`: the shared Volume describes
// the volume again, and its connections' writes past the new end fail with NBD_ENOSPC.
//
// Exposure: NBD has no access control (exposure.ts); a listener other hosts can reach is
// served with a warning at every start. `--nbd-exports` narrows what is served to the
// volumes it names and their snapshots.
//
// Failure model: a volume that fails over is followed by the client library (requests
// wait and retry); an unknown volume is an unknown export; a volume deleted while open
// fails its I/O with the coordinator's NotFound, as an NBD error.

import { BallastClient, type BlockDevice, type Volume } from "@ballast/client";
import { NbdServer } from "@ballast/nbd";
import { BallastError, ErrorCode, subjects } from "@ballast/protocol";
import {
  type CommonConfig,
  type ConfigOf,
  type MeterGroups,
  meterGroupsOf,
  meterOf,
  type OptionSpecs,
  RepeatLog,
  type Service,
} from "@ballast/runtime";

import { exportListOf, exportListProblem, nbdExposureWarning } from "./exposure.ts";
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
  nbdExports: {
    flag: "nbd-exports",
    env: "BALLAST_NBD_EXPORTS",
    type: "string",
    check: exportListProblem,
    description:
      "serve only these volumes (comma-separated names) and their snapshots; every volume when unset",
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

/** A Volume shared by the connections to one export name, and how many hold it. */
interface SharedVolume {
  readonly name: string;
  readonly volume: Promise<Volume>;
  /** Connections (and lookups under way) holding it: it is closed when none is left. */
  holders: number;
}

/** An opened export's Volume, and how to give it back once its connection is done. */
interface Held {
  volume: Volume;
  release(): void;
}

export class Gateway {
  private readonly client: BallastClient;
  /** The shared Volume of each export name some connection holds, and only those. */
  private readonly volumes = new Map<string, SharedVolume>();
  /** How to give back each device handed to the NBD server (releaseExport). */
  private readonly releases = new Map<BlockDevice, () => void>();
  /** Each export's meter, held by its connections (runtime metrics.ts). */
  private readonly meterGroups: MeterGroups;
  private server: NbdServer | undefined;
  private address = "";
  /** The volumes served (with their snapshots), from --nbd-exports; undefined: every one. */
  private readonly volumesServed: ReadonlySet<string> | undefined;
  /**
   * Per-connection lines a client reconnecting in a loop would repeat (a volume whose
   * size cannot be learned): once per export and `logRepeatIntervalMs`, the rest at debug.
   */
  private readonly repeats = new RepeatLog();

  constructor(
    private readonly service: Service,
    private readonly config: GatewayConfig,
  ) {
    this.client = new BallastClient(service.bus, { links: config.links === "on" });
    this.volumesServed =
      config.nbdExports === undefined ? undefined : new Set(exportListOf(config.nbdExports));
    this.meterGroups = meterGroupsOf(meterOf(service));
  }

  async start(): Promise<void> {
    this.service.serveInbox(["gateway.volume.shrunk.v1"], (message) =>
      this.learnShrink(message.volume),
    );
    this.server = new NbdServer({
      openExport: async (name) => {
        const held = await this.openExport(name);
        if (held === undefined) return undefined;
        // The export's series go with its last connection, as its Volume does.
        const series = held.volume.name;
        const device = new ObservedDevice(
          held.volume,
          this.service,
          this.meterGroups.acquire(series),
        );
        this.releases.set(device, () => {
          held.release();
          this.meterGroups.release(series);
        });
        return device;
      },
      releaseExport: (device) => {
        const release = this.releases.get(device);
        this.releases.delete(device);
        release?.();
      },
      listExports: () => this.listExports(),
      logger: this.service.logger,
    });
    const where =
      this.config.nbdSocket === undefined
        ? { host: this.config.nbdHost, port: this.config.nbdPort }
        : { path: this.config.nbdSocket };
    let bound: Awaited<ReturnType<NbdServer["listen"]>>;
    try {
      bound = await this.server.listen(where);
    } catch (error) {
      // A port in use, a host that does not resolve, a socket directory that is missing:
      // the error says which address, since the system's words alone may not.
      const address = "path" in where ? where.path : `${where.host}:${where.port}`;
      throw new Error(`cannot serve NBD on ${address}: ${(error as Error).message}`, {
        cause: error,
      });
    }
    this.address =
      bound.path !== undefined
        ? `nbd+unix:///?socket=${bound.path}`
        : `nbd://${this.config.nbdHost}:${bound.port}`;
    this.service.logger.info({ nbd: this.address }, "serving NBD");
    const exposure =
      bound.host === undefined
        ? undefined
        : nbdExposureWarning(bound.host, `${this.config.nbdHost}:${bound.port}`);
    if (exposure !== undefined) {
      // In the log for whoever reads it later, and on stderr for whoever started it now
      // (`ballast nbd` shows only warnings, as JSON lines).
      this.service.logger.warn({ nbd: this.address, boundTo: bound.host }, exposure);
      process.stderr.write(`ballast gateway: warning: ${exposure}
`);
    }
    this.service.setDescription(() => ({
      nbd: this.address,
      connections: this.server?.connectionCount ?? 0,
      exports: [...this.volumes.keys()],
      // Open NBD connections per volume: the coordinator refuses a rollback of one.
      attached: this.server?.attachedDevices() ?? {},
    }));
    this.service.onClose(async () => {
      // Every connection has ended, and given its Volume back, once the server closed;
      // what is left (none, unless a release was missed) is closed here.
      await this.server?.close();
      await Promise.allSettled(
        [...this.volumes.values()].map(async (shared) => (await shared.volume).close()),
      );
      this.volumes.clear();
    });
  }

  /**
   * An export's Volume, held until the connection gives it back; undefined for a name
   * that is not an export. Volumes are shared per name: a shared Volume is described
   * again for each connection (its current size); one found deleted then, or before, is
   * let go and the name opened anew, once, for a volume created since under the name.
   */
  private async openExport(name: string): Promise<Held | undefined> {
    const snapshot = parseSnapshotExport(name);
    // A volume not served is an unknown export, whether or not it exists: a client
    // learns nothing of the rest of the cluster here.
    if (!this.serves(snapshot?.volume ?? name)) return undefined;
    if (snapshot !== undefined) {
      // Opened per connection, not shared: a snapshot takes no writes, so there is no
      // flush to share, and a snapshot deleted and taken again under its name is another
      // snapshot (another id) that the next connection must find.
      return this.unlessUnknown(
        this.client.openSnapshot(snapshot.volume, snapshot.snapshot).then((volume) => ({
          volume,
          release: () => this.close(volume),
        })),
      );
    }
    return this.unlessUnknown(this.sharedVolume(name));
  }

  /**
   * The shared Volume of `name`, with the size the coordinator says now, held for one
   * connection. A deletion shows only at a describe, and an idle Volume describes
   * nothing: the describe this connection makes is often the first to find its volume
   * deleted (and the name maybe another volume's). That is no reason to refuse the
   * connection: the Volume is let go and the name opened anew, once. A Volume opened
   * anew was described for this very connection, so it is not checked again.
   *
   * The Volume is held from the moment it is found, before the describe: the last
   * other connection may end meanwhile, and must not close it under this one.
   */
  private async sharedVolume(name: string): Promise<Held> {
    const found = this.volumes.get(name);
    if (found !== undefined) {
      found.holders += 1;
      let kept = false;
      try {
        const served = await settledValue(found.volume);
        if (served !== undefined) {
          if (!served.isDeleted) {
            try {
              await this.withCurrentSize(served);
              kept = true;
              return { volume: served, release: once(() => this.release(found)) };
            } catch (error) {
              // NotFound without a deletion seen cannot come from a describe; pass it on.
              if (!served.isDeleted) throw error;
            }
          }
          this.letGo(found);
        }
      } finally {
        if (!kept) this.release(found);
      }
      // Another connection may have opened the name anew meanwhile: that Volume was
      // described after this connection arrived, so it is as current as a new one.
      const since = this.volumes.get(name);
      if (since !== undefined && since !== found) return this.hold(since);
    }
    const fresh: SharedVolume = { name, volume: this.client.openVolume(name), holders: 0 };
    this.volumes.set(name, fresh);
    fresh.volume.catch(() => {
      if (this.volumes.get(name) === fresh) this.volumes.delete(name);
    });
    return this.hold(fresh);
  }

  /** `shared`, held for one connection once it has opened; not held if it fails to. */
  private async hold(shared: SharedVolume): Promise<Held> {
    shared.holders += 1;
    try {
      const volume = await shared.volume;
      return { volume, release: once(() => this.release(shared)) };
    } catch (error) {
      this.release(shared);
      throw error;
    }
  }

  /**
   * One holder of `shared` is done with it. The last one closes it, so that a name no
   * connection uses keeps nothing here (the Volume's layout, its scheduler's queues):
   * it is taken out of the map first, in the same turn, so a connection arriving from
   * then on opens the name anew rather than find a Volume being closed.
   */
  private release(shared: SharedVolume): void {
    shared.holders -= 1;
    if (shared.holders > 0) return;
    if (this.volumes.get(shared.name) === shared) this.volumes.delete(shared.name);
    shared.volume.then(
      (volume) => this.close(volume),
      () => undefined, // never opened: nothing to close
    );
  }

  /** Closes a Volume no connection holds any more (it waits for nothing: none is in flight). */
  private close(volume: Volume): void {
    volume.close().catch((error: unknown) => {
      this.service.logger.warn(
        { export: volume.name, error: (error as Error).message },
        "closing an unused volume failed",
      );
    });
  }

  /**
   * Stops sharing a Volume found deleted. It is not closed: connections still attached
   * to it hold it, and each of their operations must fail with the NotFound that says
   * their volume was deleted while open (a head node refuses the old incarnation, and
   * the describe that follows says why), not with "the volume is closed", which reads
   * as a gateway fault. It is closed when its last holder lets it go.
   */
  private letGo(shared: SharedVolume): void {
    if (this.volumes.get(shared.name) !== shared) return; // another connection let it go first
    this.service.logger.info({ export: shared.name }, "volume deleted while served; opening anew");
    this.volumes.delete(shared.name);
  }

  /** The opened volume, or undefined for a name that is no export (unknown or invalid). */
  private async unlessUnknown(opening: Promise<Held>): Promise<Held | undefined> {
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
    const key = `size-unknown/${volume.name}`;
    const learned = await volume.refreshSize().then(
      () => true,
      (error: unknown) => {
        if (error instanceof BallastError && error.code === ErrorCode.NotFound) throw error;
        const fields = { export: volume.name, error: (error as Error).message };
        const message = "could not learn the volume's current size; serving the last known";
        const due = this.repeats.due(key, performance.now());
        if (due === undefined) this.service.logger.debug(fields, message);
        else {
          this.service.logger.warn(
            due.first ? fields : { ...fields, repeatsSuppressed: due.suppressed },
            message,
          );
        }
        return false;
      },
    );
    const ended = learned ? this.repeats.end(key) : undefined;
    if (ended !== undefined) {
      this.service.logger.info(
        { export: volume.name, repeatsSuppressed: ended.suppressed },
        "the volume's current size is learned again",
      );
    }
    return volume;
  }

  /**
   * The coordinator shrank `volume`: its shared Volume, if one is open, describes it
   * again, so that a write past the new end fails (NBD_ENOSPC on a connection opened at
   * the old size) rather than landing where the next grow trims. The answer waits for
   * the mutations that began before the describe, so none is acknowledged after it: a
   * write concurrent with the shrink went with the rest of the tail, as if earlier. A
   * describe that fails rejects, so the coordinator hears this gateway did not learn.
   */
  private async learnShrink(volume: string): Promise<{ open: boolean; sizeBytes?: number }> {
    const shared = this.volumes.get(volume);
    const served = shared === undefined ? undefined : await settledValue(shared.volume);
    if (served === undefined) return { open: false };
    await served.refreshSize();
    await served.flush();
    this.service.logger.info(
      { export: volume, sizeBytes: served.sizeBytes },
      "volume shrunk: writes past its new end are refused",
    );
    return { open: true, sizeBytes: served.sizeBytes };
  }

  /** Whether this gateway serves `volume` and its snapshots (--nbd-exports). */
  private serves(volume: string): boolean {
    return this.volumesServed?.has(volume) ?? true;
  }

  /** Every volume, and each of its snapshots as `VOLUME@NAME` (one listing per volume). */
  private async listExports(): Promise<string[]> {
    const listed = await this.service.bus.request(subjects.coordinator.build(), {
      type: "volume.list.v1",
    });
    const volumes = listed.volumes.filter((volume) => this.serves(volume.name));
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

/** `action`, done the first time the result is called and never again. */
function once(action: () => void): () => void {
  let done = false;
  return () => {
    if (done) return;
    done = true;
    action();
  };
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
