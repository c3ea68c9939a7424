/**
 * Applies the committed drizzle-kit migrations, embedded when this file is transpiled (a Bun macro reads
 * src/db/migrations; see embed-migrations.ts), so a compiled `easel` binary needs no migrations folder beside
 * it. Bookkeeping is drizzle's own (`__drizzle_migrations`: sha256 of the file as `hash`, the journal's `when`
 * as `created_at`), so a database migrated by drizzle's file-based migrator is recognised and vice versa.
 */
import type { Database } from "bun:sqlite";
import { createHash } from "node:crypto";
import { journalMigrations } from "./embed-migrations" with { type: "macro" };
import type { EmbeddedMigration } from "./embed-migrations";

export type Migration = { tag: string; when: number; hash: string; statements: string[] };

const TABLE = "__drizzle_migrations";
const BREAKPOINT = "--> statement-breakpoint";

/** The journal's migrations in order, with drizzle's hash and statement split. */
export function embeddedMigrations(embedded: EmbeddedMigration[] = journalMigrations()): Migration[] {
  return embedded.map(({ tag, when, sql }) => ({
    tag,
    when,
    hash: createHash("sha256").update(sql).digest("hex"),
    statements: sql.split(BREAKPOINT),
  }));
}

/**
 * The database's bookkeeping disagrees with this build's migrations: it was migrated by a newer version
 * (a migration this build does not have), or a migration it applied has since been edited (another hash).
 */
export class MigrationMismatchError extends Error {
  override name = "MigrationMismatchError";
  readonly kind: "newer" | "tampered";
  constructor(kind: "newer" | "tampered", message: string) {
    super(message);
    this.kind = kind;
  }
}

/**
 * Refuses a database whose recorded migrations this build does not know, or knows with another hash. Only
 * reads: it runs before anything else touches the file, so a database from a newer version is never
 * written to (not even switched to WAL) by an older one.
 */
export function verifyMigrations(sqlite: Database, migrations: Migration[] = embeddedMigrations()): void {
  const exists = sqlite.query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(TABLE);
  if (!exists) return;
  const rows = sqlite
    .query(`SELECT hash, created_at FROM ${TABLE} ORDER BY created_at`)
    .all() as RecordedMigration[];
  checkRecorded(rows, migrations);
}

/** A row of drizzle's bookkeeping table; `created_at` is the journal's `when` (text or number by driver). */
export type RecordedMigration = { hash: string; created_at: number | string };

/**
 * Throws MigrationMismatchError when a recorded migration is unknown to `migrations` (newer, or never
 * released) or known with another hash (edited since). `folder` names the migrations in the message.
 */
export function checkRecorded(
  rows: RecordedMigration[],
  migrations: Migration[],
  folder = "src/db/migrations",
): void {
  const byWhen = new Map(migrations.map((m) => [m.when, m]));
  const latest = migrations.at(-1)?.when ?? Number.NEGATIVE_INFINITY;
  for (const row of rows) {
    const when = Number(row.created_at);
    const known = byWhen.get(when);
    if (!known) {
      const kind = when > latest ? "newer" : "tampered";
      const stamp = Number.isFinite(when) ? new Date(when).toISOString() : String(row.created_at);
      throw new MigrationMismatchError(
        kind,
        kind === "newer"
          ? `was migrated by a newer version of Easel (migration of ${stamp} is unknown to this one): run that version, or restore a backup made by this one`
          : `records a migration of ${stamp} this version never had: restore the database from a backup made by this version`,
      );
    }
    if (known.hash !== row.hash) {
      throw new MigrationMismatchError(
        "tampered",
        `migration ${known.tag} was changed after this database applied it (its hash differs): restore ${folder}/${known.tag}.sql as released and add a new migration instead`,
      );
    }
  }
}

/**
 * Applies the migrations newer than the last one recorded, in one IMMEDIATE transaction: the write lock is
 * taken before reading the bookkeeping, so processes starting at once on a new database apply each
 * migration exactly once (the others wait on busy_timeout, then find nothing to do).
 */
export function applyMigrations(sqlite: Database, migrations: Migration[] = embeddedMigrations()): number {
  sqlite.exec(
    `CREATE TABLE IF NOT EXISTS ${TABLE} (id SERIAL PRIMARY KEY, hash text NOT NULL, created_at numeric)`,
  );
  sqlite.exec("BEGIN IMMEDIATE");
  try {
    const last = sqlite.query(`SELECT created_at FROM ${TABLE} ORDER BY created_at DESC LIMIT 1`).get() as {
      created_at: number | string;
    } | null;
    const after = last ? Number(last.created_at) : Number.NEGATIVE_INFINITY;
    const insert = sqlite.prepare(`INSERT INTO ${TABLE} (hash, created_at) VALUES (?, ?)`);
    let applied = 0;
    for (const m of migrations) {
      if (m.when <= after) continue;
      for (const statement of m.statements) if (statement.trim()) sqlite.run(statement);
      insert.run(m.hash, m.when);
      applied++;
    }
    sqlite.exec("COMMIT");
    return applied;
  } catch (err) {
    sqlite.exec("ROLLBACK");
    throw err;
  }
}
