import { Database } from "bun:sqlite";
import { afterEach, expect, test } from "bun:test";
import { join } from "node:path";
import { sqliteClient } from "../../src/db/sqlite";
import { tempDir } from "../helpers";

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

/** A client on a fresh WAL file with one table `t (k TEXT PRIMARY KEY, v INTEGER)`. */
function client() {
  const tmp = tempDir("easel-tx-");
  const db = new Database(join(tmp.dir, "t.db"), { create: true, strict: true });
  db.exec("PRAGMA journal_mode = WAL");
  db.exec("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER NOT NULL)");
  cleanups.push(() => {
    db.close();
    tmp.cleanup();
  });
  return sqliteClient(db);
}

/** A latch a test opens by hand: code awaiting `wait` is suspended exactly until `open()`. */
function latch() {
  const { promise, resolve } = Promise.withResolvers<void>();
  return { wait: promise, open: () => resolve() };
}

const keys = async (sql: ReturnType<typeof client>) =>
  (await sql.all<{ k: string }>("SELECT k FROM t ORDER BY k")).map((r) => r.k);

test("one connection has one client, so every user shares its gate", () => {
  const sql = client();
  expect(sqliteClient(sql.db)).toBe(sql);
});

test("concurrent transactions never see each other's writes before commit", async () => {
  const sql = client();
  const aWrote = latch();
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
    await sql.run("INSERT INTO t (k, v) VALUES (?, ?)", ["b", 2]);
    return "b";
  });
  // B is queued behind A: while A is suspended, B has not run at all.
  let bDone = false;
  void b.then(() => {
    bDone = true;
  });
  for (let i = 0; i < 20; i++) await Promise.resolve();
  expect(bDone).toBe(false);
  release.open();
  expect(await Promise.all([a, b])).toEqual(["a", "b"]);
  // B started after A committed: it sees A's row, never a half-done A.
  expect(seenByB).toEqual([["a"]]);
  expect(await keys(sql)).toEqual(["a", "b"]);
});

test("a statement outside the open transaction waits for it, and never reads its uncommitted writes", async () => {
  const sql = client();
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
  for (let i = 0; i < 20; i++) await Promise.resolve();
  expect(read).toBeNull();
  release.open();
  await Promise.all([tx, outsideRead]);
  expect(read as string[] | null).toEqual(["inside"]);
});

test("a rolled-back transaction loses only its own writes; an autocommit statement issued during its suspension is kept", async () => {
  const sql = client();
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
  release.open();
  await expect(failing).rejects.toThrow("refused");
  expect((await foreign).changes).toBe(1);
  expect(await keys(sql)).toEqual(["theirs"]);
});

test("nested transaction() calls join the outer one and roll back with it", async () => {
  const sql = client();
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
  const sql = client();
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

test("a timer scheduled inside a transaction runs outside it once it has ended", async () => {
  const sql = client();
  const fired = latch();
  let insideWhenFired: boolean | null = null;
  let sawUncommitted: string[] | null = null;
  await sql.transaction(async () => {
    await sql.run("INSERT INTO t (k, v) VALUES (?, ?)", ["tx", 1]);
    setTimeout(async () => {
      insideWhenFired = sql.inside;
      // Runs as its own autocommit statement: a failure here could not undo the committed row.
      await sql.run("INSERT INTO t (k, v) VALUES (?, ?)", ["timer", 2]);
      sawUncommitted = await keys(sql);
      fired.open();
    }, 0);
  });
  await fired.wait;
  expect(insideWhenFired as boolean | null).toBe(false);
  expect(sawUncommitted as string[] | null).toEqual(["timer", "tx"]);
});

test("work started through outside() while a transaction is still open waits for it instead of joining it", async () => {
  const sql = client();
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
  const sql = client();
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
  const sql = client();
  await sql.run("INSERT INTO t (k, v) VALUES ('counter', 0)");
  const work: Promise<unknown>[] = [];
  for (let i = 0; i < 50; i++) {
    work.push(
      sql.transaction(async () => {
        const row = await sql.get<{ v: number }>("SELECT v FROM t WHERE k = 'counter'");
        await Promise.resolve();
        await sql.run("UPDATE t SET v = ? WHERE k = 'counter'", [row!.v + 1]);
      }),
    );
    work.push(sql.run("INSERT INTO t (k, v) VALUES (?, ?)", [`auto-${i}`, i]));
  }
  await Promise.all(work);
  expect((await sql.get<{ v: number }>("SELECT v FROM t WHERE k = 'counter'"))!.v).toBe(50);
  expect((await sql.get<{ n: number }>("SELECT count(*) AS n FROM t"))!.n).toBe(51);
});
