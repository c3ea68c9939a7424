import { afterEach, describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { drizzle } from "drizzle-orm/bun-sql";
import { migrate } from "drizzle-orm/bun-sql/migrator";
import { ConfigError, loadConfig } from "../../src/config";
import { MigrationMismatchError } from "../../src/db/migrate";
import { migratePg, pgMigrations } from "../../src/db/pg/migrate";
import { expectExit, runEasel, tempDir } from "../helpers";
import { freshPgDatabase, type PgTestDb } from "./pg-helpers";

const FOLDER = join(import.meta.dir, "..", "..", "src", "db", "migrations-pg");

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});
async function database(): Promise<PgTestDb> {
  const db = await freshPgDatabase();
  cleanups.push(db.drop);
  return db;
}
function dataDir(): string {
  const t = tempDir("easel-pg-");
  cleanups.push(t.cleanup);
  return t.dir;
}

async function bookkeeping(db: PgTestDb): Promise<[string, number][]> {
  const rows = await db.sql`SELECT hash, created_at FROM drizzle.__drizzle_migrations ORDER BY created_at`;
  return rows.map((r: { hash: string; created_at: string }) => [r.hash, Number(r.created_at)]);
}
async function tables(db: PgTestDb): Promise<string[]> {
  const rows = await db.sql`SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename`;
  return rows.map((r: { tablename: string }) => r.tablename);
}
/** Every table and trigger of the public schema, by name. */
async function objects(db: PgTestDb): Promise<string[]> {
  const rows = await db.sql`
    SELECT 'table ' || tablename AS name FROM pg_tables WHERE schemaname = 'public'
    UNION ALL SELECT 'trigger ' || tgname FROM pg_trigger WHERE NOT tgisinternal ORDER BY name`;
  return rows.map((r: { name: string }) => r.name);
}

async function triggers(db: PgTestDb): Promise<string[]> {
  const rows = await db.sql`SELECT tgname FROM pg_trigger WHERE NOT tgisinternal ORDER BY tgname`;
  return rows.map((r: { tgname: string }) => r.tgname);
}

describe("PostgreSQL migrations", () => {
  test("embed every migration of src/db/migrations-pg's journal, with drizzle's hashes", () => {
    const journal = JSON.parse(readFileSync(join(FOLDER, "meta", "_journal.json"), "utf8")) as {
      dialect: string;
      entries: { tag: string; when: number }[];
    };
    expect(journal.dialect).toBe("postgresql");
    const files = readdirSync(FOLDER).filter((f) => f.endsWith(".sql"));
    const embedded = pgMigrations();
    expect(embedded.map((m) => `${m.tag}.sql`).sort()).toEqual(files.sort());
    expect(embedded.map((m) => [m.tag, m.when])).toEqual(journal.entries.map((e) => [e.tag, e.when]));
    for (const m of embedded) {
      const sql = readFileSync(join(FOLDER, `${m.tag}.sql`), "utf8");
      expect(m.hash).toBe(new Bun.CryptoHasher("sha256").update(sql).digest("hex"));
    }
  });

  test("a fresh database gets every migration once; a second run applies nothing", async () => {
    const db = await database();
    const applied = await migratePg(db.sql);
    expect(applied.map((m) => m.tag)).toEqual(pgMigrations().map((m) => m.tag));
    expect(await tables(db)).toContain("jobs");
    expect(await triggers(db)).toEqual(["jobs_counts_ended_delete"]);
    const recorded = await bookkeeping(db);
    expect(recorded).toEqual(pgMigrations().map((m) => [m.hash, m.when]));
    expect(await migratePg(db.sql)).toEqual([]);
    expect(await bookkeeping(db)).toEqual(recorded);
  });

  test("a database migrated by drizzle's own migrator is recognised: nothing is applied twice", async () => {
    const db = await database();
    await migrate(drizzle({ client: db.sql }), { migrationsFolder: FOLDER });
    const before = await bookkeeping(db);
    expect(before).toEqual(pgMigrations().map((m) => [m.hash, m.when]));
    expect(await migratePg(db.sql)).toEqual([]);
    expect(await bookkeeping(db)).toEqual(before);
  });

  test("refuses a database migrated by a newer version, and applies nothing of its own", async () => {
    const db = await database();
    const all = pgMigrations();
    // As released with only its first migration; then a newer Easel records one this build lacks.
    await migratePg(db.sql, all.slice(0, 1));
    const newer = all.at(-1)!.when + 60_000;
    await db.sql`INSERT INTO drizzle.__drizzle_migrations (hash, created_at) VALUES ('f00d', ${newer})`;
    const before = await bookkeeping(db);
    const built = await objects(db);
    const refused = await migratePg(db.sql).catch((err) => err);
    expect(refused).toBeInstanceOf(MigrationMismatchError);
    expect(refused.kind).toBe("newer");
    expect(refused.message).toContain("newer version of Easel");
    expect(await bookkeeping(db)).toEqual(before);
    // The last migration's objects were not created.
    expect(await objects(db)).toEqual(built);
    expect(built.length).toBeGreaterThan(10);
  });

  test("refuses a database whose applied migration was edited since, naming the PostgreSQL file", async () => {
    const db = await database();
    await migratePg(db.sql);
    await db.sql`UPDATE drizzle.__drizzle_migrations SET hash = 'edited' WHERE created_at = ${pgMigrations()[0]!.when}`;
    const refused = await migratePg(db.sql).catch((err) => err);
    expect(refused).toBeInstanceOf(MigrationMismatchError);
    expect(refused.kind).toBe("tampered");
    expect(refused.message).toContain(`src/db/migrations-pg/${pgMigrations()[0]!.tag}.sql`);
  });

  test("the job-count trigger takes back a deleted ended job's counts, except inside a deferred transaction", async () => {
    const db = await database();
    await migratePg(db.sql);
    const { sql } = db;
    await sql`INSERT INTO users (id, name, role, created_at, updated_at) VALUES
      ('app', 'App', 'app', 1, 1), ('u1', 'U1', 'user', 1, 1)`;
    await sql`UPDATE users SET parent_id = 'app' WHERE id = 'u1'`;
    for (const [id, status] of [
      ["j1", "completed"],
      ["j2", "completed"],
      ["j3", "failed"],
      ["j4", "queued"],
    ] as const) {
      const finishedAt = status === "queued" ? null : 2;
      await sql`INSERT INTO jobs (id, type, status, input, max_attempts, run_at, owner_id, created_at, updated_at, finished_at)
        VALUES (${id}, 'generate', ${status}, '{}'::jsonb, 3, 1, 'u1', 1, 1, ${finishedAt})`;
    }
    // What the store writes when those jobs end.
    await sql`INSERT INTO job_counts (scope, type, status, n) VALUES
      ('', 'generate', 'completed', 2), ('u:u1', 'generate', 'completed', 2), ('c:app', 'generate', 'completed', 2),
      ('', 'generate', 'failed', 1), ('u:u1', 'generate', 'failed', 1), ('c:app', 'generate', 'failed', 1)`;
    const counts = async () =>
      Object.fromEntries(
        (await sql`SELECT scope, status, n FROM job_counts ORDER BY scope, status`).map(
          (r: { scope: string; status: string; n: string }) => [`${r.scope}/${r.status}`, Number(r.n)],
        ),
      );

    await sql`DELETE FROM jobs WHERE id IN ('j1', 'j3', 'j4')`;
    expect(await counts()).toEqual({
      "/completed": 1,
      "/failed": 0,
      "c:app/completed": 1,
      "c:app/failed": 0,
      "u:u1/completed": 1,
      "u:u1/failed": 0,
    });

    // A retention slice counts its own deletes: the marker row makes the trigger stand aside.
    await sql.begin(async (tx) => {
      await tx`INSERT INTO job_counts_deferred (id) VALUES (1)`;
      await tx`DELETE FROM jobs WHERE id = 'j2'`;
      await tx`DELETE FROM job_counts_deferred`;
    });
    expect((await counts())["/completed"]).toBe(1);
  });
});

describe("easel migrate and serve with DATABASE_URL", () => {
  test("easel migrate applies PostgreSQL's migrations, saying which; run again, it has nothing to do", async () => {
    const db = await database();
    const dir = dataDir();
    const first = await runEasel(dir, ["migrate"], { DATABASE_URL: db.url });
    expectExit(first, 0);
    const tags = pgMigrations().map((m) => m.tag);
    for (const tag of tags) expect(first.stdout).toContain(`applied ${tag}\n`);
    expect(first.stdout).toContain("migrated postgres://easel:***@");
    expect(first.stdout).not.toContain(":easel@"); // the password is never printed
    expect(await bookkeeping(db)).toHaveLength(tags.length);

    const again = await runEasel(dir, ["migrate"], { DATABASE_URL: db.url });
    expectExit(again, 0);
    expect(again.stdout).toContain("is up to date: no migration to apply");
    expect(existsSync(join(dir, "easel.db"))).toBe(false); // PostgreSQL only: no SQLite file on the side
  });

  test("several `easel migrate` processes started at once apply each migration exactly once", async () => {
    const db = await database();
    const dir = dataDir();
    const runs = await Promise.all(
      Array.from({ length: 4 }, () => runEasel(dir, ["migrate"], { DATABASE_URL: db.url })),
    );
    for (const run of runs) expectExit(run, 0);
    const applied = runs.flatMap((r) => [...r.stdout.matchAll(/^applied (\S+)$/gm)].map((m) => m[1]));
    expect(applied.sort()).toEqual(pgMigrations().map((m) => m.tag));
    expect(await bookkeeping(db)).toEqual(pgMigrations().map((m) => [m.hash, m.when]));
  });

  test("easel migrate refuses a database from a newer version in one line, exit 2", async () => {
    const db = await database();
    await migratePg(db.sql);
    await db.sql`INSERT INTO drizzle.__drizzle_migrations (hash, created_at) VALUES ('f00d', ${pgMigrations().at(-1)!.when + 1})`;
    const run = await runEasel(dataDir(), ["migrate"], { DATABASE_URL: db.url });
    expectExit(run, 2);
    expect(run.stderr.trim().split("\n")).toHaveLength(1);
    expect(run.stderr).toContain("was migrated by a newer version of Easel");
    expect(run.stderr).toStartWith("postgres://easel:***@");
  });

  test("easel migrate on an unreachable server fails in one line naming it, without the password", async () => {
    const run = await runEasel(dataDir(), ["migrate"], {
      DATABASE_URL: "postgres://easel:s3cret@127.0.0.1:1/easel",
    });
    expectExit(run, 2);
    expect(run.stderr.trim().split("\n")).toHaveLength(1);
    expect(run.stderr).toContain("postgres://easel:***@127.0.0.1:1/easel cannot be reached");
    expect(run.stderr).not.toContain("s3cret");
  });

  test("CLI commands with DATABASE_URL work on PostgreSQL, and never fall back to SQLite", async () => {
    const db = await database();
    const dir = dataDir();
    const env = { DATABASE_URL: db.url, STORAGE_SHARED: "true" };
    const created = await runEasel(dir, ["users", "create", "--name", "pg-user", "--role", "user"], env);
    expectExit(created, 0);
    const [{ n }] = await db.sql`SELECT count(*)::int AS n FROM users WHERE name = 'pg-user'`;
    expect(n).toBe(1);
    const status = await runEasel(dir, ["queue", "status", "--json"], env);
    expectExit(status, 0);
    expect(JSON.parse(status.stdout)).toMatchObject({ waiting: 0, active: 0 });
    const upkeep = await runEasel(dir, ["db", "stats"], env);
    expectExit(upkeep, 0);
    expect(upkeep.stdout).toContain("PostgreSQL");
    expect(upkeep.stdout).toMatch(/^users\s/m);
    expect(readdirSync(dir).filter((f) => f.startsWith("easel.db"))).toEqual([]); // no SQLite file
  });

  test("DATABASE_URL must name PostgreSQL; a bad one is refused without echoing it", () => {
    expect(loadConfig({ DATABASE_URL: "postgresql://u:p@db:5432/easel" }).DATABASE_URL).toBe(
      "postgresql://u:p@db:5432/easel",
    );
    let error: unknown;
    try {
      loadConfig({ DATABASE_URL: "mysql://u:hunter22@db/easel" });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).toContain("DATABASE_URL");
    expect((error as Error).message).toContain("must be a postgres:// or postgresql:// URL");
    expect((error as Error).message).not.toContain("hunter22");
  });
});
