/**
 * Opening the database the configuration names, as the `Sql` every module repository talks to: the SQLite
 * file in DATA_DIR, or (DATABASE_URL) a PostgreSQL pool. Both are migrated before they are handed out, so a
 * caller never sees a schema older than this build's.
 */
import type { SQL } from "bun";
import type { Config } from "../config";
import { DatabaseOpenError, type Db, openDb } from "./client";
import { MigrationMismatchError } from "./migrate";
import { connectPg, type PgOptions, redactUrl } from "./pg/client";
import { migratePg } from "./pg/migrate";
import { type PgClient, pgSql } from "./pg/sql";
import { BUSY_TIMEOUT_MS, type SqliteClient, sqliteClient } from "./sqlite";

export type OpenedDatabase =
  | {
      backend: "sqlite";
      sql: SqliteClient;
      /** The drizzle handle and its connection (the queue's synchronous sections, SQLite upkeep). */
      db: Db;
      /** The file, for messages. */
      where: string;
      close(): Promise<void>;
    }
  | {
      backend: "postgres";
      sql: PgClient;
      pool: SQL;
      /**
       * A small pool whose commits do not wait for the WAL flush, for what a crash may lose without harm (the
       * queue's claims, heartbeats and progress: see PgQueueBackendOptions.relaxed).
       */
      relaxed: PgClient;
      /** The URL without its password, for messages. */
      where: string;
      close(): Promise<void>;
    };

/** The SQLite file at `config.databasePath`, migrated. */
export function openSqlite(config: Pick<Config, "databasePath" | "SQLITE_SYNCHRONOUS">): OpenedDatabase {
  const db = openDb(config.databasePath, { synchronous: config.SQLITE_SYNCHRONOUS });
  // Opened and migrated with a 5 s busy_timeout; from here another process's write lock is waited for
  // mostly off the event loop (SqliteClient, BUSY_TIMEOUT_MS).
  db.$client.exec(`PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}`);
  return {
    backend: "sqlite",
    sql: sqliteClient(db.$client),
    db,
    where: config.databasePath,
    close: async () => db.$client.close(),
  };
}

/**
 * A pool on the PostgreSQL database at `url`, migrated (several instances starting at once apply each
 * migration once). Throws DatabaseOpenError, one line naming the server, when it cannot be reached or was
 * migrated by another version of Easel.
 */
export async function openPostgres(url: string, opts: PgOptions = {}): Promise<OpenedDatabase> {
  const where = redactUrl(url);
  const pool = await connectPg(url, opts);
  try {
    await migratePg(pool);
  } catch (err) {
    await pool.close().catch(() => {});
    if (err instanceof MigrationMismatchError)
      throw new DatabaseOpenError(where, err.message, { cause: err });
    throw err;
  }
  const relaxedPool = await connectPg(url, {
    max: 3,
    applicationName: `${opts.applicationName ?? "easel"}-relaxed`,
    settings: { synchronous_commit: "off" },
  });
  return {
    backend: "postgres",
    sql: pgSql(pool),
    pool,
    relaxed: pgSql(relaxedPool),
    where,
    close: async () => {
      await relaxedPool.close();
      await pool.close();
    },
  };
}

/** The database the configuration names: PostgreSQL when DATABASE_URL is set, else the SQLite file. */
export function openDatabase(
  config: Pick<Config, "DATABASE_URL" | "databasePath" | "SQLITE_SYNCHRONOUS">,
  opts: PgOptions = {},
): Promise<OpenedDatabase> {
  if (config.DATABASE_URL) return openPostgres(config.DATABASE_URL, opts);
  return Promise.resolve(openSqlite(config));
}
