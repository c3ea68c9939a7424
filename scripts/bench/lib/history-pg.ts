/**
 * `bun run bench history --backend postgres`: the busy day of lib/history-data.ts on a PostgreSQL database
 * (built in bulk SQL over generate_series), the environment that points `easel serve` at it, and `--plans`
 * (EXPLAIN of the statements the request path runs, captured from a server built in-process on it).
 */
import { type ReservedSQL, SQL } from "bun";
import { migratePg } from "../../../src/db/pg/migrate";
import { sendReviewedRequests } from "./history-requests";

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const CHUNK = 100_000;
const LARGE_TABLE = 10_000;

/**
 * One chunk of the day, rows [$1, $2) of $4 ending at $3, every table in one statement: the same shape as
 * lib/history-data.ts writes on SQLite (types, statuses, owners, inputs and results alike), so both backends
 * serve the same history. MATERIALIZED: each row draws `k` once, so its type, input and result agree. Ids are
 * UUIDv7-shaped (time first), as the queue makes them.
 */
const CHUNK_SQL = `WITH r AS MATERIALIZED (
    SELECT i, fin, k,
      lpad(to_hex((fin - 4000) >> 16), 8, '0') || '-' || lpad(to_hex((fin - 4000) & 65535), 4, '0') || '-7'
        || lpad(to_hex(i % 4096), 3, '0') || '-8000-' || lpad(to_hex(i), 12, '0') AS id,
      CASE WHEN k < 70 THEN 'generate' WHEN k < 95 THEN 'card.render' ELSE 'webhook.deliver' END AS type,
      CASE WHEN i % 100 < 90 THEN 'completed' WHEN i % 100 < 97 THEN 'failed' WHEN i % 100 < 98 THEN 'partial'
        ELSE 'cancelled' END AS status,
      CASE WHEN k % 10 < 7 THEN 'user-' || (i % 1000) WHEN k % 10 < 9 THEN 'user-' || (1000 + i % 10) END AS owner_id
    FROM (SELECT i, $3::bigint - ${DAY} + (i * ${DAY}) / $4::bigint AS fin, floor(random() * 100)::int AS k
      FROM generate_series($1::bigint, $2::bigint - 1) AS i) g),
  j AS (
    INSERT INTO jobs (id, type, status, priority, input, result, error, progress, attempts, max_attempts, run_at,
      owner_id, credits_charged, created_at, started_at, finished_at, updated_at)
    SELECT id, type, status, 0,
      CASE WHEN k < 70 THEN '{"provider":"placeholder","size":"1024x1024","n":1,"output":"original"}'::jsonb
        WHEN k < 95 THEN jsonb_build_object('cardId', 'card-' || (i % 5000))
        ELSE jsonb_build_object('deliveryId', 'delivery-' || i) END,
      CASE WHEN status = 'completed' AND k < 70
          THEN '{"totalItems":1,"completedItems":1,"failedItems":0,"failedIds":[],"errors":{}}'::jsonb
        WHEN status = 'completed' AND k < 95 THEN '{"rendered":true}'::jsonb
        WHEN status = 'completed' THEN '{"status":200}'::jsonb END,
      CASE WHEN status <> 'completed'
        THEN '{"code":"provider_error","message":"upstream 500","retryable":true,"refundable":true}'::jsonb END,
      100, 1, 3, fin - 4000, owner_id, 1, fin - 4000, fin - 3000, fin, fin
    FROM r),
  items AS (
    INSERT INTO job_items (job_id, idx, key, input, status, attempts, updated_at)
    SELECT id, 0, 'main', '{"prompt":"a watercolour fox in the snow"}'::jsonb,
      CASE WHEN status = 'completed' THEN 'completed' ELSE 'failed' END, 1, fin
    FROM r WHERE type = 'generate'),
  attempts AS (
    INSERT INTO job_attempts (job_id, attempt, outcome, started_at, ended_at, error, retry_at)
    SELECT id, 1, 'retried', fin - 5000, fin - 4000,
      '{"code":"provider_error","message":"upstream 500","retryable":true,"refundable":true}'::jsonb, fin - 3000
    FROM r WHERE status = 'failed')
  INSERT INTO assets (id, job_id, item_idx, owner_id, storage_key, content_type, bytes, width, height, created_at)
  SELECT 'a-' || id, id, 0, owner_id, 'generations/bench/' || id || '.png', 'image/png', 123456, 1024, 1024, fin
  FROM r WHERE type = 'generate' AND status = 'completed' AND i % 5 = 0`;

/**
 * The ended counts and the throughput rollup, as the store would have kept them had these jobs ended one by
 * one: every job counts in the global scope, its owner's (`u:`) and its owner's parent's (`c:`).
 */
const SCOPED = `SELECT s.scope, j.type, j.status, j.finished_at / 60000 AS minute FROM jobs j
  LEFT JOIN users u ON u.id = j.owner_id
  CROSS JOIN LATERAL (VALUES (''), ('u:' || j.owner_id), ('c:' || u.parent_id)) AS s(scope)
  WHERE s.scope IS NOT NULL AND j.finished_at IS NOT NULL`;
const COUNTS_SQL = `INSERT INTO job_counts (scope, type, status, n)
  SELECT scope, type, status, count(*) FROM (${SCOPED}) s GROUP BY scope, type, status`;
const THROUGHPUT_SQL = `INSERT INTO job_throughput (scope, minute, type, status, n)
  SELECT scope, minute, type, status, count(*) FROM (${SCOPED}) s GROUP BY scope, minute, type, status`;

/**
 * Migrates the empty database at `url` and fills it with `n` finished jobs spread evenly over the 24 h
 * before `now` (see lib/history-data.ts for the mix), owned by an app's 1,000 end users, 10 plain users or
 * nobody.
 */
export async function buildHistoryPg(url: string, n: number, now: number): Promise<void> {
  const db = new SQL(url, { max: 1 });
  try {
    await migratePg(db);
    await db.unsafe(
      `INSERT INTO users (id, name, role, parent_id, credits, unlimited, created_at, updated_at)
       VALUES ('app', 'app', 'app', NULL, 0, true, 0, 0)`,
    );
    await db.unsafe(
      `INSERT INTO users (id, name, role, parent_id, credits, unlimited, created_at, updated_at)
       SELECT 'user-' || i, 'user ' || i, 'user', CASE WHEN i < 1000 THEN 'app' END, 0, false, 0, 0
       FROM generate_series(0, 1009) AS i`,
    );
    for (let from = 0; from < n; from += CHUNK) {
      await db.unsafe(CHUNK_SQL, [from, Math.min(n, from + CHUNK), now, n]);
    }
    await db.unsafe(COUNTS_SQL);
    await db.unsafe(THROUGHPUT_SQL);
    // What a day of autovacuum would have done to these tables: statistics for the planner, and the
    // visibility map that lets index-only scans skip the heap. Left to autovacuum, it would start during the
    // measurements instead.
    await db.unsafe("VACUUM (ANALYZE)");
  } finally {
    await db.close();
  }
}

/**
 * What `easel serve` needs besides history.ts's own settings to run on this database. Start-up refuses local
 * storage with DATABASE_URL unless it is declared shared; here one instance alone uses the bench's scratch
 * directory, so declaring it is true enough.
 */
export function pgServeEnv(url: string): Record<string, string> {
  return { DATABASE_URL: url, STORAGE_SHARED: "true" };
}

type Captured = { text: string; values: unknown[] };

/**
 * Records every statement `pool` sends (on the pool or on a connection it reserves for a transaction), with
 * the values as bound, into `record`. Wraps the pool before any service holds it.
 */
function capture(pool: SQL, record: (c: Captured) => void): void {
  const wrap = (conn: SQL | ReservedSQL) => {
    const unsafe = conn.unsafe.bind(conn);
    conn.unsafe = ((text: string, values?: unknown[]) => {
      record({ text, values: values ?? [] });
      return unsafe(text, values);
    }) as typeof conn.unsafe;
  };
  wrap(pool);
  const reserve = pool.reserve.bind(pool);
  pool.reserve = async () => {
    const conn = await reserve();
    wrap(conn);
    return conn;
  };
}

/** Thrown to roll back the retention slice `--plans` runs to capture its delete. */
class RollBack extends Error {}

/**
 * `--plans` on PostgreSQL: builds the server's services in-process on the database at `url` (storage in
 * `dataDir`), records every statement the reviewed requests, the queue engine and a retention slice send,
 * and prints each one's EXPLAIN (with the values it was run with) under what ran it, as Markdown. A plan
 * that reads a large table sequentially is marked ⚠.
 */
export async function printPlansPg(url: string, dataDir: string, adminKey: string): Promise<void> {
  const { loadConfig } = await import("../../../src/config");
  const { openPostgres } = await import("../../../src/db/open");
  const { createServices } = await import("../../../src/services");
  const { createApp } = await import("../../../src/app");
  const { silentLogger } = await import("../../../src/log");
  const ran = new Map<string, Map<string, Captured>>();
  let current = "start-up";
  const record = (c: Captured) => {
    const key = c.text.replace(/\s+/g, " ").trim();
    if (!/^(WITH|SELECT|UPDATE|DELETE|INSERT)/i.test(key)) return;
    if (!ran.has(current)) ran.set(current, new Map());
    ran.get(current)!.set(key, c);
  };
  const database = await openPostgres(url);
  if (database.backend !== "postgres") throw new Error("not PostgreSQL");
  capture(database.pool, record);
  capture(database.relaxed.pool, record);
  const config = loadConfig({
    ...process.env,
    DATA_DIR: dataDir,
    DATABASE_URL: url,
    STORAGE_SHARED: "true",
    ADMIN_KEY: adminKey,
    NODE_ENV: "production",
    JWT_SECRET: "bench-secret-bench-secret-bench-secret-01",
  });
  const ctx = createServices(config, { log: silentLogger, database });
  await ctx.auth.bootstrapAdmin();
  const app = createApp(ctx);
  current = "(setup)";
  const someJob = (await ctx.sql.get<{ id: string }>("SELECT id FROM jobs ORDER BY id DESC LIMIT 1"))!.id;
  await sendReviewedRequests(app, ctx.auth, {
    adminKey,
    someJob,
    onRequest: (label) => {
      current = label;
    },
  });
  current = "storage sweep (which keys rows still reference)";
  await ctx.assets.referenced(["inputs/0/image.png", "generations/bench/x.png", "cards/x-1-1.png"]);
  current = "queue engine (claim, next wake-up, stalled sweep)";
  const backend = ctx.queue.backend;
  await backend.claim("plans", ["generate", "card.render"], 8, Date.now(), 30_000);
  await backend.nextRunAt();
  await ctx.queue.recoverStalled(false);
  current = "retention slice (rolled back)";
  await backend
    .retentionTransaction(async () => {
      const slice = await backend.retentionSlice("completed", Date.now() - HOUR, null, 1000);
      await ctx.assets.takeForJobs(slice.ids);
      await slice.delete();
      throw new RollBack();
    })
    .catch((err) => {
      if (!(err instanceof RollBack)) throw err;
    });
  await backend.trimThroughput(Math.floor((Date.now() - 168 * HOUR) / 60_000), 1000);

  const explain = new SQL(url, { max: 1 });
  // A sequential read of a table this size or larger is marked; of a smaller one it is the planner's choice
  // (the built history has no deliveries or ledger, and a few thousand users).
  const large = new Set(
    (
      (await explain`SELECT relname FROM pg_class WHERE relkind = 'r' AND reltuples >= ${LARGE_TABLE}`) as {
        relname: string;
      }[]
    ).map((r) => r.relname),
  );
  const out: string[] = [];
  for (const [label, statements] of ran) {
    if (label === "(setup)" || label === "start-up") continue;
    out.push(`### ${label}`, "");
    for (const [template, { text, values }] of statements) {
      let plan: string[];
      try {
        const rows = (await explain.unsafe(`EXPLAIN ${text}`, values)) as Record<string, string>[];
        plan = rows.map((r) => r["QUERY PLAN"]!);
      } catch (err) {
        plan = [`(not explained: ${(err as Error).message})`];
      }
      const scan = plan.some((l) => large.has(/Seq Scan on (\w+)/.exec(l)?.[1] ?? ""));
      const shown = template.length > 220 ? `${template.slice(0, 220)}…` : template;
      out.push(`- ${scan ? "⚠ scan: " : ""}\`${shown}\``, "", "  ```");
      // Bound arrays (a slice's ids) are printed whole in the plan: the first 200 characters say enough.
      for (const line of plan) out.push(`  ${line.length > 200 ? `${line.slice(0, 200)}…` : line}`);
      out.push("  ```");
    }
    out.push("");
  }
  process.stdout.write(`${out.join("\n")}\n`);
  await explain.close();
  await ctx.queue.stop(1000).catch(() => {});
  await database.close();
}
