// The nats-server config `ballast up` writes (nats-server.ts): its JetStream store is capped,
// by default with natsFileStoreBytesDefault, so that a full store refuses writes at once
// instead of filling the disk (the refusal on a real server: test/integration/control-store-full).

import { expect, test } from "vitest";
import { natsFileStoreBytesDefault, natsMemoryStoreBytes } from "../src/constants.ts";
import { natsServerConfig } from "../src/nats-server.ts";

/** The body of the config's `jetstream { … }` block. */
function jetstreamBlock(config: string): string {
  return /^jetstream \{\n((?: {2}.*\n)*)\}$/m.exec(config)?.[1] ?? "";
}

test("the JetStream store is capped by default, in memory and on file", () => {
  const block = jetstreamBlock(natsServerConfig({ port: 4222, storeDir: "/data/nats" }));
  expect(block).toContain('  store_dir: "/data/nats"\n');
  expect(block).toContain(`  max_file_store: ${natsFileStoreBytesDefault}\n`);
  expect(block).toContain(`  max_memory_store: ${natsMemoryStoreBytes}\n`);
});

test("a given file store cap replaces the default", () => {
  const config = natsServerConfig({ port: 4222, storeDir: "/s", fileStoreBytes: 5 * 1024 ** 3 });
  expect(jetstreamBlock(config)).toContain(`  max_file_store: ${5 * 1024 ** 3}\n`);
});
