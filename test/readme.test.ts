// The README against the code, so the two cannot drift apart again: the `ballast`
// command list, its flags and exit codes against the CLI's own command table and help
// (apps/cli/src/commands.ts), and the wire table against the subjects of
// packages/protocol/src/subjects.ts and the message catalogue. Also a guard against
// future-tense claims about things that exist. Reads files only: unit tier.

import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { messageTypes, resultSchemas, subjects } from "@ballast/protocol";
import { describe, expect, test } from "vitest";
import { commandHelp, commands, helpFor } from "../apps/cli/src/commands.ts";
import { exitCodes } from "../apps/cli/src/errors.ts";
import { codeSpans, section, tableRows } from "./support/markdown.ts";

const read = (path: string) => readFileSync(fileURLToPath(new URL(path, import.meta.url)), "utf8");
const readme = read("../README.md");
const architecture = read("../docs/architecture.md");

/** The lines of the first fenced block of `language` in some Markdown. */
function fencedBlock(markdown: string, language: string): string[] {
  const match = new RegExp(`\`\`\`${language}\\n([\\s\\S]*?)\`\`\``).exec(markdown);
  if (match === null) throw new Error(`no \`\`\`${language} block`);
  return match[1]!.trimEnd().split("\n");
}

/** The README's command list: each command with its text, continuation lines included. */
function readmeCommands(markdown: string): Map<string, string> {
  const entries = new Map<string, string>();
  let current: string | undefined;
  for (const line of fencedBlock(section(markdown, "## The `ballast` command"), "text")) {
    const match = /^ballast (\S+)/.exec(line);
    if (match !== null) {
      current = match[1]!;
      if (entries.has(current)) throw new Error(`command ${current} is listed twice`);
      entries.set(current, line);
    } else if (current !== undefined && /^\s/.test(line)) {
      entries.set(current, `${entries.get(current)}\n${line}`);
    } else {
      throw new Error(`a line of the command list names no command: ${JSON.stringify(line)}`);
    }
  }
  return entries;
}

const flagsIn = (text: string) => new Set(text.match(/--[a-z][a-z-]*/g) ?? []);

/**
 * Each subject's pattern, as the code builds it, with every token that comes from a
 * parameter as `*`. A pattern that is a function is called with sentinel tokens: a
 * name where it takes a name, a number where it takes a partition number, a service kind
 * where it takes a kind (found by trying, since a wrong kind of token throws).
 */
const sentinelKind = "gateway";

function subjectPatterns(): Map<string, string> {
  const patterns = new Map<string, string>();
  for (const [key, entry] of Object.entries(subjects)) {
    const pattern = entry.pattern as string | ((...args: unknown[]) => string);
    if (typeof pattern === "string") {
      patterns.set(key, pattern);
      continue;
    }
    const arity = pattern.length;
    let built: string | undefined;
    let sentinels: string[] = [];
    // Each parameter is tried as a name, a number and a service kind.
    for (let kinds = 0; kinds < 3 ** arity && built === undefined; kinds++) {
      const args = Array.from({ length: arity }, (_, index) => {
        const kind = Math.floor(kinds / 3 ** index) % 3;
        if (kind === 1) return 900_000_001 + index;
        return kind === 2 ? sentinelKind : `zzsentinel${index}`;
      });
      try {
        built = pattern(...args);
        sentinels = args.map(String);
      } catch {
        // Not this combination of names and numbers.
      }
    }
    if (built === undefined) throw new Error(`cannot build a pattern for subjects.${key}`);
    patterns.set(
      key,
      built
        .split(".")
        .map((token) => (sentinels.includes(token) ? "*" : token))
        .join("."),
    );
  }
  return patterns;
}

interface WireRow {
  subject: string;
  messages: string[];
}

function readmeWire(markdown: string): WireRow[] {
  return tableRows(section(markdown, "## The wire")).map((cells) => {
    const subject = codeSpans(cells[0] ?? "");
    if (subject.length !== 1) throw new Error(`a wire row names no one subject: ${cells[0]}`);
    return { subject: subject[0]!, messages: codeSpans(cells[2] ?? "") };
  });
}

/** The message types a README token names: one type, or all types of a `prefix.*` glob. */
function typesNamed(token: string): string[] {
  if (token.endsWith(".*")) {
    const prefix = token.slice(0, -1);
    return messageTypes.filter((type) => type.startsWith(prefix));
  }
  return (messageTypes as string[]).includes(token) ? [token] : [];
}

/** Everything wrong with the README's wire table, as sentences; empty when it is right. */
function wireProblems(rows: WireRow[]): string[] {
  const problems: string[] = [];
  const inCode = new Set(subjectPatterns().values());
  const inReadme = rows.map((row) => row.subject.replace(/<[^>]+>/g, "*"));
  for (const pattern of inCode) {
    if (!inReadme.includes(pattern)) problems.push(`subject ${pattern} is not in the table`);
  }
  for (const [index, pattern] of inReadme.entries()) {
    if (!inCode.has(pattern)) problems.push(`${rows[index]!.subject} is no subject of the code`);
    if (inReadme.indexOf(pattern) !== index) problems.push(`${pattern} is listed twice`);
  }
  const listed = new Set<string>();
  for (const row of rows) {
    if (row.messages.length === 0) problems.push(`${row.subject} lists no message`);
    for (const token of row.messages) {
      const types = typesNamed(token);
      if (types.length === 0) problems.push(`${row.subject}: ${token} is no message type`);
      for (const type of types) listed.add(type);
    }
  }
  for (const type of messageTypes) {
    if (!listed.has(type)) {
      const kind = type in resultSchemas ? "request type" : "message type";
      problems.push(`${kind} ${type} is on no subject of the table`);
    }
  }
  return problems;
}

describe("the README's `ballast` command list", () => {
  test("names exactly the CLI's commands", () => {
    expect([...readmeCommands(readme).keys()].sort()).toEqual(
      commands.map((command) => command.name).sort(),
    );
  });

  test("each flag it names is one the command's help names", () => {
    for (const [name, text] of readmeCommands(readme)) {
      // The command's own help, or (for one without) its line of the top-level help.
      const command = commands.find((entry) => entry.name === name);
      const help = flagsIn(commandHelp[command?.name ?? "help"] ?? command?.summary ?? "");
      for (const flag of flagsIn(text)) {
        expect(help.has(flag), `${flag} of ballast ${name} is not in its help`).toBe(true);
      }
    }
  });

  test("the options of `ballast up` are exactly those of its help", () => {
    const paragraph = /`ballast up` options:([\s\S]*?)\n\n/.exec(readme)?.[1] ?? "";
    expect([...flagsIn(paragraph)].sort()).toEqual([...flagsIn(helpFor("up"))].sort());
  });

  test("the exit codes are exactly the CLI's", () => {
    const paragraph = /\nExit codes:([\s\S]*?)\n\n/.exec(readme)?.[1] ?? "";
    const listed = [...paragraph.matchAll(/`(\d+)`/g)].map((match) => Number(match[1]));
    expect(listed.sort()).toEqual(Object.values(exitCodes).sort());
  });

  test("a command missing from the README or the code is caught", () => {
    const withoutStatus = readme.replace(/^ballast status .*$/m, "");
    expect(() => readmeCommands(withoutStatus)).toThrow(/names no command/);
    const withExtra = readme.replace(/^ballast version .*$/m, "ballast frobnicate  new");
    expect([...readmeCommands(withExtra).keys()]).toContain("frobnicate");
    expect([...readmeCommands(withExtra).keys()]).not.toContain("version");
  });
});

describe("the README's wire table", () => {
  test("names exactly the subjects of the code, and every message type on one of them", () => {
    expect(wireProblems(readmeWire(readme))).toEqual([]);
  });

  test("the subject patterns are derived from the code's builders", () => {
    expect(subjectPatterns()).toEqual(
      new Map([
        ["heartbeat", "ballast.v1.heartbeat.*.*"],
        ["coordinator", "ballast.v1.coordinator"],
        ["coordinatorAdmin", "ballast.v1.coordinator.admin"],
        ["coordinatorServices", "ballast.v1.coordinator.from.*"],
        ["node", "ballast.v1.node.*.*"],
        ["volume", "ballast.v1.volume.*.*"],
        ["partitionControl", "ballast.v1.partition.*.*"],
        ["replica", "ballast.v1.replica.*.*.*"],
      ]),
    );
  });

  test("a missing row, a wrong subject or an unknown message is caught", () => {
    const rows = readmeWire(readme);
    const withoutReplica = rows.filter((row) => !row.subject.startsWith("ballast.v1.replica."));
    expect(wireProblems(withoutReplica)).toEqual([
      "subject ballast.v1.replica.*.*.* is not in the table",
      "message type replica.notes.v1 is on no subject of the table",
      "message type replica.ack.v1 is on no subject of the table",
    ]);
    const renamed = rows.map((row) =>
      row.subject === "ballast.v1.coordinator" ? { ...row, subject: "ballast.v1.control" } : row,
    );
    expect(wireProblems(renamed)).toEqual([
      "subject ballast.v1.coordinator is not in the table",
      "ballast.v1.control is no subject of the code",
    ]);
    const unknown = rows.map((row) =>
      row.subject === "ballast.v1.coordinator"
        ? {
            ...row,
            messages: [...row.messages.filter((m) => m !== "volume.list.v1"), "volume.rename.v1"],
          }
        : row,
    );
    expect(wireProblems(unknown)).toEqual([
      "ballast.v1.coordinator: volume.rename.v1 is no message type",
      "request type volume.list.v1 is on no subject of the table",
    ]);
  });
});

describe("the README and docs/architecture.md describe what exists", () => {
  test("no future-tense claims about what is built", () => {
    const futureTense = [
      /\bwill (?:serve|be served|land|be added|be built)\b/i,
      /\bonce the [a-z -]+ lands\b/i,
      /\bserved once\b/i,
      /\(issue \d+\)/i,
    ];
    for (const [name, text] of [
      ["README.md", readme],
      ["docs/architecture.md", architecture],
    ] as const) {
      for (const pattern of futureTense) {
        expect(pattern.exec(text)?.[0], `${name} says ${pattern}`).toBeUndefined();
      }
    }
  });
});
