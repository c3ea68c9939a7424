import { Database } from "bun:sqlite";
import { afterEach, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { z } from "zod";
import { defineJob } from "../../src/queue";
import { dbOf, tempDir, testQueue, waitFor } from "../helpers";

const WORKER = join(import.meta.dir, "../fixtures/queue-worker.ts");
const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

/** The parent's handle on the file: enqueues only (its pool never starts). */
function setup() {
  const tmp = tempDir();
  cleanups.push(tmp.cleanup);
  const path = join(tmp.dir, "q.db");
  const queue = testQueue(path);
  queue.define(
    defineJob({ type: "work", input: z.object({ ms: z.number() }), run: async () => null }),
    defineJob({ type: "batch", input: z.object({ ms: z.number() }), items: { run: async () => undefined } }),
  );
  dbOf(queue).exec(`CREATE TABLE IF NOT EXISTS test_runs (job_id TEXT, pid INTEGER, started REAL, ended REAL);
    CREATE TABLE IF NOT EXISTS test_item_runs (job_id TEXT, key TEXT, pid INTEGER, at REAL)`);
  return { path, queue, db: dbOf(queue) };
}

function spawnWorker(path: string, env: Record<string, string> = {}) {
  const proc = Bun.spawn(["bun", WORKER], {
    env: { ...process.env, DB_PATH: path, ...env },
    stdout: "pipe",
    stderr: "inherit",
  });
  cleanups.push(() => proc.kill(9));
  return proc;
}

async function ready(proc: ReturnType<typeof spawnWorker>) {
  const reader = proc.stdout.getReader();
  const { value } = await reader.read();
  expect(new TextDecoder().decode(value)).toContain("ready");
  reader.releaseLock();
}

describe("several processes on one database file", () => {
  test("two processes drain the same file: every job runs once per attempt, never twice at once", async () => {
    const { path, queue, db } = setup();
    const n = 1500;
    // Delayed far ahead so neither process can drain the file before the other is up; released at once
    // when both are ready (a loaded machine can start one process a second after the other).
    const ids = await queue.enqueueBulk(
      "work",
      Array.from({ length: n }, (_, i) => ({ ms: i % 3 })),
      { delayMs: 600_000 },
    );
    const a = spawnWorker(path, { CONCURRENCY: "16", EXIT_WHEN_DRAINED: "1" });
    const b = spawnWorker(path, { CONCURRENCY: "16", EXIT_WHEN_DRAINED: "1" });
    await Promise.all([ready(a), ready(b)]);
    db.run("UPDATE jobs SET run_at = ?", [Date.now()]);
    expect(await a.exited).toBe(0);
    expect(await b.exited).toBe(0);

    const jobs = db.query("SELECT id, status, attempts FROM jobs").all() as {
      id: string;
      status: string;
      attempts: number;
    }[];
    expect(jobs).toHaveLength(n);
    expect(jobs.every((j) => j.status === "completed")).toBe(true);
    const runs = db.query("SELECT job_id, pid, started, ended FROM test_runs").all() as {
      job_id: string;
      pid: number;
      started: number;
      ended: number;
    }[];
    const byJob = Map.groupBy(runs, (r) => r.job_id);
    for (const id of ids) {
      const attempts = jobs.find((j) => j.id === id)!.attempts;
      expect(byJob.get(id)?.length).toBe(attempts);
    }
    // No job ran in two places at once.
    for (const list of byJob.values()) {
      const sorted = list.toSorted((x, y) => x.started - y.started);
      for (let i = 1; i < sorted.length; i++)
        expect(sorted[i]!.started).toBeGreaterThanOrEqual(sorted[i - 1]!.ended);
    }
    // Both processes did real work.
    expect(new Set(runs.map((r) => r.pid)).size).toBe(2);
  }, 30_000);

  test("kill -9 mid-run: a restart finishes every job and never redoes a finished batch item", async () => {
    const { path, queue, db } = setup();
    const work = await queue.enqueueBulk(
      "work",
      Array.from({ length: 6 }, () => ({ ms: 400 })),
    );
    const batch = await queue.enqueue(
      "batch",
      { ms: 120 },
      { items: Array.from({ length: 10 }, (_, i) => ({ key: `item-${i}`, input: {} })) },
    );
    const first = spawnWorker(path, { CONCURRENCY: "4" });
    await ready(first);
    // Wait until the batch is half done and plain jobs are mid-run, then kill without warning.
    await waitFor(
      () =>
        (
          db
            .query("SELECT count(*) AS n FROM job_items WHERE job_id = ? AND status = 'completed'")
            .get(batch.id) as { n: number }
        ).n >= 4,
      { timeoutMs: 10_000, what: "half the batch" },
    );
    first.kill(9);
    await first.exited;
    const doneBefore = (
      db.query("SELECT key FROM job_items WHERE job_id = ? AND status = 'completed'").all(batch.id) as {
        key: string;
      }[]
    ).map((r) => r.key);
    const activeBefore = (
      db.query("SELECT count(*) AS n FROM jobs WHERE status = 'active'").get() as { n: number }
    ).n;
    expect(activeBefore).toBeGreaterThan(0);

    const second = spawnWorker(path, { CONCURRENCY: "4", EXIT_WHEN_DRAINED: "1" });
    expect(await second.exited).toBe(0);

    const statuses = db.query("SELECT id, status FROM jobs").all() as { id: string; status: string }[];
    expect(statuses.map((s) => s.status).every((s) => s === "completed")).toBe(true);
    expect(statuses.map((s) => s.id).toSorted()).toEqual([...work, batch.id].toSorted());
    const items = db.query("SELECT key, status FROM job_items WHERE job_id = ?").all(batch.id) as {
      key: string;
      status: string;
    }[];
    expect(items.every((i) => i.status === "completed")).toBe(true);
    const calls = db.query("SELECT key, count(*) AS n FROM test_item_runs GROUP BY key").all() as {
      key: string;
      n: number;
    }[];
    for (const key of doneBefore) expect(calls.find((c) => c.key === key)?.n).toBe(1);
    expect(calls).toHaveLength(10);
  }, 30_000);

  test("SIGTERM: active jobs finish within the grace period", async () => {
    const { path, queue, db } = setup();
    await queue.enqueueBulk("work", [{ ms: 300 }, { ms: 300 }]);
    const proc = spawnWorker(path, { CONCURRENCY: "4", GRACE_MS: "5000" });
    await ready(proc);
    await waitFor(
      () =>
        (db.query("SELECT count(*) AS n FROM jobs WHERE status = 'active'").get() as { n: number }).n === 2,
    );
    proc.kill("SIGTERM");
    expect(await proc.exited).toBe(0);
    const rows = db.query("SELECT status FROM jobs").all() as { status: string }[];
    expect(rows.map((r) => r.status)).toEqual(["completed", "completed"]);
  }, 20_000);

  test("SIGTERM past the grace period: unfinished jobs are released and run on the next start", async () => {
    const { path, queue, db } = setup();
    await queue.enqueueBulk("work", [{ ms: 1500 }, { ms: 1500 }]);
    const proc = spawnWorker(path, { CONCURRENCY: "4", GRACE_MS: "100" });
    await ready(proc);
    await waitFor(
      () =>
        (db.query("SELECT count(*) AS n FROM jobs WHERE status = 'active'").get() as { n: number }).n === 2,
    );
    proc.kill("SIGTERM");
    expect(await proc.exited).toBe(0);
    const released = db.query("SELECT status, attempts, locked_by FROM jobs").all() as {
      status: string;
      attempts: number;
      locked_by: string | null;
    }[];
    expect(released.every((r) => r.status === "queued" && r.attempts === 0 && r.locked_by === null)).toBe(
      true,
    );

    const next = spawnWorker(path, { CONCURRENCY: "4", EXIT_WHEN_DRAINED: "1" });
    expect(await next.exited).toBe(0);
    const done = db.query("SELECT status, attempts FROM jobs").all() as {
      status: string;
      attempts: number;
    }[];
    expect(done).toEqual([
      { status: "completed", attempts: 1 },
      { status: "completed", attempts: 1 },
    ]);
  }, 20_000);
});

test("a database file opened by a second connection sees the same jobs (WAL)", async () => {
  const { path, queue } = setup();
  const { id } = await queue.enqueue("work", { ms: 1 });
  const other = new Database(path, { readonly: true });
  expect(other.query("SELECT status FROM jobs WHERE id = ?").get(id)).toEqual({ status: "queued" });
  other.close();
});
