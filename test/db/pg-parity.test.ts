/**
 * The SQLite and PostgreSQL schemas are kept in step: both sets of committed migrations are applied to fresh
 * databases (a SQLite file, a PostgreSQL database on the test server) and what they built is compared —
 * tables, columns (name, nullability, default, type kind through the mapping in src/db/pg/schema.ts), primary
 * keys, foreign keys, indexes (name, table, uniqueness, columns or expressions, partial predicate) and
 * triggers. A change made to one schema only fails here: change both, and generate both migrations.
 */
import type { Database } from "bun:sqlite";
import { afterEach, describe, expect, test } from "bun:test";
import { join } from "node:path";
import type { SQL } from "bun";
import { getTableColumns, getTableName } from "drizzle-orm";
import { drizzle as drizzlePg } from "drizzle-orm/bun-sql";
import { SQLiteTable } from "drizzle-orm/sqlite-core";
import { type Db, openDb } from "../../src/db/client";
import { migratePg } from "../../src/db/pg/migrate";
import * as pgSchema from "../../src/db/pg/schema";
import { rowAsInserted, rowMapper } from "../../src/db/rows";
import * as sqliteSchema from "../../src/db/schema";
import { tempDir } from "../helpers";
import { freshPgDatabase, type PgTestDb } from "./pg-helpers";

/**
 * A schema as a flat map, one entry per thing that must match: `column jobs.priority` -> `integer not null
 * default 0`, `index jobs_claim_idx` -> `jobs (…) where …`, and so on. Two schemas match when the maps do.
 */
type Shape = Map<string, string>;

/** The kinds the mapping pairs: SQLite integer <-> bigint, boolean-mode integer <-> boolean, json <-> jsonb. */
type Kind = "integer" | "boolean" | "json" | "text" | `other:${string}`;

/** The tables of src/db/schema.ts. */
const SQLITE_TABLES = Object.values(sqliteSchema as Record<string, unknown>).filter(
  (t): t is SQLiteTable => t instanceof SQLiteTable,
);

/** Drizzle's SQLite column modes, by `table.column`: the SQLite file alone says only INTEGER or TEXT. */
const SQLITE_MODES = new Map<string, Kind>(
  SQLITE_TABLES.flatMap((t) =>
    Object.values(getTableColumns(t)).flatMap((c): [string, Kind][] =>
      c.columnType === "SQLiteBoolean"
        ? [[`${getTableName(t)}.${c.name}`, "boolean"]]
        : c.columnType === "SQLiteTextJson"
          ? [[`${getTableName(t)}.${c.name}`, "json"]]
          : [],
    ),
  ),
);

function sqliteKind(table: string, column: string, declared: string): Kind {
  const mode = SQLITE_MODES.get(`${table}.${column}`);
  if (mode) return mode;
  const type = declared.toLowerCase();
  return type === "integer" || type === "text" ? type : `other:${type}`;
}

function pgKind(type: string): Kind {
  if (type === "bigint" || type === "integer" || type === "smallint") return "integer";
  if (type === "jsonb" || type === "json") return "json";
  if (type === "boolean" || type === "text") return type;
  return `other:${type}`;
}

/** SQL text as both dialects can be compared: no quotes, casts, parentheses or case; single spaces. */
function norm(text: string | null | undefined): string {
  return (text ?? "")
    .replace(/::(?:character varying|double precision|timestamp with time zone|[a-z_0-9]+)(?:\[\])?/gi, "")
    .replace(/["`()]/g, "")
    .replace(/\s+/g, " ")
    .trim()
    .toLowerCase();
}

function column(kind: Kind, notNull: boolean, dflt: string | null): string {
  return `${kind}${notNull ? " not null" : ""}${dflt == null ? "" : ` default ${norm(dflt)}`}`;
}

/** Splits an index's column list at its top-level commas (expressions hold parentheses). */
function splitTopLevel(list: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let current = "";
  for (const ch of list) {
    if (ch === "(") depth++;
    if (ch === ")") depth--;
    if (ch === "," && depth === 0) {
      parts.push(current);
      current = "";
    } else current += ch;
  }
  return [...parts, current];
}

function sqliteShape(db: Database): Shape {
  const shape: Shape = new Map();
  const tables = db
    .query(
      "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name != '__drizzle_migrations'",
    )
    .all() as { name: string }[];
  for (const { name: table } of tables) {
    shape.set(`table ${table}`, "");
    const cols = db.query(`PRAGMA table_info(${table})`).all() as {
      name: string;
      type: string;
      notnull: number;
      dflt_value: string | null;
      pk: number;
    }[];
    for (const c of cols) {
      shape.set(
        `column ${table}.${c.name}`,
        column(sqliteKind(table, c.name, c.type), c.notnull === 1, c.dflt_value),
      );
    }
    const pk = cols.filter((c) => c.pk > 0).sort((a, b) => a.pk - b.pk);
    if (pk.length > 0) shape.set(`primary key ${table}`, pk.map((c) => c.name).join(", "));
    const fks = db.query(`PRAGMA foreign_key_list(${table})`).all() as {
      id: number;
      table: string;
      from: string;
      to: string;
      on_delete: string;
    }[];
    for (const id of new Set(fks.map((f) => f.id))) {
      const parts = fks.filter((f) => f.id === id);
      shape.set(
        `foreign key ${table}(${parts.map((f) => f.from).join(", ")})`,
        `${parts[0]!.table}(${parts.map((f) => f.to).join(", ")}) on delete ${parts[0]!.on_delete.toLowerCase()}`,
      );
    }
  }
  // Indexes a statement created (constraint indexes of primary keys have no SQL).
  const indexes = db
    .query("SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")
    .all() as { name: string; tbl_name: string; sql: string }[];
  for (const { name, tbl_name, sql } of indexes) {
    const m = /^CREATE (UNIQUE )?INDEX .+? ON [`"]?\w+[`"]? \((.*?)\)(?: WHERE (.*))?$/s.exec(sql);
    if (!m) throw new Error(`cannot read index ${name}: ${sql}`);
    shape.set(`index ${name}`, index(tbl_name, Boolean(m[1]), splitTopLevel(m[2]!), m[3]));
  }
  const triggers = db.query("SELECT name, tbl_name FROM sqlite_master WHERE type = 'trigger'").all() as {
    name: string;
    tbl_name: string;
  }[];
  for (const t of triggers) shape.set(`trigger ${t.name}`, `on ${t.tbl_name}`);
  return shape;
}

function index(table: string, unique: boolean, columns: string[], where: string | null | undefined): string {
  const on = columns.map(norm).join(", ");
  return `${unique ? "unique " : ""}on ${table} (${on})${where ? ` where ${norm(where)}` : ""}`;
}

async function pgShape(sql: SQL): Promise<Shape> {
  const shape: Shape = new Map();
  const columns = await sql`
    SELECT c.table_name, c.column_name, c.data_type, c.is_nullable, c.column_default
      FROM information_schema.columns c
      JOIN information_schema.tables t USING (table_schema, table_name)
     WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'`;
  for (const c of columns) {
    shape.set(`table ${c.table_name}`, "");
    shape.set(
      `column ${c.table_name}.${c.column_name}`,
      column(pgKind(c.data_type), c.is_nullable === "NO", c.column_default),
    );
  }
  const indexes = await sql`
    SELECT i.relname AS name, t.relname AS table, x.indisunique AS unique, x.indisprimary AS primary,
           x.indnkeyatts AS n, x.indexrelid::int8 AS oid, pg_get_expr(x.indpred, x.indrelid, true) AS predicate
      FROM pg_index x
      JOIN pg_class i ON i.oid = x.indexrelid
      JOIN pg_class t ON t.oid = x.indrelid
      JOIN pg_namespace n ON n.oid = t.relnamespace
     WHERE n.nspname = 'public'`;
  for (const ix of indexes) {
    const columns: string[] = [];
    for (let k = 1; k <= ix.n; k++) {
      const [{ def }] = await sql`SELECT pg_get_indexdef(${ix.oid}::oid, ${k}::int, true) AS def`;
      columns.push(def);
    }
    if (ix.primary) shape.set(`primary key ${ix.table}`, columns.join(", "));
    else shape.set(`index ${ix.name}`, index(ix.table, ix.unique, columns, ix.predicate));
  }
  const fks = await sql`
    SELECT t.relname AS table, r.relname AS ref, c.confdeltype AS del,
           ARRAY(SELECT attname FROM unnest(c.conkey) WITH ORDINALITY k(n, o)
                 JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY o) AS cols,
           ARRAY(SELECT attname FROM unnest(c.confkey) WITH ORDINALITY k(n, o)
                 JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY o) AS refcols
      FROM pg_constraint c
      JOIN pg_class t ON t.oid = c.conrelid
      JOIN pg_class r ON r.oid = c.confrelid
      JOIN pg_namespace n ON n.oid = t.relnamespace
     WHERE c.contype = 'f' AND n.nspname = 'public'`;
  const onDelete: Record<string, string> = {
    a: "no action",
    r: "restrict",
    c: "cascade",
    n: "set null",
    d: "set default",
  };
  for (const f of fks) {
    shape.set(
      `foreign key ${f.table}(${f.cols.join(", ")})`,
      `${f.ref}(${f.refcols.join(", ")}) on delete ${onDelete[f.del]}`,
    );
  }
  const triggers = await sql`
    SELECT g.tgname AS name, t.relname AS table FROM pg_trigger g JOIN pg_class t ON t.oid = g.tgrelid
      JOIN pg_namespace n ON n.oid = t.relnamespace WHERE NOT g.tgisinternal AND n.nspname = 'public'`;
  for (const t of triggers) shape.set(`trigger ${t.name}`, `on ${t.table}`);
  return shape;
}

/** Every difference between the two shapes, one line each; empty when they match. */
function differences(sqlite: Shape, pg: Shape): string[] {
  const out: string[] = [];
  for (const [key, value] of sqlite) {
    if (!pg.has(key)) out.push(`${key}: only in SQLite (${value})`);
    else if (pg.get(key) !== value) out.push(`${key}: SQLite has "${value}", PostgreSQL "${pg.get(key)}"`);
  }
  for (const [key, value] of pg) if (!sqlite.has(key)) out.push(`${key}: only in PostgreSQL (${value})`);
  return out.sort();
}

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

/** Both databases, freshly migrated by their committed migrations. */
async function migratedPair(): Promise<{ sqlite: Database; pg: PgTestDb; db: Db }> {
  const pg = await freshPgDatabase();
  cleanups.push(pg.drop);
  const t = tempDir("easel-parity-");
  const db = openDb(join(t.dir, "easel.db"));
  const sqlite = db.$client;
  cleanups.push(() => {
    sqlite.close();
    t.cleanup();
  });
  await migratePg(pg.sql);
  return { sqlite, pg, db };
}

describe("SQLite and PostgreSQL schemas", () => {
  test("the migrated databases have the same tables, columns, keys, indexes and triggers", async () => {
    const { sqlite, pg } = await migratedPair();
    const a = sqliteShape(sqlite);
    const b = await pgShape(pg.sql);
    expect(differences(a, b)).toEqual([]);
    // The comparison covers the whole schema, not an empty corner of it.
    expect([...a.keys()].filter((k) => k.startsWith("table ")).length).toBe(SQLITE_TABLES.length);
    expect(a.get("index jobs_claim_idx")).toBe(
      "on jobs (run_at - priority * 1000, run_at, id, type, owner_id) where status = 'queued'",
    );
    expect(a.get("column users.unlimited")).toBe("boolean not null default false");
    expect(a.get("column jobs.input")).toBe("json not null");
    expect(a.get("primary key idempotency_keys")).toBe("owner_id, key");
    expect(a.get("foreign key assets(job_id)")).toBe("jobs(id) on delete set null");
    expect(a.get("index api_keys_hash_unique")).toBe("unique on api_keys (hash)");
    expect(a.get("trigger jobs_counts_ended_delete")).toBe("on jobs");
  });

  test("a change made to one side only is caught, each kind named", async () => {
    const { sqlite, pg } = await migratedPair();
    sqlite.exec("ALTER TABLE cards ADD COLUMN theme text");
    sqlite.exec("DROP INDEX job_input_keys_key_idx");
    await pg.sql`ALTER TABLE jobs ADD COLUMN extra text`;
    await pg.sql`ALTER TABLE users ALTER COLUMN name DROP NOT NULL`;
    await pg.sql`ALTER TABLE recipes ALTER COLUMN active TYPE text`;
    await pg.sql`ALTER TABLE recipes ALTER COLUMN active SET DEFAULT 'yes'`;
    await pg.sql`DROP INDEX jobs_dedupe_queued_idx`;
    await pg.sql`CREATE UNIQUE INDEX jobs_dedupe_queued_idx ON jobs (dedupe_key) WHERE status = 'active'`;
    await pg.sql`DROP TRIGGER jobs_counts_ended_delete ON jobs`;
    expect(differences(sqliteShape(sqlite), await pgShape(pg.sql))).toEqual([
      "column cards.theme: only in SQLite (text)",
      "column jobs.extra: only in PostgreSQL (text)",
      'column recipes.active: SQLite has "boolean not null default true", PostgreSQL "text not null default \'yes\'"',
      'column users.name: SQLite has "text not null", PostgreSQL "text"',
      "index job_input_keys_key_idx: only in PostgreSQL (on job_input_keys (key))",
      "index jobs_dedupe_queued_idx: SQLite has \"unique on jobs (dedupe_key) where status = 'queued' and dedupe_key is not null\", PostgreSQL \"unique on jobs (dedupe_key) where status = 'active'\"",
      "trigger jobs_counts_ended_delete: only in SQLite (on jobs)",
    ]);
  });

  test("a row written through each schema reads back the same through rows.ts, from either database", async () => {
    const { db, pg } = await migratedPair();
    const now = Date.now();
    const user = {
      id: "u1",
      externalId: null,
      name: "Ada",
      role: "user" as const,
      parentId: null,
      credits: 2 ** 40,
      unlimited: true,
      createdAt: now,
      updatedAt: now,
    };
    const job = rowAsInserted(sqliteSchema.jobs)({
      id: "j1",
      type: "generate",
      status: "failed" as const,
      input: { prompt: "a fox", n: 2, tags: ["x"], nested: { ok: true } },
      result: "just a string",
      error: { code: "provider_error", message: "boom", retryable: false, refundable: true },
      maxAttempts: 3,
      runAt: now,
      ownerId: "u1",
      createdAt: now,
      finishedAt: now + 1,
      updatedAt: now + 1,
    });
    const pgDb = drizzlePg({ client: pg.sql });
    db.insert(sqliteSchema.users).values(user).run();
    db.insert(sqliteSchema.jobs).values(job).run();
    await pgDb.insert(pgSchema.users).values(user);
    await pgDb.insert(pgSchema.jobs).values(job);

    // What a hand-prepared statement returns from each driver, mapped by each table's own decoders.
    const fromSqlite = {
      user: rowMapper(sqliteSchema.users)(
        db.$client.query("SELECT * FROM users").get() as Record<string, unknown>,
      ),
      job: rowMapper(sqliteSchema.jobs)(
        db.$client.query("SELECT * FROM jobs").get() as Record<string, unknown>,
      ),
    };
    const fromPg = {
      user: rowMapper(pgSchema.users)((await pg.sql`SELECT * FROM users`)[0]),
      job: rowMapper(pgSchema.jobs)((await pg.sql`SELECT * FROM jobs`)[0]),
    };
    expect(fromSqlite).toEqual({ user, job });
    expect(fromPg).toEqual({ user, job });
    // JSON is stored as JSON (an object, a string), not as a JSON-encoded string of it.
    const [types] =
      await pg.sql`SELECT jsonb_typeof(input) AS input, jsonb_typeof(result) AS result FROM jobs`;
    expect(types).toEqual({ input: "object", result: "string" });
  });
});
