import type { Database } from "bun:sqlite";
import { statSync } from "node:fs";
import type { Config } from "../config";
import type { Db } from "../db/client";
import type { OpenedDatabase } from "../db/open";
import { type PgDbStats, pgDbStats } from "../db/pg/stats";
import type { Sql } from "../db/sql";
import { LOCK_FILE, runningServer } from "../modules/ops/lock";
import { formatBytes } from "../units";
import { parse, printJsonOr, table, UsageError, utcMinute } from "./args";

/** What this command needs from the services, and nothing more. */
type Deps = {
  /** The SQLite file's connection; null on PostgreSQL. */
  sqlite: Db | null;
  sql: Sql;
  database: Pick<OpenedDatabase, "where">;
  config: Pick<Config, "databasePath" | "dataDir">;
};

const USAGE = "usage: easel db stats [--json] | db vacuum [--force]";

export type TableSize = { table: string; bytes: number; pages: number; indexBytes: number };

export type DbStats = {
  backend: "sqlite";
  path: string;
  fileBytes: number;
  walBytes: number;
  pageSize: number;
  pages: number;
  freePages: number;
  freeBytes: number;
  autoVacuum: "none" | "full" | "incremental";
  /** Each table with its indexes' pages, largest first (from the dbstat virtual table). */
  tables: TableSize[];
};

/**
 * `easel db …`: what the database holds (SQLite: the file, its free pages and each table; PostgreSQL: the
 * database, each table's size, rows and dead rows), and SQLite's one-off conversion to incremental
 * auto-vacuum (PostgreSQL's autovacuum needs none).
 */
export async function dbCommand(ctx: Deps, argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { json: { type: "boolean" }, force: { type: "boolean" } });
  const json = Boolean(values.json);
  const sqlite = ctx.sqlite?.$client;
  switch (positionals[0]) {
    case "stats": {
      if (!sqlite) {
        const stats = await pgDbStats(ctx.sql, ctx.database.where);
        printJsonOr(json, stats, () => formatPgStats(stats));
        return 0;
      }
      const stats = dbStats(sqlite, ctx.config.databasePath);
      printJsonOr(json, stats, () => formatStats(stats));
      return 0;
    }
    case "vacuum": {
      if (!sqlite) {
        process.stderr.write(
          "easel db vacuum: DATABASE_URL is set, so the data is in PostgreSQL, whose autovacuum makes dead rows' " +
            "space reusable as it goes (`easel db stats` shows them); a one-off VACUUM or VACUUM FULL is run with psql\n",
        );
        return 1;
      }
      const server = values.force ? null : runningServer(ctx.config.dataDir);
      if (server) {
        process.stderr.write(
          `a server (pid ${server.pid} on ${server.host}) uses ${ctx.config.dataDir}: VACUUM would stall it for ` +
            `the whole rewrite; stop it first (or pass --force, or delete ${LOCK_FILE} if it is not running)\n`,
        );
        return 1;
      }
      const before = dbStats(sqlite, ctx.config.databasePath);
      // auto_vacuum can only change on an empty file or through a full rewrite: this is that rewrite.
      sqlite.exec("PRAGMA auto_vacuum = INCREMENTAL");
      sqlite.exec("VACUUM");
      sqlite.exec("PRAGMA wal_checkpoint(TRUNCATE)");
      const after = dbStats(sqlite, ctx.config.databasePath);
      process.stdout.write(
        `vacuumed ${ctx.config.databasePath}: ${formatBytes(before.fileBytes)} → ${formatBytes(after.fileBytes)}, ` +
          `auto_vacuum ${after.autoVacuum}\n`,
      );
      return 0;
    }
    default:
      throw new UsageError(USAGE);
  }
}

const AUTO_VACUUM = ["none", "full", "incremental"] as const;

/** File, page and per-table sizes. Reads every page (dbstat): for the CLI, never the request path. */
export function dbStats(sqlite: Database, path: string): DbStats {
  const pragma = (name: string) => sqlite.query(`PRAGMA ${name}`).values()[0]?.[0] as number;
  const pageSize = pragma("page_size");
  const freePages = pragma("freelist_count");
  const rows = sqlite
    .query(
      `SELECT coalesce(s.tbl_name, d.name) AS tbl, d.name = coalesce(s.tbl_name, d.name) AS isTable,
         sum(d.pgsize) AS bytes, count(*) AS pages
       FROM dbstat d LEFT JOIN sqlite_schema s ON s.name = d.name GROUP BY tbl, isTable`,
    )
    .all() as { tbl: string; isTable: number; bytes: number; pages: number }[];
  const tables = new Map<string, TableSize>();
  for (const r of rows) {
    const t = tables.get(r.tbl) ?? { table: r.tbl, bytes: 0, pages: 0, indexBytes: 0 };
    t.pages += r.pages;
    if (r.isTable) t.bytes += r.bytes;
    else t.indexBytes += r.bytes;
    tables.set(r.tbl, t);
  }
  return {
    backend: "sqlite",
    path,
    fileBytes: fileSize(path),
    walBytes: fileSize(`${path}-wal`),
    pageSize,
    pages: pragma("page_count"),
    freePages,
    freeBytes: freePages * pageSize,
    autoVacuum: AUTO_VACUUM[pragma("auto_vacuum")] ?? "none",
    tables: [...tables.values()].sort((a, b) => b.bytes + b.indexBytes - (a.bytes + a.indexBytes)),
  };
}

function formatStats(s: DbStats): string {
  const rows = s.tables.map((t) => [
    t.table,
    formatBytes(t.bytes),
    formatBytes(t.indexBytes),
    String(t.pages),
  ]);
  return [
    `${s.path}: ${formatBytes(s.fileBytes)} (+ WAL ${formatBytes(s.walBytes)}), ${s.pages} pages of ${s.pageSize} bytes`,
    `free pages: ${s.freePages} (${formatBytes(s.freeBytes)}), reused before the file grows; auto_vacuum ${s.autoVacuum}`,
    "",
    table(["table", "data", "indexes", "pages"], rows, [1, 2, 3]),
  ].join("\n");
}

function formatPgStats(s: PgDbStats): string {
  const rows = s.tables.map((t) => [
    t.table,
    formatBytes(t.bytes),
    formatBytes(t.indexBytes),
    String(t.rows),
    String(t.deadRows),
    utcMinute(t.lastVacuumAt, "never"),
  ]);
  return [
    `${s.where} (PostgreSQL ${s.version}): ${formatBytes(s.databaseBytes)}`,
    `dead rows: ${s.deadRows}, ${s.autovacuum ? "made reusable by autovacuum as it goes" : "autovacuum is OFF: nothing reclaims them until a VACUUM"}`,
    "",
    table(["table", "data", "indexes", "rows", "dead rows", "last vacuum (UTC)"], rows, [1, 2, 3, 4]),
  ].join("\n");
}

function fileSize(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}
