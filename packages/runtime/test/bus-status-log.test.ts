// What the log says while NATS is away: the client tries again every
// natsReconnectWaitMs and says "reconnecting" each time. A fake clock and a captured
// logger (fakes: a unit test) play an hour of attempts at once.

import { describe, expect, test } from "vitest";
import { natsStatusLog } from "../src/bus.ts";
import { logRepeatIntervalMs, natsReconnectWaitMs } from "../src/constants.ts";
import type { Logger } from "../src/logger.ts";

function captured() {
  const lines: { level: string; fields: Record<string, unknown>; message: string }[] = [];
  const at = (level: string) => (fields: Record<string, unknown>, message: string) =>
    lines.push({ level, fields, message });
  const logger = { info: at("info"), warn: at("warn"), error: at("error") };
  return { logger: logger as unknown as Pick<Logger, "info" | "warn" | "error">, lines };
}

describe("NATS status lines while the server is away", () => {
  test("the loss once, a reminder per logRepeatIntervalMs with the attempts, the return once", () => {
    const { logger, lines } = captured();
    let nowMs = 0;
    const log = natsStatusLog(logger, () => nowMs);
    const hourMs = 60 * 60_000;
    log({ type: "disconnect" });
    let attempts = 0;
    for (; nowMs < hourMs; nowMs += natsReconnectWaitMs) {
      log({ type: "reconnecting" });
      log({ type: "error", error: new Error("connect ECONNREFUSED 127.0.0.1:4222") });
      attempts++;
    }
    // The disconnect's line, then each attempt: the reminder counts all left out since.
    const lost = lines.filter((line) => line.message.startsWith("NATS connection"));
    // Old: a warning per attempt, 14 400 an hour.
    expect(lost).toHaveLength(hourMs / logRepeatIntervalMs);
    expect(lost.every((line) => line.level === "warn")).toBe(true);
    expect(lost[0]!.message).toBe("NATS connection lost; reconnecting");
    expect(lost[1]!.message).toBe("NATS connection still lost; reconnecting");
    expect(lost[1]!.fields.repeatsSuppressed).toBe(logRepeatIntervalMs / natsReconnectWaitMs);
    const errors = lines.filter((line) => line.message === "NATS error");
    expect(errors).toHaveLength(hourMs / logRepeatIntervalMs);
    log({ type: "reconnect" });
    const restored = lines.filter((line) => line.message === "NATS connection restored");
    expect(restored).toHaveLength(1);
    expect(restored[0]!.fields.attempts).toBe(attempts);
    // Lost again: said again at once.
    log({ type: "disconnect" });
    expect(lines.at(-1)!.message).toBe("NATS connection lost; reconnecting");
  });
});
