// The queue of a partition's configures (configure-queue.ts), shared by headnode.ts and
// the failover simulator: one runs, at most one waits, and which of two waiting is kept.

import { KeyedLock } from "@ballast/runtime";
import { describe, expect, test } from "vitest";
import { type ConfigureOrder, ConfigureQueue, supersedes } from "../src/configure-queue.ts";

interface Message extends ConfigureOrder {
  name: string;
}

function queueOf() {
  const ran: string[] = [];
  let release = () => {};
  const lock = new KeyedLock();
  const queue = new ConfigureQueue<Message, string>({
    lock,
    orderOf: ({ incarnation, epoch }) => ({ incarnation, epoch }),
    run: async (message) => {
      ran.push(message.name);
      // The first one hangs until released, as a configure on a hung disk does.
      if (ran.length === 1) await new Promise<void>((resolve) => (release = resolve));
      return `ran ${message.name}`;
    },
    superseded: (key, kept) => new Error(`${key}: superseded by ${kept.name}`),
  });
  return { queue, lock, ran, release: () => release() };
}

const message = (name: string, epoch: number, incarnation = "v1"): Message => ({
  name,
  epoch,
  incarnation,
});

describe("supersedes", () => {
  test("a newer arrival replaces the waiting one, a delayed older epoch of the same incarnation does not", () => {
    expect(supersedes({ incarnation: "v1", epoch: 5 }, { incarnation: "v1", epoch: 4 })).toBe(true);
    // A resend of the same epoch: the newer arrival.
    expect(supersedes({ incarnation: "v1", epoch: 5 }, { incarnation: "v1", epoch: 5 })).toBe(true);
    expect(supersedes({ incarnation: "v1", epoch: 4 }, { incarnation: "v1", epoch: 5 })).toBe(
      false,
    );
    // Another incarnation: always the arrival, whatever its epoch.
    expect(supersedes({ incarnation: "v2", epoch: 1 }, { incarnation: "v1", epoch: 9 })).toBe(true);
  });
});

describe("ConfigureQueue", () => {
  test("behind the one running, only the newest waits; the others are answered at once", async () => {
    const { queue, ran, release } = queueOf();
    const running = queue.submit("vol/0", message("a", 1));
    await Promise.resolve();
    const answers = ["b", "c", "d"].map((name, index) =>
      queue.submit("vol/0", message(name, 2 + index)).then(
        (answer) => answer,
        (error: Error) => error.message,
      ),
    );
    // b and c are answered before the running one finishes.
    expect(await answers[0]).toBe("vol/0: superseded by c");
    expect(await answers[1]).toBe("vol/0: superseded by d");
    expect(queue.size).toBe(1);
    release();
    expect(await running).toBe("ran a");
    expect(await answers[2]).toBe("ran d");
    expect(ran).toEqual(["a", "d"]);
    expect(queue.size).toBe(0);
  });

  test("a delayed older epoch of the same incarnation is refused, not the newer waiting one", async () => {
    const { queue, ran, release } = queueOf();
    const running = queue.submit("vol/0", message("a", 1));
    await Promise.resolve();
    const newer = queue.submit("vol/0", message("b", 3));
    await expect(queue.submit("vol/0", message("late", 2))).rejects.toThrow(
      "vol/0: superseded by b",
    );
    release();
    await running;
    expect(await newer).toBe("ran b");
    expect(ran).toEqual(["a", "b"]);
  });

  test("another partition's configures neither wait nor supersede", async () => {
    const { queue, ran, release } = queueOf();
    const running = queue.submit("vol/0", message("a", 1));
    await Promise.resolve();
    const waiting = queue.submit("vol/0", message("b", 2));
    expect(await queue.submit("vol/1", message("c", 2))).toBe("ran c");
    release();
    await running;
    expect(await waiting).toBe("ran b");
    expect(ran).toEqual(["a", "c", "b"]);
  });

  test("a drop on the shared lock runs in its turn between configures", async () => {
    const { queue, lock, ran, release } = queueOf();
    const running = queue.submit("vol/0", message("a", 1));
    await Promise.resolve();
    const drop = lock.run("vol/0", async () => {
      ran.push("drop");
    });
    const waiting = queue.submit("vol/0", message("b", 2));
    release();
    await Promise.all([running, drop, waiting]);
    expect(ran).toEqual(["a", "drop", "b"]);
  });
});
