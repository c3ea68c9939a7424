/**
 * Instant claims over HTTP: `easel serve` runs in its own process on a fresh data dir holding a large ready
 * backlog (completed backlog jobs with their item and asset rows, inserted straight into the database for
 * setup speed); this process is the client. Each claim is the full path: auth, credit check, the claim
 * transaction (take the oldest ready job, transfer it and its assets, charge, count usage, queue the debounced
 * top-up) and the JSON response with asset URLs. Claims are spread over `users` users with plenty of credits;
 * the rate limit is off. `server_cpu_us_per_claim` is the server processes' CPU time (all their threads) over
 * the concurrent claims, divided by their number: on a shared machine it moves far less with the load than
 * claims/s does, so it is the figure to compare between builds.
 *
 * `--backend postgres` runs the same on a fresh database on `--url` (default EASEL_TEST_DATABASE_URL, see
 * scripts/pg-test-cluster.sh), dropped afterwards: the servers get DATABASE_URL and share the data dir
 * (STORAGE_SHARED). `--instances 2` starts two servers on that database and splits the clients over them
 * (the cluster's throughput). `postgres_cpu_us_per_claim` is the CPU of the PostgreSQL backends serving the
 * servers' connections, per concurrent claim. `client_cpu_us_per_claim` is this process's (the HTTP clients'):
 * on 2 cores, the three together bound claims/s at 2,000,000 µs over their sum.
 *
 * `--warm N` has the clients make N concurrent claims, unmeasured, before the measured ones: a server that has
 * run for a while (every JIT tier compiled), where the default measures a server seconds after its start.
 * `--cpu-prof DIR` has each server write a CPU profile (Markdown, `bun --cpu-prof-md`) into DIR as it stops.
 * With `BENCH_KEEP_DB=1` in the environment the PostgreSQL database is left in place afterwards (its name is
 * printed to stderr), for EXPLAIN ANALYZE and the statistics views on the state the claims left behind.
 *
 *   bun run bench claim [--json] [--backend sqlite|postgres] [--instances 1|2] [--ready 20000]
 *     [--sequential 2000] [--warm 0] [--concurrent 16000] [--clients 64] [--users 64] [--url postgres://…]
 *     [--cpu-prof DIR]
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { loadConfig } from "../../src/config";
import { openPostgres } from "../../src/db/open";
import { redactUrl } from "../../src/db/pg/client";
import { silentLogger } from "../../src/log";
import { CreateRecipeBody } from "../../src/modules/recipes/model";
import { createServices } from "../../src/services";
import { PG_TEST_URL } from "../../test/db/pg-helpers";
import { seedReadyBacklog } from "../../test/fixtures/seed-backlog";
import { cpuSpan } from "./lib/cpu";
import { type BenchDatabase, benchDatabase } from "./lib/pg-database";
import { machine, percentile, report, round } from "./machine";
import { freePort, waitLive } from "./server";

const { values } = parseArgs({
  options: {
    json: { type: "boolean", default: false },
    backend: { type: "string", default: "sqlite" },
    instances: { type: "string", default: "1" },
    url: { type: "string", default: PG_TEST_URL },
    ready: { type: "string", default: "20000" },
    sequential: { type: "string", default: "2000" },
    concurrent: { type: "string", default: "16000" },
    warm: { type: "string", default: "0" },
    clients: { type: "string", default: "64" },
    users: { type: "string", default: "64" },
    "cpu-prof": { type: "string" },
  },
});
const backend = values.backend;
const instances = Number(values.instances);
const ready = Number(values.ready);
const sequential = Number(values.sequential);
const concurrent = Number(values.concurrent);
const warm = Number(values.warm);
const clients = Number(values.clients);
const userCount = Number(values.users);
if (backend !== "sqlite" && backend !== "postgres") throw new Error("--backend is sqlite or postgres");
if (instances !== 1 && (instances !== 2 || backend !== "postgres")) {
  throw new Error("--instances 2 needs --backend postgres (instances of one SQLite file cannot share it)");
}
if (sequential + warm + concurrent > ready)
  throw new Error("--ready must cover --sequential + --warm + --concurrent claims");

const ROOT = resolve(import.meta.dir, "../..");
const ADMIN_KEY = "esk_bench_admin_key_0123456789abcdef";

/** The recipe, the users (with keys and credits) and the ready backlog, written before the servers start. */
async function seed(env: Record<string, string>): Promise<string[]> {
  const config = loadConfig(env);
  const database = config.DATABASE_URL ? await openPostgres(config.DATABASE_URL) : undefined;
  const ctx = createServices(config, { log: silentLogger, database });
  try {
    await ctx.recipes.create(
      CreateRecipeBody.parse({
        id: "bench",
        name: "bench",
        promptTemplate: "a {{color}} fox",
        variables: [{ name: "color", type: "enum", options: [{ value: "red" }, { value: "blue" }] }],
        backlogMin: 3,
      }),
    );
    await seedReadyBacklog(ctx, "bench", ready);
    const keys: string[] = [];
    for (let i = 0; i < userCount; i++) {
      const user = await ctx.users.create({ name: `bench-${i}`, role: "user" });
      await ctx.credits.credit(user.id, ready, "grant", { note: "bench" });
      keys.push((await ctx.auth.createKey(user.id, "bench")).key);
    }
    // Statistics as a running server's tables have them: autovacuum analyses a table within a minute of a
    // bulk load, but the run starts seconds after this one, and without them PostgreSQL estimates an IN list
    // over 20,000 assets at thousands of rows and plans the claim's updates as sequential scans.
    if (ctx.database.backend === "postgres") await ctx.database.sql.run("ANALYZE");
    return keys;
  } finally {
    await ctx.database.close();
  }
}

/** One claim; returns its latency in ms, throwing on anything but 200 (the backlog is large enough). */
async function claimOnce(url: string, key: string): Promise<number> {
  const t = performance.now();
  const res = await fetch(`${url}/api/generate/instant`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: '{"recipeId":"bench"}',
  });
  const body = await res.text();
  if (res.status !== 200) throw new Error(`claim failed: ${res.status} ${body}`);
  return performance.now() - t;
}

const dir = mkdtempSync(join(tmpdir(), "easel-bench-claim-"));
const pg: BenchDatabase | null = backend === "postgres" ? await benchDatabase(values.url, "claim") : null;
const env: Record<string, string> = {
  DATA_DIR: dir,
  HOST: "127.0.0.1",
  ADMIN_KEY,
  LOG_LEVEL: "warn",
  NODE_ENV: "production",
  INSTANT_RATE_PER_MIN: "0",
  BACKLOG_CRON: "0 0 1 1 *",
  ...(pg
    ? { DATABASE_URL: pg.url, STORAGE_SHARED: "true", JWT_SECRET: "bench-secret-bench-secret-0123456789" }
    : {}),
};
const servers: Bun.Subprocess[] = [];
const profiling = values["cpu-prof"]
  ? ["--cpu-prof-md", `--cpu-prof-dir=${resolve(values["cpu-prof"])}`]
  : [];
try {
  const t0 = performance.now();
  const keys = await seed(env);
  const seedMs = performance.now() - t0;
  const urls: string[] = [];
  for (let i = 0; i < instances; i++) {
    const port = await freePort();
    servers.push(
      Bun.spawn(["bun", ...profiling, "src/main.ts", "serve"], {
        cwd: ROOT,
        env: { ...process.env, ...env, PORT: String(port) },
        stdout: "ignore",
        stderr: "inherit",
      }),
    );
    urls.push(`http://127.0.0.1:${port}`);
  }
  await Promise.all(urls.map((url) => waitLive(url)));
  // Warm-up: JIT, statement caches, connections, on every instance.
  await Promise.all(keys.slice(0, 8).map((k, i) => claimOnce(urls[i % instances]!, k)));

  let t = performance.now();
  for (let i = 0; i < sequential; i++) await claimOnce(urls[i % instances]!, keys[i % keys.length]!);
  const sequentialPerS = sequential / ((performance.now() - t) / 1000);

  /** `count` claims from all the clients at once; resolves to their latencies. */
  async function concurrently(count: number): Promise<number[]> {
    const out: number[] = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: clients }, async (_, c) => {
        const key = keys[c % keys.length]!;
        const url = urls[c % instances]!;
        while (next < count) {
          next++;
          out.push(await claimOnce(url, key));
        }
      }),
    );
    return out;
  }
  // A long-running server's state: its hot paths compiled by every JIT tier it will reach.
  if (warm > 0) await concurrently(warm);

  const serverCpu = cpuSpan(() => servers.map((s) => s.pid));
  const pgCpu = pg ? cpuSpan(() => pg.backendPids()) : null;
  const clientCpu = cpuSpan(() => [process.pid]);
  await clientCpu.start();
  await serverCpu.start();
  await pgCpu?.start();
  t = performance.now();
  const latencies = await concurrently(concurrent);
  const concurrentPerS = concurrent / ((performance.now() - t) / 1000);
  const serverUs = await serverCpu.stop();
  const pgUs = (await pgCpu?.stop()) ?? null;
  const clientUs = await clientCpu.stop();
  latencies.sort((a, b) => a - b);
  const perClaim = (us: number | null) => (us !== null ? round(us / concurrent, 1) : null);

  report(
    {
      backend,
      instances,
      claims_per_s_sequential: round(sequentialPerS, 0),
      claims_per_s_concurrent: round(concurrentPerS, 0),
      server_cpu_us_per_claim: perClaim(serverUs),
      ...(pg ? { postgres_cpu_us_per_claim: perClaim(pgUs) } : {}),
      client_cpu_us_per_claim: perClaim(clientUs),
      p50_ms: round(percentile(latencies, 50)),
      p99_ms: round(percentile(latencies, 99)),
      clients,
      users: userCount,
      claims: { sequential, warm, concurrent },
      ready_backlog: ready,
      seed_ms: round(seedMs, 0),
      machine: machine(),
    },
    Boolean(values.json),
  );
} finally {
  for (const server of servers) server.kill("SIGTERM");
  await Promise.all(servers.map((s) => s.exited));
  if (!process.env.BENCH_KEEP_DB) await pg?.drop();
  else if (pg) console.error(`kept ${redactUrl(pg.url)}`);
  rmSync(dir, { recursive: true, force: true });
}
