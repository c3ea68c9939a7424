import type { Sql } from "../sql";

/** One table of Easel's schema: its size on disk, its rows and what autovacuum has done to it. */
export type PgTableStats = {
  table: string;
  /** The table's own pages (its heap, its TOAST data, free space and visibility maps). */
  bytes: number;
  indexBytes: number;
  /** Live rows as PostgreSQL's statistics estimate them (exact right after VACUUM or ANALYZE). */
  rows: number;
  /** Rows deleted or updated away whose space no VACUUM has made reusable yet. */
  deadRows: number;
  /** When a VACUUM (manual or autovacuum) last went over it, epoch ms; null if none since the statistics reset. */
  lastVacuumAt: number | null;
  lastAnalyzeAt: number | null;
};

/** `easel db stats` on PostgreSQL: the database's size and each of Easel's tables, largest first. */
export type PgDbStats = {
  backend: "postgres";
  /** The URL without its password. */
  where: string;
  version: string;
  databaseBytes: number;
  /** Whether the server's autovacuum runs (PostgreSQL's default): it makes dead rows' space reusable. */
  autovacuum: boolean;
  deadRows: number;
  tables: PgTableStats[];
};

// Sizes are bigint and times timestamptz in PostgreSQL: float8 epoch ms arrive as plain numbers.
const TABLES = `SELECT c.relname AS table,
    pg_table_size(c.oid)::float8 AS bytes,
    pg_indexes_size(c.oid)::float8 AS index_bytes,
    coalesce(s.n_live_tup, 0)::float8 AS rows,
    coalesce(s.n_dead_tup, 0)::float8 AS dead_rows,
    (extract(epoch FROM greatest(s.last_vacuum, s.last_autovacuum)) * 1000)::float8 AS last_vacuum_at,
    (extract(epoch FROM greatest(s.last_analyze, s.last_autoanalyze)) * 1000)::float8 AS last_analyze_at
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
  WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')
  ORDER BY pg_total_relation_size(c.oid) DESC, c.relname`;
const DATABASE = `SELECT pg_database_size(current_database())::float8 AS bytes,
    current_setting('server_version') AS version,
    current_setting('autovacuum') = 'on' AS autovacuum`;

/**
 * What PostgreSQL's catalogue and statistics say of the database (a few catalogue reads, no table scans).
 * PostgreSQL keeps no free-page count: the space of dead rows is what VACUUM makes reusable, so dead rows
 * are its counterpart of SQLite's free pages.
 */
export async function pgDbStats(sql: Sql, where: string): Promise<PgDbStats> {
  const [db, rows] = await Promise.all([
    sql.get<{ bytes: number; version: string; autovacuum: boolean }>(DATABASE),
    sql.all<{
      table: string;
      bytes: number;
      index_bytes: number;
      rows: number;
      dead_rows: number;
      last_vacuum_at: number | null;
      last_analyze_at: number | null;
    }>(TABLES),
  ]);
  const tables = rows.map((r) => ({
    table: r.table,
    bytes: r.bytes,
    indexBytes: r.index_bytes,
    rows: r.rows,
    deadRows: r.dead_rows,
    lastVacuumAt: r.last_vacuum_at === null ? null : Math.round(r.last_vacuum_at),
    lastAnalyzeAt: r.last_analyze_at === null ? null : Math.round(r.last_analyze_at),
  }));
  return {
    backend: "postgres",
    where,
    version: db!.version,
    databaseBytes: db!.bytes,
    autovacuum: db!.autovacuum,
    deadRows: tables.reduce((n, t) => n + t.deadRows, 0),
    tables,
  };
}
