import { Database } from "bun:sqlite";
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { type BunSQLiteDatabase, drizzle } from "drizzle-orm/bun-sqlite";
import { applyMigrations } from "./migrate";
import * as schema from "./schema";

export type Db = BunSQLiteDatabase<typeof schema> & { $client: Database };

export type OpenOptions = {
  /** `FULL` fsyncs every commit; `NORMAL` (WAL) is durable across process crashes, not power loss. */
  synchronous?: "NORMAL" | "FULL";
  busyTimeoutMs?: number;
  migrate?: boolean;
};

/** Opens (creating if needed) the SQLite file with Easel's pragmas, and applies pending migrations. */
export function openDb(path: string, opts: OpenOptions = {}): Db {
  if (path !== ":memory:") mkdirSync(dirname(path), { recursive: true });
  const sqlite = new Database(path, { create: true, strict: true });
  // busy_timeout first: switching a new file to WAL takes a lock another process may hold at that moment.
  sqlite.exec(`PRAGMA busy_timeout = ${opts.busyTimeoutMs ?? 5000}`);
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
  const db = drizzle({ client: sqlite, schema }) as Db;
  // Committed drizzle-kit migrations, embedded in the build (migrate.ts); safe from several processes at once.
  if (opts.migrate !== false) applyMigrations(sqlite);
  return db;
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
