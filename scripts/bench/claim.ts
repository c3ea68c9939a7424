/**
 * Instant claims over HTTP: `easel serve` runs in its own process on a fresh data dir holding a large ready
 * backlog (completed backlog jobs with their item and asset rows, inserted straight into SQLite for setup
 * speed); this process is the client. Each claim is the full path: auth, credit check, the claim transaction
 * (take the oldest ready job, transfer it and its assets, charge, count usage, queue the debounced top-up)
 * and the JSON response with asset URLs. Claims are spread over `users` users with plenty of credits; the
 * rate limit is off. `server_cpu_us_per_claim` is the server process's CPU time (all its threads: the event
 * loop and the WAL checkpointer) over the concurrent claims, divided by their number: on a shared machine it
 * moves far less with the load than claims/s does, so it is the figure to compare between builds.
 *
 *   bun run bench claim [--json] [--ready 20000] [--sequential 2000] [--concurrent 16000] [--clients 64]
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { loadConfig } from "../../src/config";
import { silentLogger } from "../../src/log";
import { CreateRecipeBody } from "../../src/modules/recipes/model";
import { createServices } from "../../src/services";
import { seedReadyBacklog } from "../../test/fixtures/seed-backlog";
import { machine, percentile, report, round } from "./machine";
import { freePort, waitLive } from "./server";

const { values } = parseArgs({
  options: {
    json: { type: "boolean", default: false },
    ready: { type: "string", default: "20000" },
    sequential: { type: "string", default: "2000" },
    concurrent: { type: "string", default: "16000" },
    clients: { type: "string", default: "64" },
    users: { type: "string", default: "64" },
  },
});
const ready = Number(values.ready);
const sequential = Number(values.sequential);
const concurrent = Number(values.concurrent);
const clients = Number(values.clients);
const userCount = Number(values.users);
if (sequential + concurrent > ready) throw new Error("--ready must cover --sequential + --concurrent claims");

const ROOT = resolve(import.meta.dir, "../..");
const ADMIN_KEY = "esk_bench_admin_key_0123456789abcdef";

/** The recipe, the users (with keys and credits) and the ready backlog, written before the server starts. */
async function seed(env: Record<string, string>): Promise<string[]> {
  const ctx = createServices(loadConfig(env), { log: silentLogger });
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
    return keys;
  } finally {
    ctx.db.$client.close();
  }
}

/** CPU time (user + system, all threads) a process has used so far, in µs; null off Linux. */
function cpuMicros(pid: number): number | null {
  try {
    // /proc/<pid>/stat: fields 14 and 15 (utime, stime), in clock ticks of 1/100 s, after the ")" of the name.
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
    return (Number(fields[11]) + Number(fields[12])) * 10_000;
  } catch {
    return null;
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
const port = await freePort();
const env: Record<string, string> = {
  DATA_DIR: dir,
  PORT: String(port),
  HOST: "127.0.0.1",
  ADMIN_KEY,
  LOG_LEVEL: "warn",
  NODE_ENV: "production",
  INSTANT_RATE_PER_MIN: "0",
  BACKLOG_CRON: "0 0 1 1 *",
};
const t0 = performance.now();
const keys = await seed(env);
const seedMs = performance.now() - t0;
const server = Bun.spawn(["bun", "src/main.ts", "serve"], {
  cwd: ROOT,
  env: { ...process.env, ...env },
  stdout: "ignore",
  stderr: "inherit",
});
try {
  const url = `http://127.0.0.1:${port}`;
  await waitLive(url);
  // Warm-up: JIT, statement caches, connections.
  await Promise.all(keys.slice(0, 8).map((k) => claimOnce(url, k)));

  let t = performance.now();
  for (let i = 0; i < sequential; i++) await claimOnce(url, keys[i % keys.length]!);
  const sequentialPerS = sequential / ((performance.now() - t) / 1000);

  const latencies: number[] = [];
  let next = 0;
  const serverCpu0 = cpuMicros(server.pid);
  t = performance.now();
  await Promise.all(
    Array.from({ length: clients }, async (_, c) => {
      const key = keys[c % keys.length]!;
      while (next < concurrent) {
        next++;
        latencies.push(await claimOnce(url, key));
      }
    }),
  );
  const concurrentPerS = concurrent / ((performance.now() - t) / 1000);
  const serverCpu = cpuMicros(server.pid);
  latencies.sort((a, b) => a - b);

  report(
    {
      claims_per_s_sequential: round(sequentialPerS, 0),
      claims_per_s_concurrent: round(concurrentPerS, 0),
      server_cpu_us_per_claim:
        serverCpu !== null && serverCpu0 !== null ? round((serverCpu - serverCpu0) / concurrent, 1) : null,
      p50_ms: round(percentile(latencies, 50)),
      p99_ms: round(percentile(latencies, 99)),
      clients,
      users: userCount,
      claims: { sequential, concurrent },
      ready_backlog: ready,
      seed_ms: round(seedMs, 0),
      machine: machine(),
    },
    Boolean(values.json),
  );
} finally {
  server.kill("SIGTERM");
  await server.exited;
  rmSync(dir, { recursive: true, force: true });
}
