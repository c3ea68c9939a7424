import { parseArgs } from "node:util";

export class UsageError extends Error {
  override name = "UsageError";
}

/** `--flag value` options plus positionals, failing with a usage message on unknown flags. */
export function parse<T extends Record<string, { type: "string" | "boolean"; short?: string }>>(
  argv: string[],
  options: T,
) {
  try {
    return parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

export function printJsonOr(json: boolean, value: unknown, human: () => string): void {
  process.stdout.write(json ? `${JSON.stringify(value, null, 2)}\n` : `${human()}\n`);
}

/**
 * Rows under a header, each column as wide as its widest cell, two spaces apart; the columns in `right`
 * (numbers, sizes) are aligned right, the others left.
 */
export function table(header: string[], rows: string[][], right: readonly number[] = []): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [header, ...rows]
    .map((r) =>
      r
        .map((c, i) => (right.includes(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

/** An epoch-ms time to the minute, UTC ("2026-12-07 23:24"), or `none` when there is none. */
export function utcMinute(ms: number | null, none = "-"): string {
  return ms === null ? none : new Date(ms).toISOString().slice(0, 16).replace("T", " ");
}
