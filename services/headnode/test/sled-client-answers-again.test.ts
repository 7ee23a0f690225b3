// A sled restarted before the coordinator declared it out changes no out set: the head
// node's only signal is its answering again. The sled client marks a sled silent when a
// request to it goes unanswered (Timeout, Unavailable) and tells its listeners once when
// the sled next answers, with a result or an error of its own. A fake bus stands in for
// NATS and the sleds.

import { BallastError, ErrorCode, subjects } from "@ballast/protocol";
import { type Bus, createLogger } from "@ballast/runtime";
import { expect, test } from "vitest";
import { SledClient } from "../src/sled-client.ts";

const logger = createLogger({ service: "headnode", nodeId: "head-1", level: "silent" });

test("a sled that answers after unanswered requests is told once; its own errors are answers", async () => {
  /** How each fake sled answers now: a page of damaged chunks, or an error thrown. */
  const answers = new Map<string, () => unknown>();
  const fakeBus = {
    request: async (subject: string) => {
      const sled = subject.split(".").at(-1)!;
      return (answers.get(sled) ?? (() => ({ chunks: [], truncated: false })))();
    },
  } as unknown as Bus;
  const client = new SledClient(fakeBus, logger);
  const heard: string[] = [];
  const stop = client.onAnswersAgain((sled) => heard.push(sled));
  expect(subjects.node.build("sled", "sled-2").endsWith(".sled-2")).toBe(true);

  // Answering all along: nothing to tell.
  await client.damagedChunks("sled-1");
  expect(heard).toEqual([]);

  // sled-2 down (no responder), then frozen (no reply in time): silent, nothing told yet.
  answers.set("sled-2", () => {
    throw new BallastError(ErrorCode.Unavailable, "no service is listening");
  });
  await expect(client.damagedChunks("sled-2")).rejects.toThrow(/listening/);
  answers.set("sled-2", () => {
    throw new BallastError(ErrorCode.Timeout, "no reply within the deadline");
  });
  await expect(client.damagedChunks("sled-2")).rejects.toThrow(/deadline/);
  expect([...client.silentSleds()]).toEqual(["sled-2"]);
  expect(heard).toEqual([]);

  // Back: an error the sled itself sends is an answer.
  answers.set("sled-2", () => {
    throw new BallastError(ErrorCode.NotFound, "no such chunk");
  });
  await expect(client.damagedChunks("sled-2")).rejects.toThrow(/no such chunk/);
  expect(heard).toEqual(["sled-2"]);
  expect(client.silentSleds().size).toBe(0);

  // Answering on: told no more.
  answers.delete("sled-2");
  await client.damagedChunks("sled-2");
  expect(heard).toEqual(["sled-2"]);

  // Silent and back again: told again; a listener stopped hears nothing.
  answers.set("sled-2", () => {
    throw new BallastError(ErrorCode.Unavailable, "no service is listening");
  });
  await expect(client.damagedChunks("sled-2")).rejects.toThrow();
  answers.delete("sled-2");
  await client.damagedChunks("sled-2");
  expect(heard).toEqual(["sled-2", "sled-2"]);
  stop();
  answers.set("sled-2", () => {
    throw new BallastError(ErrorCode.Unavailable, "no service is listening");
  });
  await expect(client.damagedChunks("sled-2")).rejects.toThrow();
  answers.delete("sled-2");
  await client.damagedChunks("sled-2");
  expect(heard).toEqual(["sled-2", "sled-2"]);
});
