/**
 * Queue engine throughput and latency, for no-op jobs through the real engine (claim → handler →
 * group-committed completion → events) on a real SQLite file in WAL mode. Every enqueue is durable:
 * it returns after its transaction commits; nothing is buffered in memory.
 *
 *   bun run bench queue [--json] [--n 200000] [--concurrency 512]
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { z } from "zod";
import { Checkpointer } from "../../src/db/checkpointer";
import { openDb } from "../../src/db/client";
import { silentLogger } from "../../src/log";
import { defineJob, Queue } from "../../src/queue";
import { machine, percentile, report, round } from "./machine";

const { values } = parseArgs({
  options: {
    json: { type: "boolean", default: false },
    n: { type: "string", default: "200000" },
    concurrency: { type: "string", default: "512" },
    latency: { type: "string", default: "2000" },
  },
});
const n = Number(values.n);
const concurrency = Number(values.concurrency);

const checkpointers: Checkpointer[] = [];

/** A queue on a fresh file, configured as `easel serve` runs it (checkpoints in a worker thread). */
async function freshQueue(dir: string, name: string, conc: number, onRun: () => void): Promise<Queue> {
  const path = join(dir, `${name}.db`);
  const db = openDb(path);
  const checkpointer = new Checkpointer(db.$client, path);
  await checkpointer.start();
  checkpointers.push(checkpointer);
  const q = new Queue({
    db: db.$client,
    concurrency: conc,
    pollIntervalMs: 250,
    leaseMs: 60_000,
    stalledMax: 2,
    defaultTimeoutMs: 30_000,
    defaultMaxAttempts: 3,
    log: silentLogger,
  });
  q.define(defineJob({ type: "noop", input: z.object({ i: z.number() }), run: async () => void onRun() }));
  return q;
}

const dir = mkdtempSync(join(tmpdir(), "easel-bench-"));
try {
  // 1. Bulk enqueue: chunks of 10,000 per call, each one transaction.
  const bulk = await freshQueue(dir, "bulk", concurrency, () => {});
  const chunk = 10_000;
  const inputs = Array.from({ length: chunk }, (_, i) => ({ i }));
  let t = performance.now();
  for (let done = 0; done < n; done += chunk) await bulk.enqueueBulk("noop", inputs);
  const enqueueBulkPerS = n / ((performance.now() - t) / 1000);

  // 2. Drain what was just enqueued.
  let completed = 0;
  let resolveDrained!: () => void;
  const drained = new Promise<void>((r) => {
    resolveDrained = r;
  });
  bulk.events.on("job:completed", () => {
    if (++completed === n) resolveDrained();
  });
  t = performance.now();
  bulk.start();
  await drained;
  const jobsPerS = n / ((performance.now() - t) / 1000);
  await bulk.stop(1000);

  // 3. Single enqueues, each its own committed transaction.
  const single = await freshQueue(dir, "single", concurrency, () => {});
  const singles = Math.min(n, 50_000);
  t = performance.now();
  for (let i = 0; i < singles; i++) await single.enqueue("noop", { i });
  const enqueueSinglePerS = singles / ((performance.now() - t) / 1000);

  // 4. Enqueue → handler start on an idle pool, one job at a time.
  let startedAt = 0;
  const idle = await freshQueue(dir, "latency", 8, () => {
    startedAt = performance.now();
  });
  idle.start();
  const latencies: number[] = [];
  for (let i = 0; i < Number(values.latency); i++) {
    let done!: () => void;
    const finished = new Promise<void>((r) => {
      done = r;
    });
    const off = idle.events.on("job:completed", () => done());
    await Bun.sleep(0);
    const t0 = performance.now();
    await idle.enqueue("noop", { i });
    await finished;
    off();
    latencies.push(startedAt - t0);
  }
  await idle.stop(1000);
  latencies.sort((a, b) => a - b);

  report(
    {
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
  for (const c of checkpointers) await c.stop();
  rmSync(dir, { recursive: true, force: true });
}
