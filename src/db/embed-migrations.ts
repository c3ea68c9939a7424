/**
 * A Bun macro (imported `with { type: "macro" }`): runs when src/db/migrate.ts is transpiled — by `bun run`,
 * `bun test` and `bun build --compile` alike — and inlines the journal's migrations with their SQL as a
 * literal, so a compiled executable needs no migrations folder and a new drizzle-kit migration needs no
 * code change.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";

export type EmbeddedMigration = { tag: string; when: number; sql: string };

/** `folder`: beside this file; "migrations" (SQLite) or "migrations-pg" (PostgreSQL). */
export function journalMigrations(folder = "migrations"): EmbeddedMigration[] {
  const dir = join(import.meta.dir, folder);
  const journal = JSON.parse(readFileSync(join(dir, "meta", "_journal.json"), "utf8")) as {
    entries: { tag: string; when: number }[];
  };
  return journal.entries.map(({ tag, when }) => ({
    tag,
    when,
    sql: readFileSync(join(dir, `${tag}.sql`), "utf8"),
  }));
}
