// A chunk write names the journal ops whose data it carries (first..through): the shell
// links the flush's span to the requests that wrote them (observability.ts), so the
// range must cover exactly the ops of this flush, not those of the one before.

import { expect, test } from "vitest";
import { Replica } from "../src/replica/replica.ts";
import { only, syncJournal } from "./effects-helpers.ts";

const identity = {
  nodeId: "head-1",
  volume: "vol",
  partition: 0,
  partitionStart: 0,
  partitionBytes: 1024 * 1024,
  session: 1,
};

function write(primary: Replica, requestId: number, offset: number) {
  const data = new Uint8Array(4096).fill(requestId);
  primary.onClientRequest({ kind: "write", requestId, epoch: 1, writes: [{ offset, data }] });
  const effects = primary.drainEffects();
  const [append] = only(effects, "journal.append");
  syncJournal(primary, effects);
  return append!.notes.map((note) => note.opNum);
}

test("each chunk write carries the op range of the writes it flushes", () => {
  const primary = new Replica(identity, { notes: [] }, { flushBytesThreshold: 1 });
  primary.configure({ epoch: 1, primary: "head-1", secondaries: [] });
  primary.drainEffects();
  const ops = [...write(primary, 1, 0), ...write(primary, 2, 8192)];
  primary.tick();
  const [first] = only(primary.drainEffects(), "chunk.write");
  expect([first!.firstOpNum, first!.throughOpNum]).toEqual([ops[0], ops[ops.length - 1]]);

  primary.onChunkWritten(first!.chunkNumber, ["sled-1", "sled-2"]);
  syncJournal(primary, primary.drainEffects()); // the flush record commits
  const later = write(primary, 3, 16384);
  primary.tick();
  const [second] = only(primary.drainEffects(), "chunk.write");
  expect([second!.firstOpNum, second!.throughOpNum]).toEqual([later[0], later[later.length - 1]]);
});
