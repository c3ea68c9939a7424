/**
 * Copying an Easel SQLite database into a migrated PostgreSQL one (`easel migrate-data`): every table of the
 * schema, row for row, ids, times, JSON and booleans as they are, in one PostgreSQL transaction that commits
 * only when every table's count on the target equals the source's.
 */
import type { Database } from "bun:sqlite";
import { getTableName, is, type Table } from "drizzle-orm";
import { getTableConfig, SQLiteTable } from "drizzle-orm/sqlite-core";
import type { PgClient } from "./pg/sql";
import { columnList } from "./rows";
import * as schema from "./schema";
import { placeholders, type SqlParam } from "./sql";

/** One table's rows: in the source, written by the copy, and found in the target before commit. */
export type TableCount = { table: string; source: number; copied: number; target: number };

/** The target already holds data (and the copy was not asked to replace it): nothing was written. */
export class TargetNotEmptyError extends Error {
  override name = "TargetNotEmptyError";
  readonly tables: { table: string; rows: number }[];
  constructor(tables: { table: string; rows: number }[]) {
    super(`the target already has data in ${tables.map((t) => `${t.table} (${t.rows} rows)`).join(", ")}`);
    this.tables = tables;
  }
}

/** A table's count on the target differs from the source's: the transaction was rolled back. */
export class CopyMismatchError extends Error {
  override name = "CopyMismatchError";
  readonly counts: TableCount[];
  constructor(counts: TableCount[]) {
    const bad = counts.filter((c) => c.target !== c.source);
    super(`row counts differ in ${bad.map((c) => `${c.table} (${c.source} → ${c.target})`).join(", ")}`);
    this.counts = counts;
  }
}

/** Every table of the schema, each after the tables its foreign keys point at (so inserts never dangle). */
export function tablesInCopyOrder(): Table[] {
  const tables = (Object.values(schema) as unknown[]).filter((v): v is SQLiteTable => is(v, SQLiteTable));
  const ordered: Table[] = [];
  const placed = new Set<Table>();
  const visit = (t: SQLiteTable) => {
    if (placed.has(t)) return;
    placed.add(t);
    for (const fk of getTableConfig(t).foreignKeys) {
      const parent = fk.reference().foreignTable;
      if (parent !== t) visit(parent);
    }
    ordered.push(t);
  };
  for (const t of tables.sort((a, b) => getTableName(a).localeCompare(getTableName(b)))) visit(t);
  return ordered;
}

export type CopyOptions = {
  /** Empty the target's tables first (in the same transaction) instead of refusing a target with data. */
  replace?: boolean;
  /** Rows per INSERT statement (fewer for wide tables: PostgreSQL binds at most 65,535 parameters). */
  batchRows?: number;
};

/**
 * Copies every table of `source` into `target` (both at this build's schema) and returns the counts.
 *
 * The source is read in one read transaction (a consistent snapshot, even if something writes meanwhile);
 * the target is written in one transaction, and its counts are checked before COMMIT: a table whose count
 * differs (a trigger or rule on the target dropping rows) throws CopyMismatchError and nothing is committed.
 */
export async function copySqliteToPostgres(
  source: Database,
  target: PgClient,
  opts: CopyOptions = {},
): Promise<TableCount[]> {
  const tables = tablesInCopyOrder();
  const names = tables.map((t) => getTableName(t));
  source.exec("BEGIN");
  try {
    const counts = await target.transaction(async () => {
      if (opts.replace) await target.run(`TRUNCATE ${names.join(", ")}`);
      else await refuseData(target, names);
      const out: TableCount[] = [];
      for (const table of tables) {
        const name = getTableName(table);
        const sourceRows = (source.query(`SELECT count(*) AS n FROM ${name}`).get() as { n: number }).n;
        const copied = await copyTable(source, target, table, opts.batchRows ?? 500);
        const row = await target.get<{ n: number }>(`SELECT count(*) AS n FROM ${name}`);
        out.push({ table: name, source: sourceRows, copied, target: row?.n ?? 0 });
      }
      if (out.some((c) => c.target !== c.source || c.copied !== c.source)) throw new CopyMismatchError(out);
      return out;
    });
    return counts;
  } finally {
    source.exec("COMMIT");
  }
}

async function refuseData(target: PgClient, names: string[]): Promise<void> {
  const found: { table: string; rows: number }[] = [];
  for (const name of names) {
    const row = await target.get<{ n: number }>(`SELECT count(*) AS n FROM ${name}`);
    if (row && row.n > 0) found.push({ table: name, rows: row.n });
  }
  if (found.length > 0) throw new TargetNotEmptyError(found);
}

/** Streams one table's rows into multi-row INSERTs; how many rows it wrote. */
async function copyTable(
  source: Database,
  target: PgClient,
  table: Table,
  batchRows: number,
): Promise<number> {
  const name = getTableName(table);
  const columns = columnList(table);
  const width = columns.split(", ").length;
  const perBatch = Math.max(1, Math.min(batchRows, Math.floor(30_000 / width)));
  const row = `(${placeholders(width)})`;
  const insert = (n: number) =>
    `INSERT INTO ${name} (${columns}) VALUES ${Array.from({ length: n }, () => row).join(", ")}`;
  // Pages by rowid, in the source's snapshot, so a large table never sits in memory whole. Values go as SQLite
  // holds them (0/1, JSON text): the PostgreSQL client binds each as its column's type takes it.
  const page = source.query(`SELECT rowid, ${columns} FROM ${name} WHERE rowid > ? ORDER BY rowid LIMIT ?`);
  let written = 0;
  let after = Number.MIN_SAFE_INTEGER;
  for (;;) {
    const rows = page.values(after, perBatch) as SqlParam[][];
    if (rows.length === 0) break;
    after = rows.at(-1)![0] as number;
    written += (
      await target.run(
        insert(rows.length),
        rows.flatMap((r) => r.slice(1)),
      )
    ).changes;
    if (rows.length < perBatch) break;
  }
  return written;
}
