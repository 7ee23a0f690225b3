// The `CONTROL STORE NOT THE DATA'S` line of `ballast status` (and what makes `--check`
// exit 5): shown when the leader reports a reason the catalogue is not the data's.

import { describe, expect, test } from "vitest";
import { controlStoreLines } from "../src/status.ts";

const clean = { storeId: "0".repeat(32), foreignMarks: [], behind: [] };

describe("control store lines", () => {
  test("a clean store, or one whose catalogue is at or past every witness, shows none", () => {
    expect(controlStoreLines({ controlStore: clean })).toEqual([]);
    expect(
      controlStoreLines({
        controlStore: { ...clean, sequence: { catalogue: 4, witnessed: 4 } },
      }),
    ).toEqual([]);
    expect(controlStoreLines({})).toEqual([]);
  });

  test("sleds that witnessed a later catalogue show the leader's reason", () => {
    const lines = controlStoreLines({
      controlStore: {
        ...clean,
        sequence: { catalogue: 3, witnessed: 4 },
        refused: "the control store is older than the data: sled-1 witnessed catalogue sequence 4",
      },
    });
    expect(lines).toEqual([
      "CONTROL STORE NOT THE DATA'S: the control store is older than the data: sled-1 witnessed catalogue sequence 4",
    ]);
  });
});
