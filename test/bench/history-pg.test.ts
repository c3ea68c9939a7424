/**
 * `bun run bench history --backend postgres` at a small size, as a person runs it: a child process that
 * builds the history on a scratch database of the test server, serves it with `easel serve`, prints its
 * figures (or its plans), and drops the database.
 */
import { describe, expect, test } from "bun:test";
import { SQL } from "bun";
import { PG_TEST_URL } from "../db/pg-helpers";
import { expectExit, runBun } from "../helpers";

const ROWS = 2000;

/** The history benchmark's scratch databases on the server now. */
async function benchDatabases(): Promise<string[]> {
  const admin = new SQL(PG_TEST_URL, { max: 1 });
  try {
    const rows = await admin`SELECT datname FROM pg_database WHERE datname LIKE 'easel_bench_history_%'`;
    return (rows as { datname: string }[]).map((r) => r.datname);
  } finally {
    await admin.close();
  }
}

/** Runs the benchmark; fails if it left a scratch database of its own behind (one of another run may come). */
async function bench(...args: string[]) {
  const before = new Set(await benchDatabases());
  const run = await runBun(
    ["scripts/bench/history.ts", "--backend", "postgres", "--rows", String(ROWS), ...args],
    { EASEL_TEST_DATABASE_URL: PG_TEST_URL },
  );
  expect((await benchDatabases()).filter((name) => !before.has(name))).toEqual([]);
  return run;
}

describe("bench history --backend postgres", () => {
  test("reports every figure of the SQLite run, measured on a server running on PostgreSQL", async () => {
    const run = await bench("--requests", "20", "--json");
    expectExit(run, 0);
    const out = JSON.parse(run.stdout.trim().split("\n").at(-1)!) as Record<string, unknown>;
    expect(out.backend).toBe("postgres");
    expect(out.rows).toBe(ROWS);
    for (const field of [
      "build_s",
      "stats_p99_ms",
      "metrics_p99_ms",
      "overview_p99_ms",
      "stats_p50_ms",
      "metrics_p50_ms",
      "overview_p50_ms",
      "retention_s",
      "retention_rows_per_s",
      "retention_rows_per_s_without_vacuum",
      "retention_max_stall_ms",
      "health_p99_ms_during",
      "health_p50_ms",
      "retention_health_p99_ms",
      "health_max_ms",
    ]) {
      expect({ field, value: out[field] }).toEqual({ field, value: expect.any(Number) });
      expect({ field, finite: Number.isFinite(out[field]) && (out[field] as number) >= 0 }).toEqual({
        field,
        finite: true,
      });
    }
    // The rows span the last 24 h and retention keeps one: about 23/24 of them go, and what stays is the
    // completed part of the last hour, which the server's own stats report afterwards.
    const deleted = out.retention_rows as number;
    expect(deleted).toBeGreaterThan(ROWS * 0.9);
    expect(deleted).toBeLessThan(ROWS);
    expect(out.completed_left).toBeGreaterThan(0);
    expect(out.completed_left as number).toBeLessThanOrEqual(ROWS - deleted);
    expect(out.retention_rows_per_s).toBeGreaterThan(0);
    // Percentiles of the same probes are ordered; the maximum bounds them all.
    expect(out.health_p50_ms as number).toBeLessThanOrEqual(out.health_p99_ms_during as number);
    expect(out.health_p99_ms_during as number).toBeLessThanOrEqual(out.health_max_ms as number);
    expect(out.retention_max_stall_ms as number).toBeLessThanOrEqual(out.health_max_ms as number);
    expect(out.stats_p50_ms as number).toBeLessThanOrEqual(out.stats_p99_ms as number);
    expect(out.health_probes).toBeGreaterThan(0);
    expect(out.retention_vacuum_s).toBe(0);
    expect(out.machine).toMatchObject({ cores: expect.any(Number) });
  });

  test("--plans explains every statement the reviewed requests ran on PostgreSQL", async () => {
    const run = await bench("--plans");
    expectExit(run, 0);
    expect(run.stderr).not.toContain("HTTP ");
    const sections = run.stdout.split(/^### /m).slice(1);
    const labels = sections.map((s) => s.split("\n")[0]);
    expect(labels).toContain("GET /api/jobs/stats (admin)");
    expect(labels).toContain("GET /metrics");
    expect(labels).toContain("GET /dashboard/fragments/overview (admin)");
    expect(labels).toContain("retention slice (rolled back)");
    expect(run.stdout).not.toContain("not explained");
    // Each statement shows a PostgreSQL plan (its nodes carry cost estimates).
    const statements = run.stdout.split("\n- ").length - 1;
    expect(statements).toBeGreaterThan(30);
    expect(run.stdout.match(/\(cost=/g)?.length ?? 0).toBeGreaterThanOrEqual(statements);
    // The stats read the counters, not the jobs they count.
    const stats = sections.find((s) => s.startsWith("GET /api/jobs/stats (admin)"))!;
    expect(stats).toContain("job_counts");
    expect(stats).not.toMatch(/Seq Scan on jobs\b/);
  });
});
