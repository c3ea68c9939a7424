/**
 * The contract of `Sql` (src/db/sql.ts), one suite run against both clients: a SQLite file and a PostgreSQL
 * database on the test server. Where the two cannot agree (SQLite runs one writer at a time, PostgreSQL runs
 * transactions side by side) the backend's `serialWriters` says which answer is expected; sql.ts states the
 * rule repositories follow so that either answer is correct for them.
 */
import { Database } from "bun:sqlite";
import { afterEach, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { getTableColumns, type InferSelectModel, type Table } from "drizzle-orm";
import { openDb } from "../../src/db/client";
import { migratePg } from "../../src/db/pg/migrate";
import { pgSql } from "../../src/db/pg/sql";
import { columnList, rowAsInserted, rowMapper } from "../../src/db/rows";
import { jobs, jobThroughput, users } from "../../src/db/schema";
import { type Sql, type SqlParam, UniqueViolation } from "../../src/db/sql";
import { sqliteClient } from "../../src/db/sqlite";
import { tempDir } from "../helpers";
import { freshPgDatabase } from "./pg-helpers";

/** What both clients offer beyond the interface: whether the caller is inside, and a way out. */
type Client = Sql & { readonly inside: boolean; outside<T>(fn: () => T): T };

type Backend = {
  name: string;
  /** SQLite: a statement outside the open transaction waits for it; PostgreSQL: it runs at once. */
  serialWriters: boolean;
  /** A client on a fresh database holding one table `t (k text primary key, v integer)`. */
  withTable(): Promise<Client>;
  /** A client on a fresh database with Easel's migrations applied. */
  migrated(): Promise<Client>;
};

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const sqlite: Backend = {
  name: "SQLite",
  serialWriters: true,
  async withTable() {
    const tmp = tempDir("easel-tx-");
    const db = new Database(join(tmp.dir, "t.db"), { create: true, strict: true });
    db.exec("PRAGMA journal_mode = WAL");
    db.exec("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER NOT NULL)");
    cleanups.push(() => {
      db.close();
      tmp.cleanup();
    });
    return sqliteClient(db);
  },
  async migrated() {
    const tmp = tempDir("easel-tx-");
    const db = openDb(join(tmp.dir, "easel.db"));
    cleanups.push(() => {
      db.$client.close();
      tmp.cleanup();
    });
    return sqliteClient(db.$client);
  },
};

const postgres: Backend = {
  name: "PostgreSQL",
  serialWriters: false,
  async withTable() {
    const pg = await freshPgDatabase();
    cleanups.push(pg.drop);
    await pg.sql`CREATE TABLE t (k text PRIMARY KEY, v bigint NOT NULL)`;
    return pgSql(pg.sql);
  },
  async migrated() {
    const pg = await freshPgDatabase();
    cleanups.push(pg.drop);
    await migratePg(pg.sql);
    return pgSql(pg.sql);
  },
};

/** A latch a test opens by hand: code awaiting `wait` is suspended exactly until `open()`. */
function latch() {
  const { promise, resolve } = Promise.withResolvers<void>();
  return { wait: promise, open: () => resolve() };
}

const keys = async (sql: Sql) => (await sql.all<{ k: string }>("SELECT k FROM t ORDER BY k")).map((r) => r.k);

/** A row's values in column order, each encoded by its column as a repository binds it (JSON text, 0/1). */
function encoded<T extends Table>(table: T, row: InferSelectModel<T>): SqlParam[] {
  return Object.entries(getTableColumns(table)).map(([key, column]) => {
    const v = (row as Record<string, unknown>)[key];
    return v == null ? null : (column.mapToDriverValue(v) as SqlParam);
  });
}

function insertAll(table: Table, name: string): string {
  const n = Object.keys(getTableColumns(table)).length;
  return `INSERT INTO ${name} (${columnList(table)}) VALUES (${Array(n).fill("?").join(", ")})`;
}

describe.each([sqlite, postgres])("Sql on $name", (backend) => {
  test("concurrent transactions never see each other's writes before commit", async () => {
    const sql = await backend.withTable();
    const aWrote = latch();
    const bRead = latch();
    const release = latch();
    const seenByB: string[][] = [];
    const a = sql.transaction(async () => {
      await sql.run("INSERT INTO t (k, v) VALUES (?, ?)", ["a", 1]);
      aWrote.open();
      await release.wait;
      return "a";
    });
    await aWrote.wait;
    const b = sql.transaction(async () => {
      seenByB.push(await keys(sql));
      bRead.open();
      await sql.run("INSERT INTO t (k, v) VALUES (?, ?)", ["b", 2]);
      return "b";
    });
    // PostgreSQL runs B beside A (it reads before A commits); SQLite queues B behind A (it cannot read yet).
    if (!backend.serialWriters) await bRead.wait;
    release.open();
    expect(await Promise.all([a, b])).toEqual(["a", "b"]);
    // Either way, B never saw a half-done A.
    expect(seenByB).toEqual(backend.serialWriters ? [["a"]] : [[]]);
    expect(await keys(sql)).toEqual(["a", "b"]);
  });

  test("a statement outside the open transaction never reads its uncommitted writes", async () => {
    const sql = await backend.withTable();
    const wrote = latch();
    const release = latch();
    const tx = sql.transaction(async () => {
      await sql.run("INSERT INTO t (k, v) VALUES (?, ?)", ["inside", 1]);
      wrote.open();
      await release.wait;
    });
    await wrote.wait;
    let read: string[] | null = null;
    const outsideRead = keys(sql).then((k) => {
      read = k;
    });
    if (backend.serialWriters) {
      // SQLite: the read waits for the transaction to end, then sees its committed row.
      for (let i = 0; i < 20; i++) await Promise.resolve();
      expect(read).toBeNull();
      release.open();
      await Promise.all([tx, outsideRead]);
      expect(read as string[] | null).toEqual(["inside"]);
    } else {
      // PostgreSQL: the read runs at once on another connection, and sees only committed rows.
      await outsideRead;
      expect(read as string[] | null).toEqual([]);
      release.open();
      await tx;
      expect(await keys(sql)).toEqual(["inside"]);
    }
  });

  test("a rolled-back transaction loses only its own writes; an autocommit statement issued during its suspension is kept", async () => {
    const sql = await backend.withTable();
    const wrote = latch();
    const release = latch();
    const failing = sql.transaction(async () => {
      await sql.run("INSERT INTO t (k, v) VALUES (?, ?)", ["mine", 1]);
      wrote.open();
      await release.wait;
      throw new Error("refused");
    });
    await wrote.wait;
    // Another request's statement, issued while the transaction is suspended at an await.
    const foreign = sql.run("INSERT INTO t (k, v) VALUES (?, ?)", ["theirs", 2]);
    if (!backend.serialWriters) expect((await foreign).changes).toBe(1);
    release.open();
    await expect(failing).rejects.toThrow("refused");
    expect((await foreign).changes).toBe(1);
    expect(await keys(sql)).toEqual(["theirs"]);
  });

  test("nested transaction() calls join the outer one and roll back with it", async () => {
    const sql = await backend.withTable();
    const outer = sql.transaction(async () => {
      await sql.run("INSERT INTO t (k, v) VALUES (?, ?)", ["outer", 1]);
      await sql.transaction(async () => {
        // Joined, not queued behind the outer one (that would never end): it sees the outer row.
        expect(await keys(sql)).toEqual(["outer"]);
        await sql.run("INSERT INTO t (k, v) VALUES (?, ?)", ["inner", 2]);
      });
      throw new Error("undo both");
    });
    await expect(outer).rejects.toThrow("undo both");
    expect(await keys(sql)).toEqual([]);
  });

  test("a savepoint rolls back only its own writes and keeps the transaction going", async () => {
    const sql = await backend.withTable();
    await sql.transaction(async () => {
      await sql.run("INSERT INTO t (k, v) VALUES (?, ?)", ["kept", 1]);
      await expect(
        sql.savepoint(async () => {
          await sql.run("INSERT INTO t (k, v) VALUES (?, ?)", ["dropped", 2]);
          throw new Error("hook failed");
        }),
      ).rejects.toThrow("hook failed");
      await sql.run("INSERT INTO t (k, v) VALUES (?, ?)", ["after", 3]);
    });
    expect(await keys(sql)).toEqual(["after", "kept"]);
  });

  test("a savepoint outside a transaction is a transaction of its own", async () => {
    const sql = await backend.withTable();
    await expect(
      sql.savepoint(async () => {
        await sql.run("INSERT INTO t (k, v) VALUES (?, ?)", ["gone", 1]);
        throw new Error("no");
      }),
    ).rejects.toThrow("no");
    await sql.savepoint(() => sql.run("INSERT INTO t (k, v) VALUES (?, ?)", ["kept", 1]));
    expect(await keys(sql)).toEqual(["kept"]);
  });

  test("a timer scheduled inside a transaction runs outside it once it has ended", async () => {
    const sql = await backend.withTable();
    const fired = latch();
    let insideWhenFired: boolean | null = null;
    let seen: string[] | null = null;
    await sql.transaction(async () => {
      await sql.run("INSERT INTO t (k, v) VALUES (?, ?)", ["tx", 1]);
      setTimeout(async () => {
        insideWhenFired = sql.inside;
        // Runs as its own autocommit statement: a failure here could not undo the committed row.
        await sql.run("INSERT INTO t (k, v) VALUES (?, ?)", ["timer", 2]);
        seen = await keys(sql);
        fired.open();
      }, 0);
    });
    await fired.wait;
    expect(insideWhenFired as boolean | null).toBe(false);
    expect(seen as string[] | null).toEqual(["timer", "tx"]);
  });

  test("work started through outside() while a transaction is still open never joins it", async () => {
    const sql = await backend.withTable();
    const release = latch();
    const timerFired = latch();
    const timerRan = latch();
    const tx = sql.transaction(async () => {
      await sql.run("INSERT INTO t (k, v) VALUES (?, ?)", ["tx", 1]);
      // What the worker pool does with the ticks it schedules: they must never count as inside a caller's work.
      setTimeout(() => {
        timerFired.open();
        void sql
          .outside(() => sql.run("INSERT INTO t (k, v) VALUES (?, ?)", ["timer", 2]))
          .then(() => timerRan.open());
      }, 0);
      await release.wait;
      throw new Error("rolled back");
    });
    await timerFired.wait;
    release.open();
    await expect(tx).rejects.toThrow("rolled back");
    await timerRan.wait;
    expect(await keys(sql)).toEqual(["timer"]);
  });

  test("afterCommit runs after a commit, never after a rollback, and at once outside a transaction", async () => {
    const sql = await backend.withTable();
    const seen: string[] = [];
    sql.afterCommit(() => seen.push("outside"));
    await sql.transaction(async () => {
      sql.afterCommit(() => seen.push("committed"));
      expect(seen).toEqual(["outside"]);
    });
    await sql
      .transaction(async () => {
        sql.afterCommit(() => seen.push("rolled back"));
        throw new Error("no");
      })
      .catch(() => undefined);
    expect(seen).toEqual(["outside", "committed"]);
  });

  test("many concurrent transactions interleaved with autocommit statements all land exactly once", async () => {
    const sql = await backend.withTable();
    await sql.run("INSERT INTO t (k, v) VALUES ('counter', 0)");
    const work: Promise<unknown>[] = [];
    for (let i = 0; i < 50; i++) {
      work.push(
        sql.transaction(async () => {
          // One statement reads and writes: atomic on both databases (the rule in sql.ts).
          await sql.run("UPDATE t SET v = v + 1 WHERE k = 'counter'");
          await Promise.resolve();
          await sql.run("INSERT INTO t (k, v) VALUES (?, ?)", [`tx-${i}`, i]);
        }),
      );
      work.push(sql.run("INSERT INTO t (k, v) VALUES (?, ?)", [`auto-${i}`, i]));
    }
    await Promise.all(work);
    expect((await sql.get<{ v: number }>("SELECT v FROM t WHERE k = 'counter'"))!.v).toBe(50);
    expect((await sql.get<{ n: number }>("SELECT count(*) AS n FROM t"))!.n).toBe(101);
  });

  test("a read that decides a later write locks its row first (UPDATE … RETURNING), so no update is lost", async () => {
    const sql = await backend.withTable();
    await sql.run("INSERT INTO t (k, v) VALUES ('counter', 0)");
    const work: Promise<unknown>[] = [];
    for (let i = 0; i < 30; i++) {
      work.push(
        sql.transaction(async () => {
          const row = await sql.get<{ v: number }>("UPDATE t SET v = v WHERE k = ? RETURNING v", ["counter"]);
          await Promise.resolve();
          await sql.run("UPDATE t SET v = ? WHERE k = ?", [row!.v + 1, "counter"]);
        }),
      );
    }
    await Promise.all(work);
    expect((await sql.get<{ v: number }>("SELECT v FROM t WHERE k = 'counter'"))!.v).toBe(30);
  });

  test("a duplicate key throws UniqueViolation; caught around a savepoint, the transaction goes on", async () => {
    const sql = await backend.withTable();
    await sql.run("INSERT INTO t (k, v) VALUES (?, ?)", ["a", 1]);
    const err = await sql.run("INSERT INTO t (k, v) VALUES (?, ?)", ["a", 2]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UniqueViolation);
    expect(err).toMatchObject({ name: "UniqueViolation", table: "t", columns: ["k"] });
    await sql.transaction(async () => {
      await sql.run("INSERT INTO t (k, v) VALUES (?, ?)", ["b", 1]);
      await expect(
        sql.savepoint(() => sql.run("INSERT INTO t (k, v) VALUES (?, ?)", ["a", 3])),
      ).rejects.toBeInstanceOf(UniqueViolation);
      await sql.run("INSERT INTO t (k, v) VALUES (?, ?)", ["c", 1]);
    });
    expect(await keys(sql)).toEqual(["a", "b", "c"]);
    // The transaction that met it goes on too, and a thrown UniqueViolation rolls it back whole.
    await expect(
      sql.transaction(async () => {
        await sql.run("INSERT INTO t (k, v) VALUES (?, ?)", ["d", 1]);
        await sql.run("INSERT INTO t (k, v) VALUES (?, ?)", ["a", 1]);
      }),
    ).rejects.toBeInstanceOf(UniqueViolation);
    expect(await keys(sql)).toEqual(["a", "b", "c"]);
  });

  describe("portable SQL on Easel's schema", () => {
    const now = Date.now();
    const user = (id: string, over: Partial<InferSelectModel<typeof users>> = {}) => ({
      id,
      externalId: null,
      name: `user ${id}`,
      role: "user" as const,
      parentId: null,
      credits: 0,
      unlimited: false,
      createdAt: now,
      updatedAt: now,
      ...over,
    });

    test("a row written with bound column values reads back through rowMapper exactly as written", async () => {
      const sql = await backend.migrated();
      const ada = user("u1", { credits: 2 ** 40, unlimited: true, externalId: "ext-1" });
      const job = rowAsInserted(jobs)({
        id: "j1",
        type: "generate",
        status: "failed" as const,
        input: { prompt: "a fox", n: 2, tags: ["x", "ü"], nested: { ok: true, none: null } },
        result: "just a string",
        error: { code: "provider_error", message: "boom", retryable: false, refundable: true },
        metadata: {},
        maxAttempts: 3,
        runAt: now + 2 ** 33,
        ownerId: "u1",
        createdAt: now,
        finishedAt: now + 1,
        updatedAt: now + 1,
      });
      await sql.run(insertAll(users, "users"), encoded(users, ada));
      await sql.run(insertAll(jobs, "jobs"), encoded(jobs, job));
      const toUser = rowMapper(users);
      const toJob = rowMapper(jobs);
      expect(toUser((await sql.get(`SELECT ${columnList(users)} FROM users WHERE id = ?`, ["u1"]))!)).toEqual(
        ada,
      );
      expect(toJob((await sql.get(`SELECT ${columnList(jobs)} FROM jobs WHERE id = ?`, ["j1"]))!)).toEqual(
        job,
      );
      // The same through RETURNING, after an update that binds JSON text and a number.
      const updated = await sql.get(
        `UPDATE jobs SET result = ?, progress = ? WHERE id = ? RETURNING ${columnList(jobs)}`,
        [JSON.stringify([1, "two", { three: 3 }]), 42, "j1"],
      );
      expect(toJob(updated!)).toEqual({ ...job, result: [1, "two", { three: 3 }], progress: 42 });
      // A JSON null and an SQL NULL both read as null.
      await sql.run("UPDATE jobs SET result = ?, error = ? WHERE id = ?", ["null", null, "j1"]);
      expect(toJob((await sql.get(`SELECT ${columnList(jobs)} FROM jobs`))!)).toMatchObject({
        result: null,
        error: null,
      });
    });

    test("booleans bind as 0/1 and compare with a bound value or alone; raw reads are truthy either way", async () => {
      const sql = await backend.migrated();
      for (const [id, unlimited] of [
        ["u1", true],
        ["u2", false],
        ["u3", true],
      ] as const) {
        await sql.run(insertAll(users, "users"), encoded(users, user(id, { unlimited })));
      }
      const ids = async (text: string, params: SqlParam[] = []) =>
        (await sql.all<{ id: string }>(text, params)).map((r) => r.id);
      expect(await ids("SELECT id FROM users WHERE unlimited = ? ORDER BY id", [1])).toEqual(["u1", "u3"]);
      expect(await ids("SELECT id FROM users WHERE unlimited = ? ORDER BY id", [0])).toEqual(["u2"]);
      expect(await ids("SELECT id FROM users WHERE unlimited ORDER BY id")).toEqual(["u1", "u3"]);
      expect(await ids("SELECT id FROM users WHERE NOT unlimited ORDER BY id")).toEqual(["u2"]);
      expect(await ids("SELECT id FROM users WHERE unlimited = TRUE ORDER BY id")).toEqual(["u1", "u3"]);
      await sql.run("UPDATE users SET unlimited = ? WHERE id = ?", [0, "u1"]);
      const raw = await sql.get<{ unlimited: unknown }>("SELECT unlimited FROM users WHERE id = ?", ["u3"]);
      expect(Boolean(raw!.unlimited)).toBe(true);
      expect(
        rowMapper(users)((await sql.get(`SELECT ${columnList(users)} FROM users WHERE id = 'u1'`))!)
          .unlimited,
      ).toBe(false);
    });

    test("epoch-ms times and amounts beyond 2^31, counts and sums come back as numbers", async () => {
      const sql = await backend.migrated();
      const big = 2 ** 40 + 7;
      await sql.run(insertAll(users, "users"), encoded(users, user("u1", { credits: big, createdAt: now })));
      await sql.run(
        insertAll(users, "users"),
        encoded(users, user("u2", { credits: 1, createdAt: now + 1 })),
      );
      const row = await sql.get<{ n: unknown; total: unknown; newest: unknown; credits: unknown }>(
        "SELECT count(*) AS n, sum(credits) AS total, max(created_at) AS newest, min(credits) AS credits FROM users WHERE created_at >= ?",
        [now],
      );
      expect(row).toEqual({ n: 2, total: big + 1, newest: now + 1, credits: 1 });
      expect(await sql.get("SELECT credits + ? AS c FROM users WHERE id = ?", [2 ** 33, "u1"])).toEqual({
        c: big + 2 ** 33,
      });
    });

    test("upsert with ON CONFLICT DO UPDATE … RETURNING adds to the existing row", async () => {
      const sql = await backend.migrated();
      const upsert = `INSERT INTO job_throughput (scope, minute, type, status, n) VALUES (?, ?, ?, ?, ?)
        ON CONFLICT (scope, minute, type, status) DO UPDATE SET n = job_throughput.n + excluded.n
        RETURNING ${columnList(jobThroughput)}`;
      const minute = Math.floor(now / 60_000);
      const first = await sql.get(upsert, ["", minute, "generate", "completed", 2]);
      const second = await sql.get(upsert, ["", minute, "generate", "completed", 3]);
      const toRow = rowMapper(jobThroughput);
      expect(toRow(first!)).toEqual({ scope: "", minute, type: "generate", status: "completed", n: 2 });
      expect(toRow(second!)).toEqual({ scope: "", minute, type: "generate", status: "completed", n: 5 });
      // DO NOTHING reports no change, and RETURNING no row.
      const ignored = await sql.run(
        "INSERT INTO job_throughput (scope, minute, type, status, n) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        ["", minute, "generate", "completed", 9],
      );
      expect(ignored.changes).toBe(0);
      // Without ON CONFLICT, the duplicate names every column of the composite key, on both databases.
      const err = await sql
        .run("INSERT INTO job_throughput (scope, minute, type, status, n) VALUES (?, ?, ?, ?, ?)", [
          "",
          minute,
          "generate",
          "completed",
          1,
        ])
        .catch((e: unknown) => e);
      expect(err).toMatchObject({
        name: "UniqueViolation",
        table: "job_throughput",
        columns: ["scope", "minute", "type", "status"],
      });
    });

    test("LIMIT ? and OFFSET ? page in order", async () => {
      const sql = await backend.migrated();
      for (let i = 0; i < 7; i++) {
        await sql.run(insertAll(users, "users"), encoded(users, user(`u${i}`, { createdAt: now + i })));
      }
      const page = async (limit: number, offset: number) =>
        (
          await sql.all<{ id: string }>("SELECT id FROM users ORDER BY created_at DESC LIMIT ? OFFSET ?", [
            limit,
            offset,
          ])
        ).map((r) => r.id);
      expect(await page(3, 0)).toEqual(["u6", "u5", "u4"]);
      expect(await page(3, 5)).toEqual(["u1", "u0"]);
    });

    test("placeholders inside string literals and quoted names are text, not parameters", async () => {
      const sql = await backend.migrated();
      await sql.run(insertAll(users, "users"), encoded(users, user("u1", { name: "who? 'me'" })));
      const row = await sql.get<{ q: string; name: string }>(
        `SELECT 'a ? b' AS q, "name" FROM users WHERE name = ? AND id = ?`,
        ["who? 'me'", "u1"],
      );
      expect(row).toEqual({ q: "a ? b", name: "who? 'me'" });
    });
  });
});

describe("Sql on SQLite only", () => {
  test("one connection has one client, so every user shares its gate", async () => {
    const sql = (await sqlite.withTable()) as ReturnType<typeof sqliteClient>;
    expect(sqliteClient(sql.db)).toBe(sql);
  });

  test("aside() lets another connection write: this one's statements and transactions wait for it, never meeting its lock", async () => {
    const sql = (await sqlite.withTable()) as ReturnType<typeof sqliteClient>;
    // No busy handler: a statement that met the other connection's write lock would fail with SQLITE_BUSY.
    sql.db.exec("PRAGMA busy_timeout = 0");
    const other = new Database(sql.db.filename);
    cleanups.push(() => other.close());
    const started = Promise.withResolvers<void>();
    const release = Promise.withResolvers<void>();
    const order: string[] = [];
    const aside = sql.aside(async () => {
      other.exec("BEGIN IMMEDIATE");
      other.run("INSERT INTO t (k, v) VALUES ('w', 1)");
      started.resolve();
      await release.promise;
      other.exec("COMMIT");
      order.push("other");
      return "done";
    });
    await started.promise;
    const waiting = [
      sql.run("INSERT INTO t (k, v) VALUES ('x', 2)").then(() => order.push("write")),
      sql.transaction(() => sql.run("UPDATE t SET v = v + 10 WHERE k = 'w'")).then(() => order.push("tx")),
      sql.get<{ v: number }>("SELECT v FROM t WHERE k = 'w'").then(() => order.push("read")),
    ];
    release.resolve();
    expect(await aside).toBe("done");
    await Promise.all(waiting);
    expect(order[0]).toBe("other");
    expect(order.toSorted()).toEqual(["other", "read", "tx", "write"]);
    expect(await sql.all("SELECT k, v FROM t ORDER BY k")).toEqual([
      { k: "w", v: 11 },
      { k: "x", v: 2 },
    ]);
    // Inside a transaction its turn would come after the transaction, which waits for it.
    await expect(sql.transaction(() => sql.aside(async () => 1))).rejects.toThrow(/inside a transaction/);
  });

  test("aside() tells its holder when something waits for the connection, so a long holder can end early", async () => {
    const sql = (await sqlite.withTable()) as ReturnType<typeof sqliteClient>;
    const wanted: string[] = [];
    // A holder that keeps the connection until released, noting each time it is told that something waits.
    const hold = (name: string) => {
      const started = Promise.withResolvers<void>();
      const release = Promise.withResolvers<void>();
      const done = sql.aside(
        async () => {
          started.resolve();
          await release.promise;
        },
        { wanted: () => wanted.push(name) },
      );
      return { started: started.promise, release: release.resolve, done };
    };
    const first = hold("first");
    await first.started;
    expect(wanted).toEqual([]);
    // A statement, then a transaction, each waiting for the holder: each one tells it.
    const read = sql.get("SELECT count(*) AS n FROM t");
    expect(wanted).toEqual(["first"]);
    const tx = sql.transaction(() => sql.run("INSERT INTO t (k, v) VALUES ('a', 1)"));
    expect(wanted).toEqual(["first", "first"]);
    // A second holder queued behind the transaction, with another transaction queued behind it: at its turn
    // it learns at once that something already waits.
    const second = hold("second");
    const behind = sql.transaction(() => sql.run("INSERT INTO t (k, v) VALUES ('b', 2)"));
    // Both wait behind the first holder too, and tell it so.
    expect(wanted).toEqual(["first", "first", "first", "first"]);
    first.release();
    await first.done;
    await Promise.all([read, tx]);
    await second.started;
    expect(wanted).toEqual(["first", "first", "first", "first", "second"]);
    second.release();
    await Promise.all([second.done, behind]);
    expect(await sql.get("SELECT count(*) AS n FROM t")).toEqual({ n: 2 });
  });
});
