// The test-only fault switches (test-faults.ts): inert without BALLAST_TEST_FAULTS=1 (no
// SIGUSR2 handler, so the signal keeps its default action and ends the process; no
// SIGURG handler, so that signal is ignored; the hooks never hang nor throw), and with
// it each SIGUSR2 toggles hanging writes and each SIGURG fails exactly one later write
// with EIO. Runs small child processes: a signal handler is per process.

import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { expect, test } from "vitest";

const module = fileURLToPath(new URL("../src/test-faults.ts", import.meta.url));
const tsx = import.meta.resolve("tsx");

/**
 * A child that imports the switches, says "ready", and on each line of stdin reports the
 * hang hook's state ("free" or "hang") and then the fail hook's ("wrote" or "failed"
 * with the error's code).
 */
function child(env: Record<string, string>) {
  const script = `
    const { testWritesFail, testWritesHang } = await import(${JSON.stringify(module)});
    process.stdin.on("data", () => {
      const hang = testWritesHang();
      process.stdout.write(hang === undefined ? "free\\n" : "hang\\n");
      hang?.then(() => process.stdout.write("released\\n"));
      try {
        testWritesFail();
        process.stdout.write("wrote\\n");
      } catch (error) {
        process.stdout.write("failed " + error.code + "\\n");
      }
    });
    process.stdout.write("ready\\n");
  `;
  const process_ = spawn(process.execPath, ["--import", tsx, "--input-type=module", "-e", script], {
    env: { ...process.env, BALLAST_TEST_FAULTS: "", ...env },
    stdio: ["pipe", "pipe", "ignore"],
  });
  let output = "";
  process_.stdout.on("data", (data: Buffer) => {
    output += data.toString();
  });
  const until = async (text: string, count = 1) => {
    for (let waited = 0; waited < 10_000; waited += 20) {
      if (output.split(text).length - 1 >= count) return;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    throw new Error(`no ${JSON.stringify(text)} in ${JSON.stringify(output)}`);
  };
  const exited = new Promise<string | null>((resolve) =>
    process_.once("exit", (_code, signal) => resolve(signal)),
  );
  return { process: process_, until, exited, output: () => output };
}

test("without BALLAST_TEST_FAULTS=1, SIGUSR2 and SIGURG are not handled and writes never hang nor fail", async () => {
  const { process: running, until, exited, output } = child({});
  await until("ready");
  running.stdin.write("?\n");
  await until("free");
  await until("wrote");
  // SIGURG's default action is to be ignored: the process lives on and nothing fails.
  running.kill("SIGURG");
  await new Promise((resolve) => setTimeout(resolve, 200));
  running.stdin.write("?\n");
  await until("wrote", 2);
  expect(running.exitCode).toBeNull();
  running.kill("SIGUSR2");
  expect(await exited).toBe("SIGUSR2");
  expect(output()).not.toContain("failed");
});

test("with BALLAST_TEST_FAULTS=1, SIGUSR2 toggles hanging writes and releases them", async () => {
  const { process: running, until, exited } = child({ BALLAST_TEST_FAULTS: "1" });
  await until("ready");
  running.kill("SIGUSR2");
  await new Promise((resolve) => setTimeout(resolve, 200));
  running.stdin.write("?\n");
  await until("hang");
  running.kill("SIGUSR2");
  await until("released");
  running.stdin.write("?\n");
  await until("free");
  running.kill("SIGTERM");
  expect(await exited).toBe("SIGTERM");
});

test("with BALLAST_TEST_FAULTS=1, each SIGURG fails exactly one later write with EIO", async () => {
  const { process: running, until, exited } = child({ BALLAST_TEST_FAULTS: "1" });
  await until("ready");
  running.stdin.write("?\n");
  await until("wrote");
  // Apart: the kernel does not queue a standard signal, so two sent at once may be one.
  for (let signal = 0; signal < 2; signal++) {
    running.kill("SIGURG");
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  // Two signals, two failures, then writes go through again; nothing hangs meanwhile.
  for (let line = 1; line <= 3; line++) {
    running.stdin.write("?\n");
    await until("free", line + 1);
  }
  await until("failed EIO", 2);
  await until("wrote", 2);
  running.stdin.write("?\n");
  await until("wrote", 3);
  running.kill("SIGTERM");
  expect(await exited).toBe("SIGTERM");
});
