// `ballast chaos --faults`: the kinds named, each known, without repeats; anything else
// is a usage error that names what it did not know and lists the kinds.

import { describe, expect, test } from "vitest";
import { faultKindsOf } from "../src/chaos/command.ts";
import { CliError, exitCodes } from "../src/errors.ts";

describe("chaos --faults", () => {
  test("takes known kinds, trimmed, each once", () => {
    expect(faultKindsOf("stop-primary, kill-nats,stop-primary")).toEqual([
      "stop-primary",
      "kill-nats",
    ]);
  });

  test.each([["stop-primary,no-such-fault"], [""], [","], ["kill-primary,"]])(
    "refuses %j as a usage error naming the kinds",
    (text) => {
      let thrown: unknown;
      try {
        faultKindsOf(text);
      } catch (error) {
        thrown = error;
      }
      expect(thrown).toBeInstanceOf(CliError);
      expect((thrown as CliError).exitCode).toBe(exitCodes.usage);
      expect((thrown as CliError).message).toContain("kill-primary, kill-secondary");
    },
  );
});
