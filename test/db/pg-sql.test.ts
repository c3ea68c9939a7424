/**
 * What only the PostgreSQL client does (the shared contract is test/db/transaction.test.ts): placeholder
 * translation, conflict retries, the parameter conversions' edges.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { SQL } from "bun";
import { openPostgres } from "../../src/db/open";
import {
  isPgUnavailable,
  type PgClient,
  pgSql,
  TRANSACTION_ATTEMPTS,
  toDollarParams,
} from "../../src/db/pg/sql";
import type { Sql } from "../../src/db/sql";
import { freshPgDatabase } from "./pg-helpers";

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function client(): Promise<PgClient> {
  const pg = await freshPgDatabase();
  cleanups.push(pg.drop);
  await pg.sql`CREATE TABLE t (k text PRIMARY KEY, v bigint NOT NULL, doc jsonb)`;
  return pgSql(pg.sql);
}

describe("toDollarParams", () => {
  test("numbers each ? in order", () => {
    expect(toDollarParams("SELECT * FROM t WHERE a = ? AND b IN (?, ?) LIMIT ?")).toBe(
      "SELECT * FROM t WHERE a = $1 AND b IN ($2, $3) LIMIT $4",
    );
  });

  test("leaves ? alone inside literals, quoted names, comments and dollar quotes", () => {
    const text = [
      "SELECT 'it''s ?', E'\\'?', \"we?rd\", $$?$$, $tag$ ? $tag$, x -- why?",
      "/* a ? /* nested ? */ still ? */ FROM t WHERE k = ? AND v = $1x",
    ].join("\n");
    expect(toDollarParams(text)).toBe(
      [
        "SELECT 'it''s ?', E'\\'?', \"we?rd\", $$?$$, $tag$ ? $tag$, x -- why?",
        "/* a ? /* nested ? */ still ? */ FROM t WHERE k = $1 AND v = $1x",
      ].join("\n"),
    );
  });

  test("a text without ? is returned as it is", () => {
    const text = "SELECT 1";
    expect(toDollarParams(text)).toBe(text);
  });
});

describe("PgClient", () => {
  test("a deadlock aborts one side, which runs again and commits: both transactions land", async () => {
    const sql = await client();
    await sql.run("INSERT INTO t (k, v) VALUES ('x', 0), ('y', 0)");
    const aLocked = Promise.withResolvers<void>();
    const bLocked = Promise.withResolvers<void>();
    let runs = 0;
    // A locks x then y, B locks y then x: PostgreSQL's deadlock detector aborts one (40P01).
    const side = (first: string, second: string, mine: typeof aLocked, theirs: typeof aLocked) =>
      sql.transaction(async () => {
        runs++;
        await sql.run("UPDATE t SET v = v + 1 WHERE k = ?", [first]);
        mine.resolve();
        await theirs.promise;
        await sql.run("UPDATE t SET v = v + 1 WHERE k = ?", [second]);
      });
    await Promise.all([side("x", "y", aLocked, bLocked), side("y", "x", bLocked, aLocked)]);
    // Two first runs and at least one more (on a loaded machine a retry may meet the winner again).
    expect(runs).toBeGreaterThanOrEqual(3);
    expect(await sql.all("SELECT k, v FROM t ORDER BY k")).toEqual([
      { k: "x", v: 2 },
      { k: "y", v: 2 },
    ]);
  });

  test(`a transaction that keeps failing to serialize runs ${TRANSACTION_ATTEMPTS} times, then throws`, async () => {
    const sql = await client();
    let runs = 0;
    let committed = 0;
    const err = await sql
      .transaction(async () => {
        runs++;
        sql.afterCommit(() => committed++);
        await sql.run("INSERT INTO t (k, v) VALUES (?, ?)", [`run-${runs}`, runs]);
        await sql.run(
          "DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = 'serialization_failure'; END $$",
        );
      })
      .catch((e: unknown) => e);
    expect(runs).toBe(TRANSACTION_ATTEMPTS);
    expect(err).toMatchObject({ errno: "40001" });
    expect(committed).toBe(0);
    expect(await sql.all("SELECT k FROM t")).toEqual([]);
  });

  test("other errors are not retried", async () => {
    const sql = await client();
    let runs = 0;
    await expect(
      sql.transaction(async () => {
        runs++;
        await sql.run("INSERT INTO missing (k) VALUES (?)", ["a"]);
      }),
    ).rejects.toMatchObject({ errno: "42P01" });
    expect(runs).toBe(1);
  });

  test("JSON text binds as JSON; text that is not JSON is refused with the parameter named", async () => {
    const sql = await client();
    for (const [k, doc] of [
      ["object", '{"a":[1,2]}'],
      ["string", '"hello"'],
      ["number", "42"],
      ["null", "null"],
    ] as const) {
      await sql.run("INSERT INTO t (k, v, doc) VALUES (?, ?, ?)", [k, 1, doc]);
    }
    const types = await sql.all("SELECT k, jsonb_typeof(doc) AS type FROM t ORDER BY k");
    expect(types).toEqual([
      { k: "null", type: "null" },
      { k: "number", type: "number" },
      { k: "object", type: "object" },
      { k: "string", type: "string" },
    ]);
    await expect(
      sql.run("INSERT INTO t (k, v, doc) VALUES (?, ?, ?)", ["bad", 1, "not json"]),
    ).rejects.toThrow(
      'parameter 3 is a JSON column: bind JSON text (JSON.stringify of the value), not "not json"',
    );
  });

  test("a parameter the server cannot type alone is bound by its value", async () => {
    const sql = await client();
    // PREPARE cannot type `? IS NULL` (42P18): Bun's own typing of the value is used (a null has none).
    expect(await sql.get("SELECT ? IS NULL AS missing", [5])).toEqual({ missing: false });
    expect(await sql.get("SELECT ? + 1 AS n", [2 ** 40])).toEqual({ n: 2 ** 40 + 1 });
  });

  test("a number bound where the server expects text is bound as its digits", async () => {
    const sql = await client();
    await sql.run("INSERT INTO t (k, v) VALUES (?, ?)", [12, 1]);
    expect(await sql.get("SELECT k FROM t WHERE k = ?", [12])).toEqual({ k: "12" });
  });

  test("a statement that fails inside a transaction rolls it back with its own error", async () => {
    const sql = await client();
    await expect(
      sql.transaction(async () => {
        await sql.run("INSERT INTO t (k, v) VALUES (?, ?)", ["a", 1]);
        await sql.run("UPDATE missing SET k = ?", ["a"]);
      }),
    ).rejects.toThrow('relation "missing" does not exist');
    expect(await sql.all("SELECT k FROM t")).toEqual([]);
  });

  test("a transaction's statements run on one connection, statements outside it on the pool", async () => {
    const sql = await client();
    const pids = await sql.transaction(async () => {
      const a = await sql.get<{ pid: number }>("SELECT pg_backend_pid() AS pid");
      await Promise.resolve();
      const b = await sql.get<{ pid: number }>("SELECT pg_backend_pid() AS pid");
      const outside = await sql.outside(() => sql.get<{ pid: number }>("SELECT pg_backend_pid() AS pid"));
      return { a: a!.pid, b: b!.pid, outside: outside!.pid };
    });
    expect(pids.a).toBe(pids.b);
    expect(pids.outside).not.toBe(pids.a);
  });
});

describe("isPgUnavailable", () => {
  /** The error `fn` throws (it must throw). */
  async function thrown(fn: () => Promise<unknown>): Promise<unknown> {
    try {
      await fn();
    } catch (err) {
      return err;
    }
    throw new Error("expected an error");
  }

  test("a server that cannot serve: refused, shut down or closed to connections (the client's real errors)", async () => {
    const refused = new SQL("postgres://easel:easel@127.0.0.1:1/none", { max: 1, connectionTimeout: 5 });
    expect(isPgUnavailable(await thrown(() => refused`SELECT 1`))).toBe(true);
    await refused.close().catch(() => {});

    const db = await freshPgDatabase();
    cleanups.push(db.drop);
    const conn = await db.sql.reserve();
    const [{ pid }] = await conn`SELECT pg_backend_pid() AS pid`;
    await db.sql`SELECT pg_terminate_backend(${pid})`;
    const terminated = await thrown(() => conn`SELECT 1`); // 57P01 admin_shutdown
    expect(isPgUnavailable(terminated)).toBe(true);
    // Wrapped, as a caller may rethrow it.
    expect(isPgUnavailable(new Error("claim failed", { cause: terminated }))).toBe(true);
    conn.release();
  });

  test("a statement's own errors are not: constraint, syntax, timeout, serialization", async () => {
    const db = await freshPgDatabase();
    cleanups.push(db.drop);
    await db.sql`CREATE TABLE t (id int PRIMARY KEY)`;
    await db.sql`INSERT INTO t VALUES (1)`;
    for (const fn of [
      () => db.sql`INSERT INTO t VALUES (1)`, // 23505
      () => db.sql.unsafe("SELEC 1"), // 42601
      () =>
        db.sql.begin(async (tx) => {
          await tx`SET LOCAL statement_timeout = 20`;
          await tx`SELECT pg_sleep(1)`; // 57014
        }),
    ]) {
      expect(isPgUnavailable(await thrown(fn))).toBe(false);
    }
    expect(isPgUnavailable(Object.assign(new Error("could not serialize"), { errno: "40001" }))).toBe(false);
    expect(isPgUnavailable(new Error("plain"))).toBe(false);
  });
});

describe("openPostgres", () => {
  test("every connection it opens runs without JIT compilation (short statements pay its compile time)", async () => {
    const pg = await freshPgDatabase();
    cleanups.push(pg.drop);
    const db = await openPostgres(pg.url);
    cleanups.push(db.close);
    if (db.backend !== "postgres") throw new Error("expected PostgreSQL");
    // Several at once, so more than one of each pool's connections answers.
    const pools: Sql[] = [db.sql, db.relaxed, db.sql, db.relaxed];
    const shown = await Promise.all(pools.map((s) => s.get<{ jit: string }>("SHOW jit")));
    expect(shown.map((r) => r?.jit)).toEqual(["off", "off", "off", "off"]);
  });
});
