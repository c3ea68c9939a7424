import type { Config } from "../config";

/**
 * `easel migrate`: applies the pending migrations of the configured database — PostgreSQL when
 * `DATABASE_URL` is set, else the SQLite file — and says what it applied.
 */
export async function migrateCommand(
  config: Pick<Config, "DATABASE_URL" | "databasePath" | "SQLITE_SYNCHRONOUS">,
): Promise<number> {
  if (config.DATABASE_URL) return migratePostgres(config.DATABASE_URL);
  const { openDb } = await import("../db/client");
  openDb(config.databasePath, { synchronous: config.SQLITE_SYNCHRONOUS }).$client.close();
  process.stdout.write(`migrated ${config.databasePath}\n`);
  return 0;
}

async function migratePostgres(url: string): Promise<number> {
  const [{ connectPg, redactUrl }, { migratePg }, { MigrationMismatchError }, { DatabaseOpenError }] =
    await Promise.all([
      import("../db/pg/client"),
      import("../db/pg/migrate"),
      import("../db/migrate"),
      import("../db/client"),
    ]);
  const where = redactUrl(url);
  const sql = await connectPg(url, { max: 1, applicationName: "easel migrate" });
  try {
    const applied = await migratePg(sql);
    for (const m of applied) process.stdout.write(`applied ${m.tag}\n`);
    process.stdout.write(
      applied.length > 0 ? `migrated ${where}\n` : `${where} is up to date: no migration to apply\n`,
    );
    return 0;
  } catch (err) {
    // One line naming the database and what to do, as for a SQLite file from another version.
    if (err instanceof MigrationMismatchError)
      throw new DatabaseOpenError(where, err.message, { cause: err });
    throw err;
  } finally {
    await sql.close();
  }
}
