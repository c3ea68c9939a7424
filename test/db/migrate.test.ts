import { Database } from "bun:sqlite";
import { afterEach, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { drizzle } from "drizzle-orm/bun-sqlite";
import { migrate } from "drizzle-orm/bun-sqlite/migrator";
import { openDb } from "../../src/db/client";
import { applyMigrations, embeddedMigrations } from "../../src/db/migrate";
import { tempDir } from "../helpers";

const MIGRATIONS = join(import.meta.dir, "..", "..", "src", "db", "migrations");

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});
function dbPath(): string {
  const t = tempDir("easel-migrate-");
  cleanups.push(t.cleanup);
  return join(t.dir, "easel.db");
}

type Snapshot = { tables: string[]; bookkeeping: [string, number][] };
function snapshot(path: string): Snapshot {
  const db = new Database(path, { readonly: true });
  try {
    return {
      // Layout and quoting of the DDL text may differ; the definitions may not.
      tables: (
        db.query("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name").values() as [string][]
      ).map((r) => r[0].replace(/["`]/g, "").replace(/\s+/g, " ").replace(/\( /g, "(").replace(/ \)/g, ")")),
      bookkeeping: (
        db.query("SELECT hash, created_at FROM __drizzle_migrations ORDER BY created_at").values() as [
          string,
          number,
        ][]
      ).map(([h, c]) => [h, Number(c)]),
    };
  } finally {
    db.close();
  }
}

/** Migrates with drizzle's own file-based migrator (what Easel used before migrations were embedded). */
function migrateTheOldWay(path: string): void {
  const sqlite = new Database(path, { create: true });
  migrate(drizzle({ client: sqlite }), { migrationsFolder: MIGRATIONS });
  sqlite.close();
}

describe("embedded migrations", () => {
  test("embed every migration of the folder's journal, with drizzle's hashes", () => {
    const journal = JSON.parse(readFileSync(join(MIGRATIONS, "meta", "_journal.json"), "utf8")) as {
      entries: { tag: string; when: number }[];
    };
    const files = readdirSync(MIGRATIONS).filter((f) => f.endsWith(".sql"));
    const embedded = embeddedMigrations();
    expect(embedded.map((m) => `${m.tag}.sql`).sort()).toEqual(files.sort());
    expect(embedded.map((m) => [m.tag, m.when])).toEqual(journal.entries.map((e) => [e.tag, e.when]));
    for (const m of embedded) {
      const sql = readFileSync(join(MIGRATIONS, `${m.tag}.sql`), "utf8");
      expect(m.hash).toBe(createHash("sha256").update(sql).digest("hex"));
    }
  });

  test("a database migrated by drizzle's file-based migrator is recognised: nothing is applied twice", () => {
    const path = dbPath();
    migrateTheOldWay(path);
    const before = snapshot(path);
    expect(before.bookkeeping).toHaveLength(embeddedMigrations().length);
    const sqlite = new Database(path);
    expect(applyMigrations(sqlite)).toBe(0);
    sqlite.close();
    openDb(path).$client.close();
    expect(snapshot(path)).toEqual(before);
  });

  test("the embedded runner produces the same schema and bookkeeping as drizzle's", () => {
    const old = dbPath();
    const embedded = dbPath();
    migrateTheOldWay(old);
    openDb(embedded).$client.close();
    expect(snapshot(embedded)).toEqual(snapshot(old));
    // And the other way round: drizzle's migrator finds nothing to do on an embedded-migrated database.
    migrateTheOldWay(embedded);
    expect(snapshot(embedded)).toEqual(snapshot(old));
  });

  test("a database behind by some migrations gets only the newer ones", () => {
    const path = dbPath();
    const all = embeddedMigrations();
    const sqlite = new Database(path, { create: true });
    expect(applyMigrations(sqlite, all.slice(0, 1))).toBe(1);
    expect(applyMigrations(sqlite, all)).toBe(all.length - 1);
    expect(applyMigrations(sqlite, all)).toBe(0);
    sqlite.close();
  });

  test("upgrading keeps the uploads queued generations name: their keys are filled in from the input", () => {
    const path = dbPath();
    const all = embeddedMigrations();
    const at = all.findIndex((m) => m.tag.includes("ended_index_and_input_keys"));
    expect(at).toBeGreaterThan(0);
    const sqlite = new Database(path, { create: true });
    applyMigrations(sqlite, all.slice(0, at));
    const job = sqlite.prepare(
      `INSERT INTO jobs (id, type, status, input, max_attempts, run_at, created_at, updated_at)
       VALUES (?, ?, 'queued', ?, 3, 0, 0, 0)`,
    );
    job.run(
      "edit",
      "generate",
      JSON.stringify({ imageKey: "inputs/a/image.png", maskKey: "inputs/a/mask.png" }),
    );
    job.run("plain", "generate", JSON.stringify({ provider: "placeholder" }));
    job.run("other", "card.render", JSON.stringify({ imageKey: "cards/not-an-upload.png" }));
    applyMigrations(sqlite, all);
    expect(sqlite.query("SELECT job_id, key FROM job_input_keys ORDER BY key").all()).toEqual([
      { job_id: "edit", key: "inputs/a/image.png" },
      { job_id: "edit", key: "inputs/a/mask.png" },
    ]);
    sqlite.close();
  });

  test("a failing migration rolls back entirely", () => {
    const path = dbPath();
    const sqlite = new Database(path, { create: true });
    const broken = [
      {
        tag: "x",
        when: 1,
        hash: "h",
        statements: ["CREATE TABLE t1 (id INTEGER)", "CREATE TABLE t1 (id INTEGER)"],
      },
    ];
    expect(() => applyMigrations(sqlite, broken)).toThrow("already exists");
    expect(sqlite.query("SELECT name FROM sqlite_master WHERE name = 't1'").all()).toEqual([]);
    expect(sqlite.query("SELECT count(*) AS n FROM __drizzle_migrations").get()).toEqual({ n: 0 });
    sqlite.close();
  });
});
