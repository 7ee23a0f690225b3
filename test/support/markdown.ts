// Pieces of Markdown that the README tests read: a section under a heading, the rows of
// its first table, the code spans of a cell. Plain string work, no Markdown parser: the
// README's tables are one row a line, as the formatter writes them.

/** The text of a section: from its heading to the next heading of the same or a higher level. */
export function section(markdown: string, heading: string): string {
  const lines = markdown.split("\n");
  const start = lines.indexOf(heading);
  if (start < 0) throw new Error(`no section ${JSON.stringify(heading)}`);
  const level = heading.indexOf(" ");
  const end = lines.findIndex(
    (line, index) => index > start && /^#+ /.test(line) && line.indexOf(" ") <= level,
  );
  return lines.slice(start + 1, end < 0 ? undefined : end).join("\n");
}

/** The rows of the first Markdown table in some text, as cells. */
export function tableRows(markdown: string): string[][] {
  const lines = markdown.split("\n");
  const start = lines.findIndex((line) => line.startsWith("|"));
  if (start < 0) throw new Error("no table");
  const end = lines.findIndex((line, index) => index > start && !line.startsWith("|"));
  const rows = lines.slice(start, end < 0 ? undefined : end).map((line) =>
    line
      .slice(1, -1)
      .split("|")
      .map((cell) => cell.trim()),
  );
  // The header row and the separator row are not entries.
  return rows.slice(2);
}

/** The text inside each code span of some Markdown. */
export const codeSpans = (text: string) =>
  [...text.matchAll(/`([^`]+)`/g)].map((match) => match[1]!);
