/**
 * Applies the committed PostgreSQL migrations (src/db/migrations-pg, generated from ./schema.ts by
 * `bun run db:generate:pg`), embedded at build time like SQLite's (../embed-migrations.ts). Bookkeeping is
 * drizzle's own (`drizzle.__drizzle_migrations`: sha256 of the file as `hash`, the journal's `when` as
 * `created_at`), so a database migrated by drizzle's migrator is recognised and vice versa.
 */
import type { SQL } from "bun";
import { journalMigrations } from "../embed-migrations" with { type: "macro" };
import { checkRecorded, embeddedMigrations, type Migration, type RecordedMigration } from "../migrate";

const FOLDER = "src/db/migrations-pg";

/** The PostgreSQL journal's migrations in order, with drizzle's hash and statement split. */
export function pgMigrations(): Migration[] {
  return embeddedMigrations(journalMigrations("migrations-pg"));
}

/**
 * Applies the migrations newer than the last one recorded, in one transaction, and returns them. Throws
 * MigrationMismatchError, having written nothing, when the database records a migration this build does not
 * have (a newer Easel migrated it) or one whose file has changed.
 *
 * Processes starting at once on one database queue on a transaction-scoped advisory lock taken before the
 * bookkeeping is read, so each migration is applied exactly once: the first applies them, the others then
 * find nothing to do. PostgreSQL's DDL is transactional, so a failing migration leaves nothing half-applied.
 */
export async function migratePg(sql: SQL, migrations: Migration[] = pgMigrations()): Promise<Migration[]> {
  return sql.begin(async (tx) => {
    await tx`SELECT pg_advisory_xact_lock(hashtext('easel:migrations'))`;
    const [{ exists }] = await tx`SELECT to_regclass('drizzle.__drizzle_migrations') IS NOT NULL AS exists`;
    const recorded: RecordedMigration[] = exists
      ? await tx`SELECT hash, created_at FROM drizzle.__drizzle_migrations ORDER BY created_at`
      : [];
    checkRecorded(recorded, migrations, FOLDER);
    if (!exists) {
      await tx`CREATE SCHEMA IF NOT EXISTS drizzle`;
      await tx`CREATE TABLE drizzle.__drizzle_migrations (id SERIAL PRIMARY KEY, hash text NOT NULL, created_at bigint)`;
    }
    const after = recorded.length > 0 ? Number(recorded.at(-1)?.created_at) : Number.NEGATIVE_INFINITY;
    const pending = migrations.filter((m) => m.when > after);
    for (const m of pending) {
      // A chunk may hold several statements (a custom migration); the simple protocol runs them as one.
      for (const statement of m.statements) if (statement.trim()) await tx.unsafe(statement).simple();
      await tx`INSERT INTO drizzle.__drizzle_migrations (hash, created_at) VALUES (${m.hash}, ${m.when})`;
    }
    return pending;
  });
}
