import type { Database } from "bun:sqlite";
import { afterEach, describe, expect, test } from "bun:test";
import { runRetention } from "../../src/modules/ops/maintenance";
import { QueueStore } from "../../src/queue/store";
import { runEasel, startTestServer, type TestServer, tempDir, waitFor } from "../helpers";

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const HOUR = 3_600_000;

/**
 * Inserts `n` generate jobs that ended `hoursAgo` hours ago (completed, but every tenth failed), each with
 * one item, and for every fifth an asset row whose image (and thumbnail) is really in storage.
 */
/**
 * For tests that run retention themselves: the server's own run (every 10 minutes by default) must not take
 * the seeded history first when a test happens to straddle a ten-minute mark.
 */
const NO_SCHEDULED_RETENTION = { RETENTION_CRON: "0 0 1 1 *" };

async function seedHistory(server: TestServer, n: number, hoursAgo: number, owner: string | null = null) {
  const db = server.ctx.db.$client;
  const at = Date.now() - hoursAgo * HOUR;
  const keys: string[] = [];
  db.transaction(() => {
    const job = db.prepare(
      `INSERT INTO jobs (id, type, status, priority, input, progress, attempts, max_attempts, run_at, owner_id,
         created_at, started_at, finished_at, updated_at)
       VALUES (?1, 'generate', ?2, 0, '{}', 100, 1, 3, ?3, ?4, ?3, ?3, ?3, ?3)`,
    );
    const item = db.prepare(
      `INSERT INTO job_items (job_id, idx, key, input, status, attempts, updated_at)
       VALUES (?, 0, 'main', '{}', 'completed', 1, ?)`,
    );
    const attempt = db.prepare(
      `INSERT INTO job_attempts (job_id, attempt, outcome, started_at, ended_at) VALUES (?, 1, 'retried', ?2, ?2)`,
    );
    const asset = db.prepare(
      `INSERT INTO assets (id, job_id, item_idx, owner_id, storage_key, thumbnail_key, content_type, bytes, created_at)
       VALUES (?1, ?2, 0, ?3, ?4, ?5, 'image/png', 4, ?6)`,
    );
    for (let i = 0; i < n; i++) {
      const id = Bun.randomUUIDv7();
      job.run(id, i % 10 === 9 ? "failed" : "completed", at + i, owner);
      item.run(id, at + i);
      if (i % 10 === 9) attempt.run(id, at + i);
      if (i % 5 === 0) {
        const key = `generations/test/${id}.png`;
        asset.run(`a-${id}`, id, owner, key, `${key}.thumb.webp`, at + i);
        keys.push(key, `${key}.thumb.webp`);
      }
    }
  })();
  // Written behind the store's back, so counted as the store would have.
  new QueueStore(server.ctx.db.$client).recountEnded();
  for (const key of keys) {
    await server.ctx.storage.put(key, new Uint8Array([1, 2, 3, 4]), { contentType: "image/png" });
  }
  return keys;
}

const count = (db: Database, sql: string) => (db.query(sql).get() as { n: number }).n;

describe("retention in slices", () => {
  test("deletes what is past retention with its items, asset rows and files, answering requests meanwhile", async () => {
    const server = await startTestServer({
      env: { RETAIN_COMPLETED_HOURS: "24", RETAIN_FAILED_HOURS: "48", ...NO_SCHEDULED_RETENTION },
    });
    cleanups.push(() => server.close());
    const db = server.ctx.db.$client;
    const oldKeys = await seedHistory(server, 6000, 72);
    const keptKeys = await seedHistory(server, 200, 1);
    // 30 h old: the completed ones are past 24 h and go (with all 20 assets), the failed ones stay (< 48 h).
    const youngFailedKeys = await seedHistory(server, 100, 30);

    const retention = runRetention(server.ctx);
    let finished = false;
    void retention.then(() => {
      finished = true;
    });
    // The event loop is free between slices: a request is answered while retention is still deleting.
    const health = await server.api("/api/health/live");
    expect(health.status).toBe(200);
    expect(finished).toBe(false);
    const report = await retention;

    expect(report.jobs).toBe(6000 + 90);
    expect(report.objects).toBe(oldKeys.length + youngFailedKeys.length);
    expect(count(db, "SELECT count(*) AS n FROM jobs")).toBe(200 + 10);
    expect(count(db, "SELECT count(*) AS n FROM jobs WHERE status = 'failed'")).toBe(20 + 10);
    expect(count(db, "SELECT count(*) AS n FROM job_items WHERE job_id NOT IN (SELECT id FROM jobs)")).toBe(
      0,
    );
    expect(
      count(db, "SELECT count(*) AS n FROM job_attempts WHERE job_id NOT IN (SELECT id FROM jobs)"),
    ).toBe(0);
    expect(count(db, "SELECT count(*) AS n FROM job_attempts")).toBe(20 + 10);
    expect(
      count(
        db,
        "SELECT count(*) AS n FROM assets WHERE job_id IS NULL OR job_id NOT IN (SELECT id FROM jobs)",
      ),
    ).toBe(0);
    // Slices turn foreign keys off around their transactions (they delete the children themselves): on again.
    expect(count(db, "SELECT foreign_keys AS n FROM pragma_foreign_keys")).toBe(1);
    expect(db.query("PRAGMA foreign_key_check").all()).toEqual([]);
    // With foreign keys off, the slice does what they would (QueueStore#deleteChildren): a new table that
    // references jobs must be added there too.
    const referencing = db
      .query(
        `SELECT m.name AS child, f.on_delete AS action FROM sqlite_master m, pragma_foreign_key_list(m.name) f
         WHERE m.type = 'table' AND f."table" = 'jobs' ORDER BY m.name`,
      )
      .all();
    expect(referencing).toEqual([
      { child: "assets", action: "SET NULL" },
      { child: "job_attempts", action: "CASCADE" },
      { child: "job_input_keys", action: "CASCADE" },
      { child: "job_items", action: "CASCADE" },
    ]);
    for (const key of oldKeys) expect(await server.ctx.storage.head(key)).toBeNull();
    for (const key of keptKeys) expect(await server.ctx.storage.head(key)).not.toBeNull();
    const stats = await (await server.api("/api/jobs/stats")).json();
    expect(stats).toMatchObject({ completed: 180, failed: 20 + 10 });
  }, 30_000);

  test("an interrupted run is resumed by the next start of the server", async () => {
    const tmp = tempDir();
    cleanups.push(tmp.cleanup);
    const env = { RETAIN_COMPLETED_HOURS: "24", RETAIN_FAILED_HOURS: "24", ...NO_SCHEDULED_RETENTION };
    const first = await startTestServer({ dir: tmp.dir, env });
    await seedHistory(first, 5000, 48);
    const stop = new AbortController();
    const run = runRetention(first.ctx, stop.signal);
    // Stopped as soon as some jobs are gone, as a shutdown would.
    await waitFor(() => count(first.ctx.db.$client, "SELECT count(*) AS n FROM jobs") < 5000, {
      what: "a first slice",
      intervalMs: 0,
    });
    stop.abort();
    const partial = await run;
    expect(partial.jobs).toBeGreaterThan(0);
    expect(partial.jobs).toBeLessThan(5000);
    await first.close();

    const second = await startTestServer({ dir: tmp.dir, env });
    cleanups.push(() => second.close());
    await waitFor(() => count(second.ctx.db.$client, "SELECT count(*) AS n FROM jobs") === 0, {
      what: "the start-up retention to finish the job",
      timeoutMs: 20_000,
    });
    expect(await (await second.api("/api/jobs/stats")).json()).toMatchObject({ completed: 0, failed: 0 });
  }, 30_000);

  test("the server's database worker runs the vacuum and PRAGMA optimize on its own connection", async () => {
    const server = await startTestServer({ env: { RETAIN_FAILED_HOURS: "24", ...NO_SCHEDULED_RETENTION } });
    cleanups.push(() => server.close());
    const db = server.ctx.db.$client;
    const pragma = (name: string) => db.query(`PRAGMA ${name}`).values()[0]![0] as number;
    await seedHistory(server, 6000, 48);
    await seedHistory(server, 200, 1);
    const before = pragma("page_count");
    // What the worker answered: null would mean the step fell back to the main connection.
    const steps: (number | null)[] = [];
    let optimized = false;
    const cp = server.checkpointer!;
    const report = await runRetention(server.ctx, undefined, {
      checkpointNow: () => cp.checkpointNow(),
      vacuum: async (pages) => {
        const ms = await cp.vacuum(pages);
        steps.push(ms);
        return ms;
      },
      optimize: async () => {
        optimized = await cp.optimize();
        return optimized;
      },
    });
    expect(report.jobs).toBe(6000);
    expect(report.freedPages).toBeGreaterThan(0);
    expect(steps.length).toBeGreaterThan(0);
    expect(steps.every((ms) => ms !== null)).toBe(true);
    expect(optimized).toBe(true);
    // The main connection sees the worker's work: the file gave its pages back, and the planner has stats.
    expect(pragma("page_count")).toBeLessThanOrEqual(before - report.freedPages);
    expect(pragma("freelist_count")).toBeLessThanOrEqual(Math.ceil(pragma("page_count") * 0.25));
    const analysed = db.query("SELECT DISTINCT tbl FROM sqlite_stat1").all() as { tbl: string }[];
    expect(analysed.map((r) => r.tbl)).toContain("jobs");
    expect(db.query("PRAGMA integrity_check").values()).toEqual([["ok"]]);
    expect(await (await server.api("/api/jobs/stats")).json()).toMatchObject({ completed: 180, failed: 20 });
  }, 30_000);

  test("with the server's database worker, the slices run on a thread's own connection while requests are answered", async () => {
    const server = await startTestServer({
      env: { RETAIN_COMPLETED_HOURS: "24", RETAIN_FAILED_HOURS: "48", ...NO_SCHEDULED_RETENTION },
    });
    cleanups.push(() => server.close());
    const db = server.ctx.db.$client;
    // Two owners whose jobs interleave in time: a transaction of several chunks counts both once.
    const oldKeys = [
      ...(await seedHistory(server, 4000, 72, "alice")),
      ...(await seedHistory(server, 4000, 72, "bob")),
    ];
    const keptKeys = await seedHistory(server, 200, 1, "alice");

    const run = runRetention(server.ctx, undefined, server.checkpointer!);
    let finished = false;
    void run.then(() => {
      finished = true;
    });
    // Requests that use the database wait at most a slice on the main connection's gate, and see the history
    // shrink between them.
    const answers: number[] = [];
    while (!finished) {
      const res = await server.api("/api/jobs/stats");
      expect(res.status).toBe(200);
      const stats = (await res.json()) as { completed: number; failed: number };
      answers.push(stats.completed + stats.failed);
    }
    const report = await run;
    expect(answers.length).toBeGreaterThan(1);
    expect(answers).toEqual(answers.toSorted((a, b) => b - a));
    expect(answers[0]).toBeLessThanOrEqual(8200);
    expect(report.jobs).toBe(8000);
    expect(report.jobsOffThread).toBe(8000);
    expect(report.objects).toBe(oldKeys.length);
    for (const key of oldKeys) expect(await server.ctx.storage.head(key)).toBeNull();
    for (const key of keptKeys) expect(await server.ctx.storage.head(key)).not.toBeNull();
    expect(count(db, "SELECT count(*) AS n FROM jobs")).toBe(200);
    expect(count(db, "SELECT count(*) AS n FROM job_items WHERE job_id NOT IN (SELECT id FROM jobs)")).toBe(
      0,
    );
    expect(count(db, "SELECT count(*) AS n FROM job_attempts")).toBe(20);
    expect(count(db, "SELECT count(*) AS n FROM assets")).toBe(keptKeys.length / 2);
    // The thread's connection runs with foreign keys off; the main connection's are untouched.
    expect(count(db, "SELECT foreign_keys AS n FROM pragma_foreign_keys")).toBe(1);
    expect(db.query("PRAGMA foreign_key_check").all()).toEqual([]);
    expect(db.query("PRAGMA integrity_check").values()).toEqual([["ok"]]);
    // Counts by scope as a full count(*) gives them (the thread's slices count their deletes grouped).
    const counted = db
      .query("SELECT scope, type, status, n FROM job_counts WHERE n != 0 ORDER BY scope, type, status")
      .all();
    const full = db
      .query(
        `SELECT scope, type, status, n FROM (
           SELECT '' AS scope, type, status, count(*) AS n FROM jobs GROUP BY type, status
           UNION ALL SELECT 'u:' || owner_id, type, status, count(*) FROM jobs WHERE owner_id IS NOT NULL
             GROUP BY owner_id, type, status)
         ORDER BY scope, type, status`,
      )
      .all();
    expect(counted).toEqual(full);
    expect(await (await server.api("/api/jobs/stats")).json()).toMatchObject({ completed: 180, failed: 20 });
  }, 30_000);

  test("a slice the thread cannot run is rolled back, and the run goes on in process", async () => {
    const server = await startTestServer({ env: { RETAIN_FAILED_HOURS: "24", ...NO_SCHEDULED_RETENTION } });
    cleanups.push(() => server.close());
    const db = server.ctx.db.$client;
    await seedHistory(server, 3000, 48);
    const where: boolean[] = [];
    const deleted = await server.ctx.queue.cleanupRetention({
      completedHours: 24,
      failedHours: 24,
      beforeDelete: async (ids) => {
        await server.ctx.assets.takeForJobs(ids);
      },
      afterSlice: (_ids, onThread) => {
        where.push(onThread);
      },
      // Fails on the thread once the slice has deleted nothing yet: its transaction is rolled back whole.
      offThread: { companionSql: "DELETE FROM no_such_table WHERE ?1 IS NOT NULL RETURNING 1" },
    });
    expect(deleted).toBe(3000);
    expect(where.length).toBeGreaterThan(0);
    expect(where.every((onThread) => !onThread)).toBe(true);
    expect(count(db, "SELECT count(*) AS n FROM jobs")).toBe(0);
    expect(count(db, "SELECT count(*) AS n FROM assets")).toBe(0);
    expect(count(db, "SELECT count(*) AS n FROM job_items")).toBe(0);
    expect(count(db, "SELECT coalesce(sum(n), 0) AS n FROM job_counts")).toBe(0);
    expect(db.query("PRAGMA integrity_check").values()).toEqual([["ok"]]);
  }, 30_000);

  test("the file stops growing once retention keeps pace, and `easel db stats` shows where the pages are", async () => {
    const tmp = tempDir();
    cleanups.push(tmp.cleanup);
    const server = await startTestServer({
      dir: tmp.dir,
      env: { RETAIN_FAILED_HOURS: "24", ...NO_SCHEDULED_RETENTION },
    });
    cleanups.push(() => server.close());
    const db = server.ctx.db.$client;
    const pages = () => db.query("PRAGMA page_count").values()[0]![0] as number;
    const sizes: number[] = [];
    for (let day = 0; day < 5; day++) {
      // A day's worth of jobs arrives while the previous day's passes retention.
      await seedHistory(server, 1500, 48);
      await runRetention(server.ctx);
      sizes.push(pages());
    }
    // The first cycles settle the free-page reserve; after that every cycle reuses the same pages.
    expect(Math.max(...sizes.slice(2))).toBeLessThanOrEqual(sizes[1]! * 1.05);
    expect(db.query("PRAGMA auto_vacuum").values()[0]![0]).toBe(2);

    const run = await runEasel(tmp.dir, ["db", "stats", "--json"]);
    expect(run.code).toBe(0);
    const stats = JSON.parse(run.stdout) as {
      pages: number;
      freePages: number;
      autoVacuum: string;
      tables: { table: string; bytes: number; indexBytes: number }[];
    };
    expect(stats.autoVacuum).toBe("incremental");
    expect(stats.freePages).toBeLessThanOrEqual(stats.pages);
    const jobs = stats.tables.find((t) => t.table === "jobs");
    expect(jobs?.bytes).toBeGreaterThan(0);
    expect(jobs?.indexBytes).toBeGreaterThan(0);
    const human = await runEasel(tmp.dir, ["db", "stats"]);
    expect(human.stdout).toContain("free pages:");
    expect(human.stdout).toMatch(/^jobs\s/m);
    // A small table's size is readable (KiB), never rounded away to "0.0 MiB".
    expect(human.stdout).toMatch(/^users\s+\d+\.\d KiB\s/m);
    expect(human.stdout).not.toContain("0.0 MiB");
  }, 30_000);
});
