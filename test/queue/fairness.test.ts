import { describe, expect, test } from "bun:test";
import { z } from "zod";
import { PRIORITY_STEP_MS } from "../../src/db/schema";
import { defineJob, type Queue } from "../../src/queue";
import { pgClaimSql } from "../../src/queue/pg/backend";
import { claimSql } from "../../src/queue/store";
import { dbOf, queuesPerTest, startTestServer, waitFor } from "../helpers";
import { queueBackends } from "./backends";

const backends = queueBackends();
/** SQLite queues on fresh temp files, for the claim statement's plan. */
const sqliteQueue = queuesPerTest();

const Empty = z.object({});

/**
 * A saturating stream: `depth` jobs of `type` are always waiting, because every one that starts queues its
 * replacement before it runs, so higher-priority work never runs out while the test lasts.
 */
async function hotStream(q: Queue, type: string, priority: number, depth: number, work: () => Promise<void>) {
  q.define(
    defineJob({
      type,
      input: Empty,
      run: async () => {
        await q.enqueue(type, {}, { priority });
        await work();
      },
    }),
  );
  for (let i = 0; i < depth; i++) await q.enqueue(type, {}, { priority });
}

describe.each(backends)("%s", (_kind, { queue }) => {
  describe("fairness: aging bounds every job's wait", () => {
    test("under a never-ending stream of priority 10 work, a priority 0 job starts once it has waited 10 levels' worth", async () => {
      // A clock the test moves: each hot job "takes" 100 ms, so the bound is checked exactly, not against load.
      let clock = 1_000_000;
      const q = await queue({ concurrency: 1, now: () => clock });
      const depth = 5;
      const workMs = 100;
      await hotStream(q, "hot", 10, depth, async () => {
        clock += workMs;
      });
      q.define(defineJob({ type: "cold", input: Empty, run: async () => {} }));
      const cold = await q.enqueue("cold", {}, { priority: 0 });
      const t0 = cold.job.runAt;
      q.start();
      const started = await waitFor(async () => (await q.get(cold.id))?.startedAt, {
        timeoutMs: 20_000,
        what: "cold job to start",
      });
      const waited = started - t0;
      // Priority still counts: the stream kept it waiting its 10 levels (10 × PRIORITY_STEP_MS) …
      expect(waited).toBeGreaterThanOrEqual(10 * PRIORITY_STEP_MS);
      // … and no longer: then only the hot jobs already ahead of it (at most `depth`, plus the one running).
      expect(waited).toBeLessThanOrEqual(10 * PRIORITY_STEP_MS + (depth + 1) * workMs);
    }, 30_000);

    test("in real time, a low-priority job starts within its bound while the pool stays saturated", async () => {
      const q = await queue({ concurrency: 2 });
      const gap = 2;
      await hotStream(q, "hot", gap, 10, () => Bun.sleep(2));
      q.define(defineJob({ type: "cold", input: Empty, run: async () => {} }));
      q.start();
      await waitFor(async () => ((await q.stats()).byType.hot?.completed ?? 0) >= 20, {
        what: "the stream to run",
      });
      const cold = await q.enqueue("cold", {}, { priority: 0 });
      const job = await waitFor(
        async () => {
          const j = await q.get(cold.id);
          return j?.status === "completed" ? j : null;
        },
        { timeoutMs: 25_000, what: "cold job to run" },
      );
      // Hot jobs queued within `gap` levels' worth of time of it ran first; then it went ahead of the stream.
      expect(job.startedAt! - job.runAt).toBeGreaterThanOrEqual(gap * PRIORITY_STEP_MS - 250);
      expect((await q.stats()).waiting).toBeGreaterThan(0);
    }, 30_000);

    test("a capped type is claimed in priority order with uncapped types, not after them", async () => {
      const q = await queue({ concurrency: 4 });
      const order: string[] = [];
      let release!: () => void;
      const gate = new Promise<void>((r) => {
        release = r;
      });
      const block = (name: string) => async () => {
        order.push(name);
        await gate;
      };
      q.define(defineJob({ type: "capped", input: Empty, concurrency: 2, run: block("capped") }));
      q.define(defineJob({ type: "open", input: Empty, run: block("open") }));
      for (let i = 0; i < 4; i++) await q.enqueue("open", {}, { priority: 0 });
      for (let i = 0; i < 4; i++) await q.enqueue("capped", {}, { priority: 10 });
      q.start();
      await waitFor(() => order.length === 4);
      // The two capped slots went to the high-priority capped jobs; the rest of the slots to open ones.
      expect(order.filter((t) => t === "capped")).toHaveLength(2);
      expect(order.filter((t) => t === "open")).toHaveLength(2);
      expect((await q.stats()).byType.capped?.active).toBe(2);
      release();
    });
  });
});

describe("the claim statement", () => {
  test("walks the claim index in its own order: no sort, no scan of the whole table", () => {
    // The claim statement's plan on the real schema: the queue's own connection, nothing enqueued.
    const db = dbOf(sqliteQueue());
    const plan = (
      db.query(`EXPLAIN QUERY PLAN ${claimSql(3)}`).all("w", 1, 1, 1, 1, "a", "b", "c", 8) as {
        detail: string;
      }[]
    ).map((r) => r.detail);
    expect(plan).toContain("SCAN jobs USING INDEX jobs_claim_idx");
    expect(plan.join("\n")).not.toContain("TEMP B-TREE");
    expect(plan.filter((d) => /^SCAN jobs$/.test(d))).toHaveLength(0);
  });
});

describe("the claim statement on PostgreSQL", () => {
  test("takes due jobs from the claim index in claim order, locking them (no sort)", async () => {
    const q = await backends[1]![1].queue();
    // The statement as the pool sends it, its parameters written in (EXPLAIN takes no bound parameters).
    const args = ["'w'", "2", "1", "8", "'a'", "'b'", "'c'"];
    const claim = pgClaimSql(3).replace(/\$(\d+)/g, (_, n: string) => args[Number(n) - 1]!);
    const plan = await q.sql.transaction(async () => {
      // An empty table costs nothing to scan: the planner is asked for the index, and must not need a sort.
      await q.sql.run("SET LOCAL enable_seqscan = off");
      return (await q.sql.all<{ "QUERY PLAN": string }>(`EXPLAIN ${claim}`)).map((r) => r["QUERY PLAN"]);
    });
    const text = plan.join("\n");
    expect(text).toContain("Index Scan using jobs_claim_idx");
    expect(text).toContain("LockRows");
    expect(text).not.toMatch(/\bSort\b/);
  });
});

describe("card renders share the worker slots", () => {
  test("renders hold at most two slots per render thread; a generation runs beside them", async () => {
    const server = await startTestServer({
      env: { RENDER_WORKERS: "1", WORKER_CONCURRENCY: "8", CARD_DEBOUNCE_MS: "0", CREDITS_ENABLED: "false" },
    });
    try {
      await rendersBesideAGeneration(server);
    } finally {
      await server.close();
    }
  }, 30_000);
});

/** Patches 8 cards at once (one render thread) with a generation queued behind them. */
async function rendersBesideAGeneration(server: Awaited<ReturnType<typeof startTestServer>>): Promise<void> {
  const poll = (votes: number) => ({
    question: "Which topping wins?",
    creator: { name: "Ada", handle: "ada" },
    options: [
      { label: "Mushrooms", votes },
      { label: "Olives", votes: 1 },
    ],
  });
  const ids: string[] = [];
  for (let i = 0; i < 8; i++) {
    const res = await server.api("/api/cards", {
      method: "POST",
      json: { template: "poll", data: poll(i) },
    });
    expect(res.status).toBe(201);
    ids.push(((await res.json()) as { id: string }).id);
  }
  let active = 0;
  let most = 0;
  const { queue } = server.ctx;
  queue.events.on("job:active", ({ job }) => {
    if (job.type === "card.render") most = Math.max(most, ++active);
  });
  for (const event of ["job:completed", "job:failed", "job:cancelled"] as const) {
    queue.events.on(event, ({ job }) => {
      if (job.type === "card.render") active--;
    });
  }
  for (const id of ids) {
    const res = await server.api(`/api/cards/${id}`, { method: "PATCH", json: { data: poll(100) } });
    expect(res.status).toBe(200);
  }
  const gen = await server.api("/api/jobs/generate-image", {
    method: "POST",
    json: { prompt: "a quiet harbour", provider: "placeholder" },
  });
  expect(gen.status).toBe(202);
  const { jobId } = (await gen.json()) as { jobId: string };
  await waitFor(async () => (await queue.get(jobId))?.status === "completed", {
    timeoutMs: 20_000,
    what: "the generation",
  });
  await waitFor(async () => ((await queue.stats()).byType["card.render"]?.completed ?? 0) >= ids.length, {
    timeoutMs: 20_000,
    what: "every render",
  });
  expect(most).toBeLessThanOrEqual(2);
  expect(most).toBeGreaterThanOrEqual(1);
}
