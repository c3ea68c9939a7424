/**
 * Several instances on one PostgreSQL database: two `Queue`s, each with its own connection pool, worker pool
 * and LISTEN connection, stand for two Easel processes.
 */
import { expect, test } from "bun:test";
import { join } from "node:path";
import { SQL } from "bun";
import { z } from "zod";
import { PgNotifier } from "../../src/db/pg/notify";
import { pgSql } from "../../src/db/pg/sql";
import { silentLogger } from "../../src/log";
import { defineJob, pgQueueBackend, Queue, type QueueOptions } from "../../src/queue";
import { migratedPgDatabasePerTest, type PgTestDb } from "../db/pg-helpers";
import { waitFor } from "../helpers";

const { cleanups, database } = migratedPgDatabasePerTest();

/** One instance: its own pool of connections and its own LISTEN connection on the database. */
function instance(pg: PgTestDb, name: string, opts: Partial<QueueOptions> = {}) {
  const pool = new SQL(pg.url, { max: 6, connection: { application_name: `easel-test-${name}` } });
  const sql = pgSql(pool);
  const notifier = new PgNotifier({ url: pg.url, sql, applicationName: `easel-listen-${name}` });
  const queue = new Queue({
    backend: pgQueueBackend(sql, { notifier }),
    concurrency: 16,
    pollIntervalMs: 50,
    leaseMs: 5000,
    stalledMax: 3,
    defaultTimeoutMs: 5000,
    defaultMaxAttempts: 3,
    log: silentLogger,
    workerId: `${name}:${process.pid}:test`,
    ...opts,
  });
  // Cleanups run in reverse: the queue stops before its connections close.
  cleanups.push(
    () => pool.close(),
    () => notifier.close(),
    () => queue.stop(0),
  );
  return { queue, notifier };
}

test("two instances drain 1,000 jobs enqueued through both: every job runs exactly once", async () => {
  const pg = await database();
  const runs = new Map<string, string[]>();
  const a = instance(pg, "a");
  const b = instance(pg, "b");
  for (const [name, { queue }] of [
    ["a", a],
    ["b", b],
  ] as const) {
    queue.define(
      defineJob({
        type: "work",
        input: z.object({ i: z.number() }),
        run: async ({ job }) => {
          runs.set(job.id, [...(runs.get(job.id) ?? []), name]);
          await Bun.sleep(job.id.charCodeAt(job.id.length - 1) % 3);
        },
      }),
    );
  }
  a.queue.start();
  b.queue.start();
  const ids: string[] = [];
  // Through both, while both drain: singles and bulks, interleaved.
  for (let round = 0; round < 10; round++) {
    ids.push(
      ...(await a.queue.enqueueBulk(
        "work",
        Array.from({ length: 45 }, (_, i) => ({ i })),
      )),
    );
    ids.push(
      ...(await b.queue.enqueueBulk(
        "work",
        Array.from({ length: 45 }, (_, i) => ({ i })),
      )),
    );
    for (let i = 0; i < 10; i++) ids.push((await (i % 2 ? a : b).queue.enqueue("work", { i })).id);
  }
  expect(new Set(ids).size).toBe(1000);
  await waitFor(async () => (await a.queue.stats()).completed === 1000, {
    timeoutMs: 25_000,
    what: "every job to complete",
  });
  expect(runs.size).toBe(1000);
  const twice = [...runs].filter(([, by]) => by.length !== 1);
  expect(twice).toEqual([]);
  // Both instances took part, and the counts agree with the rows.
  const by = [...runs.values()].flat();
  expect(by.filter((n) => n === "a").length).toBeGreaterThan(0);
  expect(by.filter((n) => n === "b").length).toBeGreaterThan(0);
  expect(await b.queue.stats()).toMatchObject({ waiting: 0, active: 0, completed: 1000, failed: 0 });
  const rows = await a.queue.sql.get<{ n: number }>(
    "SELECT count(*) AS n FROM jobs WHERE status = 'completed' AND attempts = 1",
  );
  expect(rows?.n).toBe(1000);
}, 30_000);

test("a job enqueued on one instance starts on another at once, woken by NOTIFY, not by its poll", async () => {
  const pg = await database();
  // A only enqueues (its pool never starts); B polls once a minute, so only a notification can wake it.
  const a = instance(pg, "a");
  const b = instance(pg, "b", { pollIntervalMs: 60_000 });
  let startedAt = 0;
  for (const { queue } of [a, b]) {
    queue.define(
      defineJob({
        type: "t",
        input: z.object({}),
        run: async () => {
          startedAt = performance.now();
        },
      }),
    );
  }
  b.queue.start();
  await waitFor(() => b.notifier.connected, { what: "B to listen" });
  // B's first look found nothing: it now sleeps its poll interval.
  await Bun.sleep(100);
  const latencies: number[] = [];
  for (let i = 0; i < 5; i++) {
    startedAt = 0;
    const t0 = performance.now();
    const { id } = await a.queue.enqueue("t", {});
    await waitFor(() => startedAt > 0, { timeoutMs: 10_000, what: "B to start the job" });
    latencies.push(startedAt - t0);
    await waitFor(async () => (await a.queue.get(id))?.status === "completed", { what: "the job to end" });
    expect((await a.queue.get(id))?.lockedBy).toBeNull();
  }
  // Milliseconds on an idle machine; far below the 60 s poll on a loaded one.
  expect(Math.max(...latencies)).toBeLessThan(5000);
  const runsOnB = await b.queue.stats();
  expect(runsOnB.completed).toBe(5);
}, 30_000);

test("an instance killed with kill -9: another's sweep re-queues its jobs once its heartbeat lapses, not its leases", async () => {
  const pg = await database();
  await pg.sql.unsafe("CREATE TABLE test_runs (job_id TEXT, worker TEXT)");
  const child = Bun.spawn(["bun", join(import.meta.dir, "fixtures/pg-instance.ts")], {
    env: { ...process.env, DATABASE_URL: pg.url },
    stdout: "pipe",
    stderr: "inherit",
  });
  cleanups.push(() => child.kill(9));
  const reader = child.stdout.getReader();
  let out = "";
  while (!out.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`the instance exited early: ${out}`);
    out += new TextDecoder().decode(value);
  }
  const doomed = /^ready (\S+)/.exec(out)![1]!;

  // B enqueues; the other instance takes the jobs (B's pool is not started yet).
  const b = instance(pg, "b");
  const survivorPool = new SQL(pg.url, { max: 4 });
  cleanups.push(() => survivorPool.close());
  const survivor = new Queue({
    backend: pgQueueBackend(pgSql(survivorPool), {
      instances: { version: "test", heartbeatMs: 100, ttlMs: 1000 },
    }),
    concurrency: 8,
    pollIntervalMs: 50,
    leaseMs: 60_000,
    stalledMax: 3,
    defaultTimeoutMs: 5000,
    defaultMaxAttempts: 3,
    log: silentLogger,
    workerId: `survivor:${process.pid}:test`,
  });
  cleanups.push(() => survivor.stop(0));
  const ran: string[] = [];
  survivor.define(
    defineJob({ type: "slow", input: z.object({}), run: async ({ job }) => void ran.push(job.id) }),
  );
  b.queue.define(defineJob({ type: "slow", input: z.object({}), run: async () => {} }));
  const ids: string[] = [];
  for (let i = 0; i < 3; i++) ids.push((await b.queue.enqueue("slow", {})).id);
  await waitFor(
    async () => (await pg.sql`SELECT count(*)::int AS n FROM test_runs WHERE worker = ${doomed}`)[0].n === 3,
    { timeoutMs: 15_000, what: "the doomed instance to start every job" },
  );
  child.kill(9);
  await child.exited;
  const killedAt = Date.now();

  survivor.start();
  // The stalled sweep, as the cluster's scheduler runs it on whichever instance leads.
  let requeued = 0;
  await waitFor(
    async () => {
      requeued += (await survivor.recoverStalled()).requeued;
      return requeued === 3;
    },
    { timeoutMs: 15_000, intervalMs: 100, what: "the sweep to re-queue the dead instance's jobs" },
  );
  for (const id of ids) {
    await waitFor(async () => (await survivor.get(id))?.status === "completed", { what: `job ${id} to end` });
  }
  // Recovered after the instance's 1 s heartbeat TTL, long before the jobs' 60 s leases ran out.
  expect(Date.now() - killedAt).toBeLessThan(30_000);
  expect(ran.toSorted()).toEqual(ids.toSorted());
  for (const id of ids) {
    expect(await survivor.get(id)).toMatchObject({ status: "completed", stalledCount: 1, attempts: 1 });
    expect((await survivor.attempts(id)).map((a) => a.outcome)).toEqual(["stalled"]);
  }
  const left = await pg.sql`SELECT id FROM instances ORDER BY id`;
  expect(left.map((r: { id: string }) => r.id)).toEqual([`survivor:${process.pid}:test`]);
}, 60_000);
