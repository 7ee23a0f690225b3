// The test-only gray-failure switch (test-faults.ts): inert without BALLAST_TEST_FAULTS=1
// (no SIGUSR2 handler, so the signal keeps its default action and ends the process; the
// hook never hangs), and with it each SIGUSR2 toggles hanging writes. Runs small child
// processes: a signal handler is per process.

import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { expect, test } from "vitest";

const module = fileURLToPath(new URL("../src/test-faults.ts", import.meta.url));
const tsx = import.meta.resolve("tsx");

/** A child that imports the switch, says "ready", and reports the hook's state on stdin. */
function child(env: Record<string, string>) {
  const script = `
    const { testWritesHang } = await import(${JSON.stringify(module)});
    process.stdin.on("data", () => {
      const hang = testWritesHang();
      process.stdout.write(hang === undefined ? "free\\n" : "hang\\n");
      hang?.then(() => process.stdout.write("released\\n"));
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

test("without BALLAST_TEST_FAULTS=1, SIGUSR2 is not handled and writes never hang", async () => {
  const { process: running, until, exited } = child({});
  await until("ready");
  running.stdin.write("?\n");
  await until("free");
  running.kill("SIGUSR2");
  expect(await exited).toBe("SIGUSR2");
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
}, 20_000);
