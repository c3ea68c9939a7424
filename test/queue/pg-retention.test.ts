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

  test("a slice's delete counts itself in every scope: the owner's, and the owner's app for an end user's job", async () => {
    const q = await postgres.queue();
    await q.sql.run(
      `INSERT INTO users (id, name, role, parent_id, credits, unlimited, created_at, updated_at)
       VALUES ('app', 'app', 'app', NULL, 0, true, 0, 0), ('end', 'end', 'user', 'app', 0, false, 0, 0),
         ('solo', 'solo', 'user', NULL, 0, false, 0, 0)`,
    );
    const old = Date.now() - 48 * 3_600_000;
    const now = Date.now();
    // 300 old and 2 recent jobs of each owner (none, an end user of the app, a plain user), of two
    // types and two ended statuses.
    await q.sql.run(
      `INSERT INTO jobs (id, type, status, input, max_attempts, run_at, owner_id, created_at, finished_at, updated_at)
       SELECT 'j-' || o.n || '-' || i, CASE WHEN i % 3 = 0 THEN 'card' ELSE 'render' END,
         CASE WHEN i % 5 = 0 THEN 'failed' ELSE 'completed' END, '{}'::jsonb, 1, 0, o.owner, 0,
         CASE WHEN i > 300 THEN ? ELSE ? + i END, 0
       FROM generate_series(1, 302) AS i
       CROSS JOIN (VALUES (1, NULL), (2, 'end'), (3, 'solo')) AS o(n, owner)`,
      [now, old],
    );
    // The ended counts as the store keeps them, from the rows.
    const recount = `SELECT s.scope, j.type, j.status, count(*)::bigint AS n FROM jobs j
      LEFT JOIN users u ON u.id = j.owner_id
      CROSS JOIN LATERAL (VALUES (''), ('u:' || j.owner_id), ('c:' || u.parent_id)) AS s(scope)
      WHERE s.scope IS NOT NULL GROUP BY 1, 2, 3`;
    await q.sql.run(`INSERT INTO job_counts (scope, type, status, n) ${recount}`);

    expect(await q.cleanupRetention({ completedHours: 24, failedHours: 24 })).toBe(900);

    const kept = (
      await q.sql.all<{ scope: string; type: string; status: string; n: number }>(
        "SELECT scope, type, status, n FROM job_counts WHERE n <> 0 ORDER BY 1, 2, 3",
      )
    ).map((r) => `${r.scope}/${r.type}/${r.status}=${r.n}`);
    const actual = (
      await q.sql.all<{ scope: string; type: string; status: string; n: number }>(
        `${recount} ORDER BY 1, 2, 3`,
      )
    ).map((r) => `${r.scope}/${r.type}/${r.status}=${r.n}`);
    expect(kept).toEqual(actual);
    expect(kept).toContain("c:app/render/completed=2");
    expect(kept).toContain("u:solo/render/completed=2");
  });
});
