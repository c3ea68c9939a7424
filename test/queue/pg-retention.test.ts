import { describe, expect, test } from "bun:test";
import { queueBackends } from "./backends";

const postgres = queueBackends().find(([kind]) => kind === "postgres")![1];

describe("retention slices (PostgreSQL)", () => {
  test("retention deletes in slices of 2,000 rows: a slice is awaited I/O, so it is sized for its round trips, not for the event loop", async () => {
    const q = await postgres.queue();
    const old = Date.now() - 48 * 3_600_000;
    const now = Date.now();
    // 5,000 jobs past retention with an item each, 3 recent ones; counted as the store would have.
    await q.sql.run(
      `INSERT INTO jobs (id, type, status, input, max_attempts, run_at, created_at, finished_at, updated_at)
       SELECT 'old-' || lpad(i::text, 6, '0'), 'render', 'completed', '{}'::jsonb, 1, ? + i, ? + i, ? + i, ? + i
       FROM generate_series(1, 5000) AS i
       UNION ALL SELECT 'new-' || i, 'render', 'completed', '{}'::jsonb, 1, ?, ?, ?, ? FROM generate_series(1, 3) AS i`,
      [old, old, old, old, now, now, now, now],
    );
    await q.sql.run(
      `INSERT INTO job_items (job_id, idx, key, input, status, attempts, updated_at)
       SELECT id, 0, 'main', '{}'::jsonb, 'completed', 1, finished_at FROM jobs`,
    );
    await q.sql.run(
      "INSERT INTO job_counts (scope, type, status, n) VALUES ('', 'render', 'completed', 5003)",
    );

    const slices: number[] = [];
    const deleted = await q.cleanupRetention({
      completedHours: 24,
      failedHours: 24,
      beforeDelete: (ids) => void slices.push(ids.length),
    });

    expect(deleted).toBe(5000);
    expect(slices).toEqual([2000, 2000, 1000]);
    // The foreign keys took the items with their jobs, and the counts follow the deletes exactly.
    const left = await q.sql.get<{ jobs: number; items: number; counted: number }>(
      `SELECT (SELECT count(*) FROM jobs) AS jobs, (SELECT count(*) FROM job_items) AS items,
         (SELECT n FROM job_counts WHERE scope = '' AND type = 'render' AND status = 'completed') AS counted`,
    );
    expect(left).toEqual({ jobs: 3, items: 3, counted: 3 });
    expect((await q.stats()).completed).toBe(3);
  });
});
