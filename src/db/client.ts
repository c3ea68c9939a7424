import { Database } from "bun:sqlite";
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { type BunSQLiteDatabase, drizzle } from "drizzle-orm/bun-sqlite";
import { applyMigrations, MigrationMismatchError, verifyMigrations } from "./migrate";
import * as schema from "./schema";

export type Db = BunSQLiteDatabase<typeof schema> & { $client: Database };

export type OpenOptions = {
  /** `FULL` fsyncs every commit; `NORMAL` (WAL) is durable across process crashes, not power loss. */
  synchronous?: "NORMAL" | "FULL";
  busyTimeoutMs?: number;
  migrate?: boolean;
};

/**
 * The database cannot be used as it is: the file is not a database, cannot be opened, or was migrated by
 * another version. The message is one line naming the file and what to do (start-up prints it as is).
 */
export class DatabaseOpenError extends Error {
  override name = "DatabaseOpenError";
  readonly path: string;
  constructor(path: string, message: string, options?: { cause?: unknown }) {
    super(`${path} ${message}`, options);
    this.path = path;
  }
}

/**
 * Opens (creating if needed) the SQLite file with Easel's pragmas, and applies pending migrations. Throws
 * DatabaseOpenError when the file is corrupt, unreachable, or from a newer or altered set of migrations.
 */
export function openDb(path: string, opts: OpenOptions = {}): Db {
  let sqlite: Database | undefined;
  try {
    if (path !== ":memory:") mkdirSync(dirname(path), { recursive: true });
    sqlite = new Database(path, { create: true, strict: true });
    // busy_timeout first: switching a new file to WAL takes a lock another process may hold at that moment.
    sqlite.exec(`PRAGMA busy_timeout = ${opts.busyTimeoutMs ?? 5000}`);
    // Before any pragma that writes: a database from a newer version is refused untouched.
    verifyMigrations(sqlite);
    // Only takes effect on a file with no tables yet: retention can then hand free pages back to the file
    // system (modules/ops/maintenance.ts). An older file reuses its free pages instead (`easel db vacuum`).
    sqlite.exec("PRAGMA auto_vacuum = INCREMENTAL");
    sqlite.exec("PRAGMA journal_mode = WAL");
    sqlite.exec(`PRAGMA synchronous = ${opts.synchronous ?? "NORMAL"}`);
    sqlite.exec("PRAGMA foreign_keys = ON");
    sqlite.exec("PRAGMA temp_store = MEMORY");
    sqlite.exec("PRAGMA cache_size = -32000");
    // After a burst of writes (a large retention run) the WAL file is cut back to this when it rewinds,
    // instead of keeping its high-water size on disk.
    sqlite.exec("PRAGMA journal_size_limit = 67108864");
    // Committed drizzle-kit migrations, embedded in the build (migrate.ts); safe from several processes at once.
    if (opts.migrate !== false) applyMigrations(sqlite);
  } catch (err) {
    sqlite?.close();
    throw new DatabaseOpenError(path, openFailure(path, err), { cause: err });
  }
  return drizzle({ client: sqlite, schema }) as Db;
}

/** What went wrong opening `path`, and what the operator can do about it. */
function openFailure(path: string, err: unknown): string {
  if (err instanceof MigrationMismatchError) return err.message;
  const code = String((err as { code?: unknown }).code ?? "");
  const reason = (err as Error).message ?? String(err);
  if (code === "SQLITE_NOTADB" || code.startsWith("SQLITE_CORRUPT")) {
    return `is not a usable SQLite database (${reason}): restore a backup with \`easel restore <file>\`, or move it away to start empty`;
  }
  if (code === "SQLITE_BUSY") {
    return `is locked by another process (${reason}): stop it, or wait for it to finish, and start again`;
  }
  return `cannot be opened (${reason}): check that ${dirname(path)} is a directory this user can read and write (DATA_DIR / DATABASE_PATH)`;
}

/**
 * Query-planner statistics, as SQLite recommends for long-lived connections: `PRAGMA optimize` analyses only
 * what changed enough, bounded by `analysis_limit` so it stays fast on a large file. Retention runs it.
 */
export function optimize(sqlite: Database): void {
  try {
    sqlite.exec("PRAGMA analysis_limit = 400");
    sqlite.exec("PRAGMA optimize");
  } catch {
    // A busy database skips it; the next run catches up.
  }
}
