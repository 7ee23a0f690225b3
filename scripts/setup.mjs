#!/usr/bin/env node
// Installs what Ballast needs that is missing, so that `npm start` and `npm test` work on
// a fresh clone: npm dependencies (`npm ci` when node_modules is absent or older than the
// lock file) and the system tools (nats-server, and the NBD and benchmark tools the
// tests drive) through apt-get when running as root. Without root it names what is
// missing and how to install it. Plain Node, no dependencies: it runs before they exist.

import { spawnSync } from "node:child_process";
import { accessSync, constants, statSync } from "node:fs";
import { delimiter, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const nodeMajorMin = 20;

/** Tools by Debian package. `required` ones stop the script when they cannot be had. */
const tools = [
  { command: "nats-server", packageName: "nats-server", required: true },
  { command: "fio", packageName: "fio", required: false },
  { command: "nbdkit", packageName: "nbdkit", required: false },
  { command: "nbdinfo", packageName: "libnbd-bin", required: false },
  { command: "qemu-img", packageName: "qemu-utils", required: false },
  // nbdsh comes with libnbd's Python bindings, which the failover tests' NBD load uses.
  { command: "nbdsh", packageName: "python3-libnbd", required: false },
];

function say(line) {
  process.stderr.write(`setup: ${line}\n`);
}

function onPath(command) {
  const directories = [...(process.env.PATH ?? "").split(delimiter), "/usr/sbin", "/usr/bin"];
  return directories.some((directory) => {
    if (directory === "") return false;
    try {
      accessSync(join(directory, command), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

function run(command, args, options = {}) {
  say(`running ${command} ${args.join(" ")}`);
  const result = spawnSync(command, args, { stdio: "inherit", cwd: root, ...options });
  if (result.status !== 0) {
    say(`${command} ${args.join(" ")} failed with exit code ${result.status}`);
    process.exit(1);
  }
}

function checkNode() {
  const major = Number(process.versions.node.split(".")[0]);
  if (major < nodeMajorMin) {
    say(`Ballast needs Node.js ${nodeMajorMin} or newer; this is ${process.versions.node}`);
    process.exit(1);
  }
}

function installSystemTools() {
  const missing = tools.filter((tool) => !onPath(tool.command));
  if (missing.length === 0) return;
  const packages = missing.map((tool) => tool.packageName);
  const isRoot = typeof process.getuid === "function" && process.getuid() === 0;
  if (isRoot && onPath("apt-get")) {
    const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
    run("apt-get", ["update", "-qq"], { env });
    run("apt-get", ["install", "-y", "-qq", ...packages], { env });
    return;
  }
  const command = `sudo apt-get install -y ${packages.join(" ")}`;
  const requiredMissing = missing.filter((tool) => tool.required);
  if (requiredMissing.length > 0) {
    say(
      `missing ${requiredMissing.map((tool) => tool.command).join(", ")}; install with: ${command}`,
    );
    process.exit(1);
  }
  say(
    `missing ${missing.map((tool) => tool.command).join(", ")} (tests that drive them will fail); install with: ${command}`,
  );
}

function mtime(path) {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return undefined;
  }
}

function installNodeModules() {
  const lock = mtime(join(root, "package-lock.json"));
  const installed = mtime(join(root, "node_modules", ".package-lock.json"));
  if (installed !== undefined && lock !== undefined && installed >= lock) return;
  run("npm", ["ci", "--no-audit", "--no-fund"]);
}

checkNode();
installNodeModules();
installSystemTools();
