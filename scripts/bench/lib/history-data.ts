/** The history benchmarks' data: a busy day of finished jobs, written in bulk SQL (history.ts, retention.ts). */
import { openDb } from "../../../src/db/client";
import { QueueStore } from "../../../src/queue/store";

const HOUR = 3_600_000;

/**
 * `rows` finished jobs spread evenly over the last 24 h, owned by an app's 1,000 end users, a few plain
 * users or nobody; 70 % `generate` (one item each, an asset row for every fifth), 25 % `card.render`,
 * 5 % `webhook.deliver`; 90 % completed, 7 % failed (with an earlier attempt), 1 % partial, 2 % cancelled.
 * Ids are UUIDv7-shaped (time first), as the queue makes them; inputs, results and items are shaped as each
 * job type writes them, so the job views decode them as they decode real ones.
 */
export function buildHistory(path: string, n: number, now: number): void {
  const db = openDb(path).$client;
  db.run(
    `INSERT INTO users (id, name, role, parent_id, credits, unlimited, created_at, updated_at)
     VALUES ('app', 'app', 'app', NULL, 0, 1, 0, 0)`,
  );
  db.run(
    `WITH RECURSIVE u(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM u WHERE i < 1009)
     INSERT INTO users (id, name, role, parent_id, credits, unlimited, created_at, updated_at)
     SELECT 'user-' || i, 'user ' || i, 'user', CASE WHEN i < 1000 THEN 'app' END, 0, 0, 0, 0 FROM u`,
  );
  const chunk = 100_000;
  const maxRowid = db.query("SELECT coalesce(max(rowid), 0) AS r FROM jobs");
  for (let from = 0; from < n; from += chunk) {
    const to = Math.min(n, from + chunk);
    db.transaction(() => {
      const { r: before } = maxRowid.get() as { r: number };
      // MATERIALIZED: each row draws `k` once, so its type, input and result agree (a CTE that SQLite
      // flattens evaluates random() again at every use of k).
      db.run(
        `WITH RECURSIVE c(i) AS (SELECT ?1 UNION ALL SELECT i + 1 FROM c WHERE i + 1 < ?2),
         r AS MATERIALIZED (SELECT i, ?3 - 24 * ${HOUR} + (i * 24 * ${HOUR}) / ?4 AS fin, abs(random()) % 100 AS k FROM c)
         INSERT INTO jobs (id, type, status, priority, input, result, error, progress, attempts, max_attempts, run_at,
           owner_id, credits_charged, created_at, started_at, finished_at, updated_at)
         SELECT printf('%08x-%04x-7%03x-8000-%012x', (fin - 4000) >> 16, (fin - 4000) & 65535, i % 4096, i),
           CASE WHEN k < 70 THEN 'generate' WHEN k < 95 THEN 'card.render' ELSE 'webhook.deliver' END,
           CASE WHEN i % 100 < 90 THEN 'completed' WHEN i % 100 < 97 THEN 'failed' WHEN i % 100 < 98 THEN 'partial'
             ELSE 'cancelled' END,
           0,
           CASE WHEN k < 70 THEN '{"provider":"placeholder","size":"1024x1024","n":1,"output":"original"}'
             WHEN k < 95 THEN '{"cardId":"card-' || (i % 5000) || '"}' ELSE '{"deliveryId":"delivery-' || i || '"}' END,
           CASE WHEN i % 100 < 90 AND k < 70
               THEN '{"totalItems":1,"completedItems":1,"failedItems":0,"failedIds":[],"errors":{}}'
             WHEN i % 100 < 90 AND k < 95 THEN '{"rendered":true}'
             WHEN i % 100 < 90 THEN '{"status":200}' END,
           CASE WHEN i % 100 >= 90 THEN '{"code":"provider_error","message":"upstream 500","retryable":true,"refundable":true}' END,
           100, 1, 3, fin - 4000,
           CASE WHEN k % 10 < 7 THEN 'user-' || (i % 1000) WHEN k % 10 < 9 THEN 'user-' || (1000 + i % 10) END,
           1, fin - 4000, fin - 3000, fin, fin
         FROM r`,
        [from, to, now, n],
      );
      db.run(
        `INSERT INTO job_items (job_id, idx, key, input, status, attempts, updated_at)
         SELECT id, 0, 'main', '{"prompt":"a watercolour fox in the snow"}',
           CASE WHEN status = 'completed' THEN 'completed' ELSE 'failed' END, 1, finished_at
         FROM jobs WHERE rowid > ? AND type = 'generate'`,
        [before],
      );
    })();
  }
  db.run(
    `INSERT INTO job_attempts (job_id, attempt, outcome, started_at, ended_at, error, retry_at)
     SELECT id, 1, 'retried', started_at - 2000, started_at - 1000, error, started_at FROM jobs WHERE status = 'failed'`,
  );
  db.run(
    `INSERT INTO assets (id, job_id, item_idx, owner_id, storage_key, content_type, bytes, width, height, created_at)
     SELECT 'a-' || id, id, 0, owner_id, 'generations/bench/' || id || '.png', 'image/png', 123456, 1024, 1024, finished_at
     FROM jobs WHERE type = 'generate' AND status = 'completed' AND rowid % 5 = 0`,
  );
  // Bulk SQL bypasses the store: count the ended jobs, and the rollup as the store would have kept it had
  // these jobs ended one by one.
  new QueueStore(db).recountEnded();
  db.run(
    `INSERT INTO job_throughput (scope, minute, type, status, n)
     SELECT '', finished_at / 60000, type, status, count(*) FROM jobs GROUP BY 2, 3, 4`,
  );
  db.run(
    `INSERT INTO job_throughput (scope, minute, type, status, n)
     SELECT 'u:' || owner_id, finished_at / 60000, type, status, count(*) FROM jobs WHERE owner_id IS NOT NULL
     GROUP BY 1, 2, 3, 4`,
  );
  db.run(
    `INSERT INTO job_throughput (scope, minute, type, status, n)
     SELECT 'c:' || u.parent_id, j.finished_at / 60000, j.type, j.status, count(*) FROM jobs j
       JOIN users u ON u.id = j.owner_id WHERE u.parent_id IS NOT NULL GROUP BY 1, 2, 3, 4`,
  );
  db.run("PRAGMA wal_checkpoint(TRUNCATE)");
  db.close();
}
