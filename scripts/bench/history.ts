/**
 * A busy day's history against a real server: builds a data directory holding `--rows` finished jobs (with
 * their items, attempts and asset rows; bulk SQL, so the build is quick), starts `easel serve` on it in a
 * child process, and measures what summarises history while `/api/health/live` is probed every 20 ms:
 *
 * - stats_p99_ms, metrics_p99_ms, overview_p99_ms (and p50s): `GET /api/jobs/stats`, `GET /metrics`, the
 *   dashboard overview fragment (what its page refreshes every 2 s), `--requests` times each, one at a time;
 * - then the server is restarted with a 1 h retention, so the retention run at start-up finds the rows
 *   finished earlier (about 96 % of them) past retention: retention_rows_per_s is from the server's own
 *   report (rows deleted / its duration, the incremental vacuum after the deletes included; that part
 *   alone is retention_vacuum_s, and retention_rows_per_s_without_vacuum the rate without it),
 *   retention_max_stall_ms the slowest health probe during it
 *   (retention_health_p99_ms their p99);
 * - health_p99_ms_during: the health probes' p99 over all of the above; health_max_ms their maximum;
 * - with `--db-probe`, `GET /api/jobs/stats` (a request that waits for the database) is also probed every
 *   50 ms during retention: retention_db_probe_p50_ms / _p99_ms / _max_ms.
 *
 *   bun run bench history [--json] [--rows 1000000] [--requests 200] [--db-probe]
 *     [--backend sqlite|postgres] [--url …]
 *
 * `--plans` prints EXPLAIN QUERY PLAN of the request-path queries on the built database instead.
 * `--backend postgres` builds the same history on a scratch database of the server at `--url` (a
 * maintenance URL; default EASEL_TEST_DATABASE_URL, scripts/pg-test-cluster.sh), dropped afterwards, and
 * serves it with DATABASE_URL (lib/history-pg.ts); its `--plans` prints EXPLAIN of the same requests.
 */
import { Database } from "bun:sqlite";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { QueueStore } from "../../src/queue/store";
import { PG_TEST_URL } from "../../test/db/pg-helpers";
import { buildHistory } from "./lib/history-data";
import { buildHistoryPg, pgServeEnv, printPlansPg } from "./lib/history-pg";
import { sendReviewedRequests } from "./lib/history-requests";
import { type BenchDatabase, benchDatabase } from "./lib/pg-database";
import { machine, percentile, report, round } from "./machine";

const { values } = parseArgs({
  options: {
    json: { type: "boolean", default: false },
    rows: { type: "string", default: "1000000" },
    requests: { type: "string", default: "200" },
    plans: { type: "boolean", default: false },
    backend: { type: "string", default: "sqlite" },
    url: { type: "string", default: PG_TEST_URL },
    "db-probe": { type: "boolean", default: false },
  },
});
const backend = values.backend;
if (backend !== "sqlite" && backend !== "postgres") throw new Error("--backend is sqlite or postgres");
const rows = Number(values.rows);
const requests = Number(values.requests);
const ROOT = resolve(import.meta.dir, "../..");
const ADMIN_KEY = "esk_bench_admin_key_0123456789abcdef";
const HOUR = 3_600_000;

type Server = { proc: Bun.Subprocess<"ignore", "pipe", "inherit">; url: string; lines: string[] };

/** `easel serve` in a child process; resolves once it logs that it listens. Its JSON log lines are kept. */
async function serve(dataDir: string, env: Record<string, string>): Promise<Server> {
  const proc = Bun.spawn(["bun", join(ROOT, "src/main.ts"), "serve"], {
    cwd: ROOT,
    env: {
      ...process.env,
      NODE_ENV: "production",
      DATA_DIR: dataDir,
      PORT: "0",
      HOST: "127.0.0.1",
      LOG_LEVEL: "info",
      ADMIN_KEY,
      JWT_SECRET: "bench-secret-bench-secret-bench-secret-01",
      ...(pg ? pgServeEnv(pg.url) : {}),
      ...env,
    },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "inherit",
  });
  const lines: string[] = [];
  const { promise: ready, resolve: listening } = Promise.withResolvers<string>();
  (async () => {
    let buf = "";
    for await (const chunk of proc.stdout) {
      buf += new TextDecoder().decode(chunk);
      let nl = buf.indexOf("\n");
      while (nl >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        lines.push(line);
        const m = /"port":(\d+).*"msg":"easel listening"/.exec(line);
        if (m) listening(`http://127.0.0.1:${m[1]}`);
        nl = buf.indexOf("\n");
      }
    }
  })();
  const url = await Promise.race([
    ready,
    proc.exited.then((code) => Promise.reject(new Error(`server exited with ${code}`))),
  ]);
  return { proc, url, lines };
}

/** Probes `/api/health/live` (or `path`) every `everyMs` until stopped; returns each probe's latency. */
function healthProbe(
  url: string,
  path = "/api/health/live",
  everyMs = 20,
  headers: Record<string, string> = {},
) {
  const latencies: number[] = [];
  let stopped = false;
  const done = (async () => {
    while (!stopped) {
      const t = performance.now();
      await fetch(`${url}${path}`, { headers }).then((r) => r.arrayBuffer());
      latencies.push(performance.now() - t);
      await Bun.sleep(Math.max(0, everyMs - (performance.now() - t)));
    }
  })();
  return {
    latencies,
    stop: async () => {
      stopped = true;
      await done;
      return latencies;
    },
  };
}

async function timeRequests(url: string, path: string, headers: Record<string, string>): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < requests; i++) {
    const t = performance.now();
    const res = await fetch(`${url}${path}`, { headers });
    await res.arrayBuffer();
    if (!res.ok) throw new Error(`${path}: HTTP ${res.status}`);
    out.push(performance.now() - t);
  }
  return out.sort((a, b) => a - b);
}

async function dashboardCookie(url: string): Promise<string> {
  const res = await fetch(`${url}/dashboard/login`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: `key=${ADMIN_KEY}`,
    redirect: "manual",
  });
  const cookie = res.headers.get("set-cookie");
  if (!cookie) throw new Error(`dashboard sign-in failed: HTTP ${res.status}`);
  return cookie.split(";")[0]!;
}

const p99 = (xs: number[]) => round(percentile(xs, 99));
const p50 = (xs: number[]) => round(percentile(xs, 50));

/**
 * `--plans`: serves the built database in-process, records every statement the requests below execute
 * (wrapping bun:sqlite's prepare/query/run before any service exists), and prints each one's EXPLAIN
 * QUERY PLAN under the request that ran it, as Markdown. A plan line that scans a table with no index
 * (`SCAN jobs`, not `SCAN jobs USING INDEX …`) is marked.
 */
async function printPlans(dataDir: string): Promise<void> {
  const ran = new Map<string, Map<string, string>>();
  let current = "start-up";
  const record = (template: string, expanded: string) => {
    const key = template.replace(/\s+/g, " ").trim();
    if (!/^(WITH|SELECT|UPDATE|DELETE|INSERT)/i.test(key)) return;
    if (!ran.has(current)) ran.set(current, new Map());
    ran.get(current)!.set(key, expanded);
  };
  const proto = Database.prototype as unknown as Record<string, (...a: unknown[]) => unknown>;
  for (const method of ["prepare", "query"] as const) {
    const original = proto[method]!;
    proto[method] = function (this: Database, sql: unknown, ...rest: unknown[]) {
      const stmt = original.call(this, sql, ...rest) as Record<string, (...a: unknown[]) => unknown>;
      for (const run of ["all", "get", "run", "values"]) {
        const call = stmt[run]!;
        stmt[run] = (...args: unknown[]) => {
          const out = call.apply(stmt, args);
          record(String(sql), String(stmt));
          return out;
        };
      }
      return stmt;
    };
  }
  const { loadConfig } = await import("../../src/config");
  const { createServices } = await import("../../src/services");
  const { createApp } = await import("../../src/app");
  const { silentLogger } = await import("../../src/log");
  const config = loadConfig({ ...process.env, DATA_DIR: dataDir, ADMIN_KEY, NODE_ENV: "production" });
  const ctx = createServices(config, { log: silentLogger });
  await ctx.auth.bootstrapAdmin();
  const app = createApp(ctx);
  const someJob = (
    ctx.db.$client.query("SELECT id FROM jobs ORDER BY id DESC LIMIT 1").get() as { id: string }
  ).id;
  await sendReviewedRequests(app, ctx.auth, {
    adminKey: ADMIN_KEY,
    someJob,
    onRequest: (label) => {
      current = label;
    },
  });
  current = "storage sweep (which keys rows still reference)";
  ctx.assets.referenced(["inputs/0/image.png", "generations/bench/x.png", "cards/x-1-1.png"]);
  current = "queue engine (claim, next wake-up, stalled sweep)";
  const store = new QueueStore(ctx.db.$client);
  store.claim("plans", ["generate", "card.render"], 8, Date.now(), 30_000);
  store.nextRunAt();
  await ctx.queue.recoverStalled(false);
  current = "retention slice";
  await ctx.queue.cleanupRetention({ completedHours: 1, failedHours: 1, signal: AbortSignal.abort() });
  store.deleteFinishedSlice("completed", Date.now() - HOUR, null, 1);

  const explain = new Database(join(dataDir, "easel.db"), { readonly: true });
  const out: string[] = [];
  for (const [label, statements] of ran) {
    if (label.includes("(setup)") || label === "start-up") continue;
    out.push(`### ${label}`, "");
    for (const [template, expanded] of statements) {
      let plan: string[];
      try {
        plan = (explain.query(`EXPLAIN QUERY PLAN ${expanded}`).all() as { detail: string }[]).map(
          (r) => r.detail,
        );
      } catch (err) {
        plan = [`(not explained: ${(err as Error).message})`];
      }
      // A full scan of a history table, or a walk of one that only a LIMIT stops: the second is fine
      // when most rows match (newest first), which the review says case by case.
      const full = plan.some((l) =>
        /^SCAN (jobs|job_items|assets|job_attempts|webhook_deliveries|credit_ledger)$/.test(l),
      );
      const walk = plan.some((l) => /^SCAN (jobs|webhook_deliveries|credit_ledger|cards) USING/.test(l));

      out.push(
        `- ${full ? "⚠ scan: " : walk ? "↓ walk: " : ""}\`${template.length > 220 ? `${template.slice(0, 220)}…` : template}\``,
      );
      for (const line of plan) out.push(`  - ${line}`);
    }
    out.push("");
  }
  process.stdout.write(`${out.join("\n")}\n`);
  ctx.db.$client.close();
}

const dir = mkdtempSync(join(tmpdir(), "easel-bench-history-"));
const pg: BenchDatabase | null = backend === "postgres" ? await benchDatabase(values.url, "history") : null;
try {
  const now = Date.now();
  const t0 = performance.now();
  if (pg) await buildHistoryPg(pg.url, rows, now);
  else buildHistory(join(dir, "easel.db"), rows, now);
  const buildS = (performance.now() - t0) / 1000;
  if (values.plans) await (pg ? printPlansPg(pg.url, dir, ADMIN_KEY) : printPlans(dir));
  else await measure(buildS);
} finally {
  rmSync(dir, { recursive: true, force: true });
  await pg?.drop();
}

async function measure(buildS: number): Promise<void> {
  // 1. Summaries of a full day while nothing is past retention.
  let server = await serve(dir, { RETAIN_COMPLETED_HOURS: "48", RETAIN_FAILED_HOURS: "48" });
  const auth = { authorization: `Bearer ${ADMIN_KEY}` };
  const probe = healthProbe(server.url);
  const stats = await timeRequests(server.url, "/api/jobs/stats", auth);
  const metrics = await timeRequests(server.url, "/metrics", {});
  const cookie = await dashboardCookie(server.url);
  const overview = await timeRequests(server.url, "/dashboard/fragments/overview", { cookie });
  const beforeRetention = (await probe.stop()).slice();
  server.proc.kill("SIGTERM");
  await server.proc.exited;

  // 2. A restart with a 1 h retention: the start-up run finds ~96 % of the rows past it.
  server = await serve(dir, { RETAIN_COMPLETED_HOURS: "1", RETAIN_FAILED_HOURS: "1" });
  const during = healthProbe(server.url);
  const dbProbe = values["db-probe"] ? healthProbe(server.url, "/api/jobs/stats", 50, auth) : null;
  let retention: { jobs: number; ms: number; vacuumMs?: number } | null = null;
  while (!retention) {
    const line = server.lines.find((l) => l.includes('"msg":"retention cleanup"'));
    if (line) retention = JSON.parse(line) as { jobs: number; ms: number; vacuumMs?: number };
    else await Bun.sleep(50);
  }
  const retentionProbes = await during.stop();
  const dbProbes = ((await dbProbe?.stop()) ?? []).sort((a, b) => a - b);
  const left = (await (await fetch(`${server.url}/api/jobs/stats`, { headers: auth })).json()) as {
    completed: number;
  };
  server.proc.kill("SIGTERM");
  await server.proc.exited;

  const health = [...beforeRetention, ...retentionProbes].sort((a, b) => a - b);
  report(
    {
      backend,
      rows,
      build_s: round(buildS, 1),
      stats_p99_ms: p99(stats),
      metrics_p99_ms: p99(metrics),
      overview_p99_ms: p99(overview),
      stats_p50_ms: p50(stats),
      metrics_p50_ms: p50(metrics),
      overview_p50_ms: p50(overview),
      retention_rows: retention.jobs,
      retention_s: round(retention.ms / 1000, 2),
      retention_rows_per_s: Math.round(retention.jobs / (retention.ms / 1000)),
      retention_vacuum_s: round((retention.vacuumMs ?? 0) / 1000, 2),
      // The same run without its final incremental vacuum (the file handing back the pages it freed).
      retention_rows_per_s_without_vacuum: Math.round(
        retention.jobs / ((retention.ms - (retention.vacuumMs ?? 0)) / 1000),
      ),
      retention_max_stall_ms: round(Math.max(...retentionProbes)),
      completed_left: left.completed,
      health_p99_ms_during: p99(health),
      health_p50_ms: p50(health),
      retention_health_p99_ms: p99(retentionProbes.toSorted((a, b) => a - b)),
      health_max_ms: round(health.at(-1) ?? 0),
      health_probes: health.length,
      ...(dbProbe
        ? {
            retention_db_probe_p50_ms: p50(dbProbes),
            retention_db_probe_p99_ms: p99(dbProbes),
            retention_db_probe_max_ms: round(dbProbes.at(-1) ?? 0),
          }
        : {}),
      machine: machine(),
    },
    values.json,
  );
}
