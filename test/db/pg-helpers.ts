import { afterAll, afterEach } from "bun:test";
import { SQL } from "bun";
import { redactUrl } from "../../src/db/pg/client";
import { migratePg } from "../../src/db/pg/migrate";
import { scratchDatabase } from "./pg-database";

/** What scripts/pg-test-cluster.sh prints; used when EASEL_TEST_DATABASE_URL is unset. */
const DEFAULT_URL = "postgres://easel:easel@127.0.0.1:5432/easel_test";
const HINT = 'start it with: export EASEL_TEST_DATABASE_URL="$(scripts/pg-test-cluster.sh)"';

/** The test server's maintenance database (EASEL_TEST_DATABASE_URL). */
export const PG_TEST_URL = process.env.EASEL_TEST_DATABASE_URL || DEFAULT_URL;

let counter = 0;

export type PgTestDb = { url: string; sql: SQL; drop: () => Promise<void> };

/**
 * A new empty database on the test server, for one test; `drop` closes the pool and removes it. Throws a
 * one-line hint on how to start PostgreSQL when the server is unreachable: these tests fail, never skip.
 */
export async function freshPgDatabase(opts: { template?: string; max?: number } = {}): Promise<PgTestDb> {
  const admin = new SQL(PG_TEST_URL, { max: 1 });
  try {
    await admin`SELECT 1`;
  } catch (err) {
    await admin.close().catch(() => {});
    throw new Error(
      `PostgreSQL is unreachable at ${redactUrl(PG_TEST_URL)} (${(err as Error).message}): ${HINT}`,
    );
  }
  const name = `easel_t_${process.pid}_${++counter}_${Math.random().toString(36).slice(2, 8)}`;
  const db = await scratchDatabase(PG_TEST_URL, name, { template: opts.template, admin });
  const sql = new SQL(db.url, { max: opts.max ?? 4 });
  return {
    url: db.url,
    sql,
    drop: async () => {
      await sql.close().catch(() => {});
      await db.drop();
    },
  };
}

/**
 * For a test file whose tests each take fresh databases: `database()` makes one that is dropped after the test,
 * and `cleanups` takes anything else to undo then (run in reverse order).
 */
export function pgDatabasePerTest(): { cleanups: (() => unknown)[]; database: () => Promise<PgTestDb> } {
  const cleanups: (() => unknown)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });
  return {
    cleanups,
    database: async () => {
      const pg = await freshPgDatabase();
      cleanups.push(pg.drop);
      return pg;
    },
  };
}

/**
 * Like `pgDatabasePerTest`, but each database starts with every migration applied: the first call migrates a
 * template database once per file, and each test's database is a copy of it (CREATE DATABASE … TEMPLATE,
 * a file copy: far faster than migrating each one). `max` sizes each test's pool.
 */
export function migratedPgDatabasePerTest(max = 8): {
  cleanups: (() => unknown)[];
  database: () => Promise<PgTestDb>;
} {
  const { cleanups } = pgDatabasePerTest();
  let template: Promise<PgTestDb> | null = null;
  afterAll(async () => {
    if (template) await (await template).drop();
  });
  return {
    cleanups,
    database: async () => {
      template ??= (async () => {
        const db = await freshPgDatabase({ max: 1 });
        await migratePg(db.sql);
        // A template must have no sessions while it is copied.
        await db.sql.close();
        return db;
      })();
      const name = new URL((await template).url).pathname.slice(1);
      const pg = await freshPgDatabase({ template: name, max });
      cleanups.push(pg.drop);
      return pg;
    },
  };
}
