/**
 * `easel db` on PostgreSQL, through the real CLI on a fresh database: `stats` reports the database and each of
 * Easel's tables (size, rows, dead rows, last vacuum) from PostgreSQL's own statistics, and `vacuum` says it
 * is SQLite's one-off and autovacuum's business here.
 */
import { afterAll, describe, expect, test } from "bun:test";
import type { PgDbStats } from "../../src/db/pg/stats";
import { freshPgDatabase, type PgTestDb } from "../db/pg-helpers";
import { expectExit, runEasel, tempDir, waitFor } from "../helpers";

const cleanups: (() => unknown)[] = [];
afterAll(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function database(): Promise<{ db: PgTestDb; dir: string }> {
  const db = await freshPgDatabase();
  cleanups.push(db.drop);
  const tmp = tempDir("easel-db-pg-");
  cleanups.push(tmp.cleanup);
  return { db, dir: tmp.dir };
}

describe("easel db on PostgreSQL", () => {
  test("stats: each table's size, rows and dead rows, and when it was last vacuumed", async () => {
    const { db, dir } = await database();
    const env = { DATABASE_URL: db.url };
    // The first run migrates the empty database.
    const empty = await runEasel(dir, ["db", "stats", "--json"], env);
    expectExit(empty, 0);
    expect((JSON.parse(empty.stdout) as PgDbStats).tables.map((t) => t.table)).toContain("jobs");

    // No autovacuum on it during the test: it would reclaim the dead rows at any moment.
    await db.sql`ALTER TABLE users SET (autovacuum_enabled = false)`;
    await db.sql.unsafe(
      `INSERT INTO users (id, name, role, credits, unlimited, created_at, updated_at)
       SELECT 'u' || i, 'user ' || i, 'user', 0, false, 0, 0 FROM generate_series(1, 300) i`,
    );
    await db.sql`DELETE FROM users WHERE substr(id, 2)::int > 100`;
    // A backend hands its counts to the statistics within a second or so of going idle.
    await waitFor(
      async () =>
        Number(
          (
            await db.sql`SELECT coalesce(max(n_dead_tup), 0)::int AS n FROM pg_stat_user_tables WHERE relname = 'users'`
          )[0].n,
        ) === 200,
      { timeoutMs: 20_000, what: "the DELETE's dead rows in pg_stat_user_tables" },
    );
    const run = await runEasel(dir, ["db", "stats", "--json"], env);
    expectExit(run, 0);
    const stats = JSON.parse(run.stdout) as PgDbStats;
    expect(stats.backend).toBe("postgres");
    expect(stats.where).not.toContain(":easel@"); // no password
    expect(stats.version).toMatch(/^\d+/);
    expect(stats.databaseBytes).toBeGreaterThan(0);
    expect(stats.autovacuum).toBe(true);
    const users = stats.tables.find((t) => t.table === "users")!;
    expect(users).toMatchObject({ rows: 100, deadRows: 200, lastVacuumAt: null, lastAnalyzeAt: null });
    expect(users.bytes).toBeGreaterThan(0);
    expect(users.indexBytes).toBeGreaterThan(0);
    expect(stats.deadRows).toBeGreaterThanOrEqual(200);
    // Largest first, as SQLite's report.
    const totals = stats.tables.map((t) => t.bytes + t.indexBytes);
    expect(totals).toEqual([...totals].sort((a, b) => b - a));

    // VACUUM makes the dead rows' space reusable, and stats says when it ran.
    await db.sql`VACUUM (ANALYZE) users`;
    const after = JSON.parse((await runEasel(dir, ["db", "stats", "--json"], env)).stdout) as PgDbStats;
    const vacuumed = after.tables.find((t) => t.table === "users")!;
    expect(vacuumed.deadRows).toBe(0);
    expect(vacuumed.rows).toBe(100);
    expect(vacuumed.lastVacuumAt).toBeGreaterThan(Date.now() - 600_000);
    expect(vacuumed.lastAnalyzeAt).toBeGreaterThan(Date.now() - 600_000);

    const human = await runEasel(dir, ["db", "stats"], env);
    expectExit(human, 0);
    expect(human.stdout).toContain("dead rows:");
    expect(human.stdout).toMatch(/^users\s+\d+(\.\d KiB| B)\s/m);
    expect(human.stdout).not.toContain("0.0 MiB");
    expect(human.stdout).not.toContain(":easel@");
  }, 60_000);

  test("vacuum is SQLite's: on PostgreSQL it exits 1 naming autovacuum, and changes nothing", async () => {
    const { db, dir } = await database();
    const run = await runEasel(dir, ["db", "vacuum"], { DATABASE_URL: db.url });
    expectExit(run, 1);
    expect(run.stderr).toContain("autovacuum");
    expect(run.stderr.trim().split("\n")).toHaveLength(1);
  }, 60_000);
});
