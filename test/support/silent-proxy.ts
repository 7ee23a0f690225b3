// A TCP proxy on 127.0.0.1 in front of one server, whose open connections can go silent
// the way they do when the machine at the other end vanishes: the sockets stay open, no
// FIN or RST comes, and nothing more comes through either way. Connections silenced stay
// so for good; new ones are carried as before, so a client that gives up on a silent
// connection and dials again reaches the server (as a replacement at the same address,
// or a path that healed, would be reached).

import { connect, createServer, type Server, type Socket } from "node:net";

export interface SilentProxy {
  /** `nats://127.0.0.1:<port>` of the proxy. */
  readonly url: string;
  /** Connections accepted so far. */
  readonly accepted: number;
  /** Stops carrying bytes on every open connection, for good; their sockets stay open. */
  silence(): void;
  /** Closes the listener and every socket. */
  close(): Promise<void>;
}

interface Pair {
  client: Socket;
  upstream: Socket;
  silent: boolean;
}

export async function startSilentProxy(targetPort: number): Promise<SilentProxy> {
  const pairs = new Set<Pair>();
  let accepted = 0;
  const server: Server = createServer((client) => {
    accepted++;
    const upstream = connect({ host: "127.0.0.1", port: targetPort });
    const pair: Pair = { client, upstream, silent: false };
    pairs.add(pair);
    // Bytes that arrive while silent are read and thrown away: nothing answers them, as
    // nothing would on a machine that is gone.
    client.on("data", (bytes) => {
      if (!pair.silent) upstream.write(bytes);
    });
    upstream.on("data", (bytes) => {
      if (!pair.silent) client.write(bytes);
    });
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    // A silent pair keeps its sockets whatever the other side does: a vanished machine
    // sends no FIN or RST.
    client.on("close", () => {
      if (!pair.silent) end();
    });
    upstream.on("close", () => {
      if (!pair.silent) end();
    });
    client.on("error", () => undefined);
    upstream.on("error", () => undefined);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("proxy has no port");
  return {
    url: `nats://127.0.0.1:${address.port}`,
    get accepted() {
      return accepted;
    },
    silence() {
      for (const pair of pairs) pair.silent = true;
    },
    async close() {
      for (const pair of pairs) {
        pair.client.destroy();
        pair.upstream.destroy();
      }
      pairs.clear();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
