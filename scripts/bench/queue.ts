/**
 * Queue engine throughput and latency, for no-op jobs through the real engine (claim → handler →
 * group-committed completion → events), on a real SQLite file in WAL mode or on PostgreSQL. Every enqueue
 * is durable: it returns after its transaction commits; nothing is buffered in memory.
 *
 * With `--backend postgres` each phase runs on a fresh migrated database on `--url` (default
 * EASEL_TEST_DATABASE_URL, scripts/pg-test-cluster.sh); `--instances 2` drains with two queues (two
 * connection pools, two worker pools, two LISTEN connections) standing for two processes, and measures the
 * latency from an enqueue on one to the handler's start on the other.
 *
 *   bun run bench queue [--json] [--n 200000] [--concurrency 512] [--backend sqlite|postgres] [--instances 1|2]
 */
import type { Database } from "bun:sqlite";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { SQL } from "bun";
import { z } from "zod";
import { Checkpointer } from "../../src/db/checkpointer";
import { openDb } from "../../src/db/client";
import { migratePg } from "../../src/db/pg/migrate";
import { PgNotifier } from "../../src/db/pg/notify";
import { pgSql } from "../../src/db/pg/sql";
import { silentLogger } from "../../src/log";
import { defineJob, pgQueueBackend, Queue, type QueueBackend } from "../../src/queue";
import { PG_TEST_URL } from "../../test/db/pg-helpers";
import { benchDatabase } from "./lib/pg-database";
import { machine, percentile, report, round } from "./machine";

const { values } = parseArgs({
  options: {
    json: { type: "boolean", default: false },
    n: { type: "string", default: "200000" },
    concurrency: { type: "string", default: "512" },
    latency: { type: "string", default: "2000" },
    backend: { type: "string", default: "sqlite" },
    instances: { type: "string", default: "1" },
    url: { type: "string", default: PG_TEST_URL },
  },
});
const n = Number(values.n);
const concurrency = Number(values.concurrency);
const backend = values.backend;
const instances = Number(values.instances);
if (backend !== "sqlite" && backend !== "postgres") throw new Error("--backend is sqlite or postgres");
if (instances !== 1 && (instances !== 2 || backend !== "postgres")) {
  throw new Error("--instances 2 needs --backend postgres");
}

const cleanups: (() => Promise<unknown>)[] = [];

/** Where a phase's queues keep their tables: a fresh file, or a fresh migrated PostgreSQL database. */
async function freshStore(dir: string, name: string): Promise<() => QueueBackend | { db: Database }> {
  if (backend === "sqlite") {
    const path = join(dir, `${name}.db`);
    const db = openDb(path);
    // As `easel serve` runs it: checkpoints in a worker thread.
    const checkpointer = new Checkpointer(db.$client, path);
    await checkpointer.start();
    cleanups.push(() => checkpointer.stop());
    return () => ({ db: db.$client });
  }
  const { url, drop } = await benchDatabase(values.url, `queue_${name}`);
  cleanups.push(drop);
  const migrator = new SQL(url, { max: 1 });
  await migratePg(migrator);
  await migrator.close();
  // Each call is one instance: its own pool and LISTEN connection (closed before the database is dropped).
  return () => {
    const pool = new SQL(url, { max: 8 });
    // As src/db/open.ts opens it for `easel serve`: claims commit without waiting for the WAL flush.
    const relaxedPool = new SQL(url, { max: 3, connection: { synchronous_commit: "off" } });
    const sql = pgSql(pool);
    const notifier = new PgNotifier({ url, sql });
    cleanups.push(
      () => pool.close(),
      () => relaxedPool.close(),
      () => notifier.close(),
    );
    return pgQueueBackend(sql, { notifier, relaxed: pgSql(relaxedPool) });
  };
}

/** A queue (one instance) on `store`, configured as `easel serve` runs it. */
function instanceQueue(store: () => QueueBackend | { db: Database }, conc: number, onRun: () => void): Queue {
  const where = store();
  const q = new Queue({
    ...("db" in where ? { db: where.db } : { backend: where }),
    concurrency: conc,
    pollIntervalMs: 250,
    leaseMs: 60_000,
    stalledMax: 2,
    defaultTimeoutMs: 30_000,
    defaultMaxAttempts: 3,
    log: silentLogger,
  });
  q.define(defineJob({ type: "noop", input: z.object({ i: z.number() }), run: async () => void onRun() }));
  cleanups.push(() => q.stop(1000));
  return q;
}

const dir = mkdtempSync(join(tmpdir(), "easel-bench-"));
try {
  // 1. Bulk enqueue: chunks of 10,000 per call, each one transaction.
  const bulkStore = await freshStore(dir, "bulk");
  const bulk = instanceQueue(bulkStore, concurrency, () => {});
  const chunk = 10_000;
  const inputs = Array.from({ length: chunk }, (_, i) => ({ i }));
  let t = performance.now();
  for (let done = 0; done < n; done += chunk) await bulk.enqueueBulk("noop", inputs);
  const enqueueBulkPerS = n / ((performance.now() - t) / 1000);

  // 2. Drain what was just enqueued, with every instance.
  const drainers = [
    bulk,
    ...Array.from({ length: instances - 1 }, () => instanceQueue(bulkStore, concurrency, () => {})),
  ];
  let completed = 0;
  let resolveDrained!: () => void;
  const drained = new Promise<void>((r) => {
    resolveDrained = r;
  });
  for (const q of drainers) {
    q.events.on("job:completed", () => {
      if (++completed === n) resolveDrained();
    });
  }
  t = performance.now();
  for (const q of drainers) q.start();
  await drained;
  const jobsPerS = n / ((performance.now() - t) / 1000);
  for (const q of drainers) await q.stop(1000);

  // 3. Single enqueues, each its own committed transaction.
  const single = instanceQueue(await freshStore(dir, "single"), concurrency, () => {});
  const singles = Math.min(n, backend === "sqlite" ? 50_000 : 10_000);
  t = performance.now();
  for (let i = 0; i < singles; i++) await single.enqueue("noop", { i });
  const enqueueSinglePerS = singles / ((performance.now() - t) / 1000);

  // 4. Enqueue → handler start on an idle pool, one job at a time: with two instances, enqueued on one and
  // started on the other (woken by NOTIFY).
  let startedAt = 0;
  const latencyStore = await freshStore(dir, "latency");
  const worker = instanceQueue(latencyStore, 8, () => {
    startedAt = performance.now();
  });
  const producer = instances === 2 ? instanceQueue(latencyStore, 8, () => {}) : worker;
  worker.start();
  // The worker listens before the first enqueue (its LISTEN is acknowledged asynchronously).
  await Bun.sleep(instances === 2 ? 500 : 0);
  const latencies: number[] = [];
  for (let i = 0; i < Number(values.latency); i++) {
    let done!: () => void;
    const finished = new Promise<void>((r) => {
      done = r;
    });
    const off = worker.events.on("job:completed", () => done());
    await Bun.sleep(0);
    const t0 = performance.now();
    await producer.enqueue("noop", { i });
    await finished;
    off();
    latencies.push(startedAt - t0);
  }
  await worker.stop(1000);
  latencies.sort((a, b) => a - b);

  report(
    {
      backend,
      instances,
      jobs_per_s: Math.round(jobsPerS),
      enqueue_bulk_per_s: Math.round(enqueueBulkPerS),
      enqueue_single_per_s: Math.round(enqueueSinglePerS),
      latency_p50_ms: round(percentile(latencies, 50), 3),
      latency_p99_ms: round(percentile(latencies, 99), 3),
      n,
      concurrency,
      machine: machine(),
    },
    values.json,
  );
} finally {
  for (const c of cleanups.reverse()) await c().catch(() => {});
  rmSync(dir, { recursive: true, force: true });
}
