import { afterEach, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { z } from "zod";
import type { Job } from "../../src/db/schema";
import { type CountScope, defineJob, type Queue } from "../../src/queue";
import type { Settlement } from "../../src/queue/store";
import { dbOf, tempDir, testQueue, waitFor } from "../helpers";
import { queueBackends } from "./backends";

const CHURN = join(import.meta.dir, "../fixtures/count-churn.ts");
const backends = queueBackends();
const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

/** Users for every kind of scope: an app with two end users, a plain user. */
async function seedUsers(q: Queue): Promise<{ app: string; endUsers: string[]; user: string }> {
  const insert = (id: string, role: string, parent: string | null) =>
    q.sql.run(
      `INSERT INTO users (id, name, role, parent_id, credits, unlimited, created_at, updated_at)
       VALUES (?, ?, ?, ?, 0, ?, 0, 0)`,
      [id, id, role, parent, 0],
    );
  await insert("app", "app", null);
  await insert("end-1", "user", "app");
  await insert("end-2", "user", "app");
  await insert("solo", "user", null);
  return { app: "app", endUsers: ["end-1", "end-2"], user: "solo" };
}

type CountRow = { scope: string; type: string; status: string; n: number };
/** In one order on both databases (their collations differ). */
const sorted = (rows: CountRow[]) =>
  rows
    .map((r) => ({ ...r, n: Number(r.n) }))
    .sort((a, b) => (`${a.scope}\0${a.type}\0${a.status}` < `${b.scope}\0${b.type}\0${b.status}` ? -1 : 1));

/** Every non-zero counter row (ended jobs only), and the same numbers from a full count(*) over `jobs`. */
async function countersAndTruth(q: Queue) {
  const counters = await q.sql.all<CountRow>("SELECT scope, type, status, n FROM job_counts WHERE n <> 0");
  const truth = await q.sql.all<CountRow>(
    `SELECT scope, type, status, n FROM (
       SELECT '' AS scope, type, status, count(*) AS n FROM jobs GROUP BY type, status
       UNION ALL SELECT 'u:' || owner_id, type, status, count(*) FROM jobs WHERE owner_id IS NOT NULL
         GROUP BY owner_id, type, status
       UNION ALL SELECT 'c:' || u.parent_id, j.type, j.status, count(*) FROM jobs j JOIN users u ON u.id = j.owner_id
         WHERE u.parent_id IS NOT NULL GROUP BY u.parent_id, j.type, j.status) t
     WHERE status IN ('completed', 'partial', 'failed', 'cancelled')`,
  );
  return { counters: sorted(counters), truth: sorted(truth) };
}

/** The stats a full scan gives (the query the counters replaced), for one scope at `now`. */
async function scannedStats(q: Queue, now: number, scope: CountScope) {
  const where =
    scope === null
      ? ""
      : scope.withEndUsers
        ? "WHERE owner_id = ? OR owner_id IN (SELECT id FROM users WHERE parent_id = ?)"
        : "WHERE owner_id = ?";
  const rows = await q.sql.all<{ type: string; s: string; n: number }>(
    `SELECT type, s, count(*) AS n FROM (
       SELECT type, CASE WHEN status = 'queued' AND run_at > ? THEN 'delayed' WHEN status = 'queued' THEN 'waiting'
         ELSE status END AS s FROM jobs ${where}) t GROUP BY type, s`,
    scope === null ? [now] : scope.withEndUsers ? [now, scope.ownerId, scope.ownerId] : [now, scope.ownerId],
  );
  const totals: Record<string, number> = {};
  const byType: Record<string, Record<string, number>> = {};
  for (const r of rows) {
    totals[r.s] = (totals[r.s] ?? 0) + r.n;
    byType[r.type] = { ...byType[r.type], [r.s]: r.n };
  }
  return { totals, byType };
}

async function expectExact(q: Queue, now: number, users: Awaited<ReturnType<typeof seedUsers>>) {
  const { counters, truth } = await countersAndTruth(q);
  expect(counters).toEqual(truth);
  const scopes: CountScope[] = [
    null,
    { ownerId: users.app, withEndUsers: true },
    { ownerId: users.app, withEndUsers: false },
    { ownerId: users.endUsers[0]!, withEndUsers: false },
    { ownerId: users.user, withEndUsers: false },
  ];
  for (const scope of scopes) {
    const { byType, ...totals } = await q.backend.stats(now, scope);
    const scanned = await scannedStats(q, now, scope);
    expect(byType).toEqual(scanned.byType);
    for (const [s, n] of Object.entries(totals)) expect(n).toBe(scanned.totals[s] ?? 0);
  }
}

/** A tiny deterministic PRNG, so a failure replays the same sequence. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe.each(backends)("%s: job counts kept by the store", (_kind, { queue, peer }) => {
  test("match a full count(*) per scope after random enqueues, claims, ends, cancels, retries, re-owning, retention and deletes", async () => {
    let now = Date.now();
    const q = await queue({ now: () => now });
    const store = peer(q);
    const Any = z.object({}).passthrough();
    q.define(defineJob({ type: "a", input: Any, run: async () => 1 }));
    q.define(defineJob({ type: "b", input: Any, run: async () => 1 }));
    const users = await seedUsers(q);
    const owners = [null, users.app, ...users.endUsers, users.user];
    const rand = prng(16);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
    const active: Job[] = [];
    const randomId = async (statuses: string) =>
      (
        await q.sql.get<{ id: string }>(
          `SELECT id FROM jobs WHERE status IN (${statuses}) ORDER BY id LIMIT 1 OFFSET ?`,
          [Math.floor(rand() * 5)],
        )
      )?.id;

    for (let step = 0; step < 1500; step++) {
      const r = rand();
      now += Math.floor(rand() * 60_000);
      if (r < 0.3) {
        await q.enqueue(
          pick(["a", "b"]),
          {},
          {
            ownerId: pick(owners),
            delayMs: rand() < 0.3 ? Math.floor(rand() * 600_000) : 0,
            dedupeKey: rand() < 0.3 ? `k${Math.floor(rand() * 4)}` : undefined,
          },
        );
      } else if (r < 0.35) {
        await q.enqueueBulk(pick(["a", "b"]), [{}, {}, {}], { ownerId: pick(owners) });
      } else if (r < 0.5) {
        active.push(...(await store.claim("w", ["a", "b"], 1 + Math.floor(rand() * 4), now, 30_000)));
      } else if (r < 0.7 && active.length > 0) {
        const job = active.splice(Math.floor(rand() * active.length), 1)[0]!;
        const end = rand();
        const settlement: Settlement =
          end < 0.25
            ? { kind: "requeue", job, runAt: now + 1000, error: null, refundAttempt: rand() < 0.5 }
            : {
                kind: "finish",
                job,
                status: end < 0.6 ? "completed" : end < 0.8 ? "partial" : "failed",
                result: null,
                error: null,
              };
        await store.settle("w", [settlement], now);
      } else if (r < 0.77) {
        const id = await randomId("'queued', 'active'");
        if (id) await q.cancel(id);
      } else if (r < 0.85) {
        const id = await randomId("'failed', 'partial', 'cancelled'");
        if (id) await q.retry(id);
      } else if (r < 0.88) {
        // Leases run out: the sweep re-queues them, or fails them past the stall limit.
        now += 60_000;
        await q.recoverStalled();
        active.length = 0;
      } else if (r < 0.92) {
        // An instant claim hands a finished job of a recipe to another owner, through the queue's own statement.
        const job = await q.sql.get<{ id: string; owner_id: string }>(
          "SELECT id, owner_id FROM jobs WHERE status = 'completed' AND owner_id IS NOT NULL ORDER BY random() LIMIT 1",
        );
        const to = pick(owners);
        if (job && to) {
          await q.sql.run("UPDATE jobs SET recipe_id = 'r' WHERE id = ?", [job.id]);
          await q.transaction(() => q.features.transferOldestCompleted("r", job.owner_id, to, 0, now));
        }
      } else if (r < 0.94) {
        await q.cleanupRetention({ completedHours: 1, failedHours: 2 });
      } else if (r < 0.96) {
        // A delete outside retention's counted slices (an operator's SQL): the safety-net trigger counts it.
        const id = await randomId("'completed', 'failed', 'queued'");
        if (id) await q.sql.run("DELETE FROM jobs WHERE id = ?", [id]);
      }
      if (step % 50 === 0) await expectExact(q, now, users);
    }
    await expectExact(q, now, users);
    const total = (await q.sql.get<{ n: number }>("SELECT count(*) AS n FROM jobs"))!.n;
    expect(total).toBeGreaterThan(100);
  }, 60_000);

  test("the throughput rollup counts every run that ends, by minute, and outlives the jobs' retention", async () => {
    const q = await queue({ concurrency: 4 });
    const users = await seedUsers(q);
    q.define(
      defineJob({
        type: "t",
        input: z.object({ ok: z.boolean() }),
        maxAttempts: 1,
        run: async ({ input }) => {
          if (!input.ok) throw new Error("no");
        },
      }),
    );
    const ended = { completed: 0, failed: 0 };
    q.events.on("job:completed", () => void ended.completed++);
    q.events.on("job:failed", () => void ended.failed++);
    const ids = [
      ...(await q.enqueueBulk(
        "t",
        Array.from({ length: 30 }, () => ({ ok: true })),
        { ownerId: users.endUsers[0] },
      )),
      ...(await q.enqueueBulk(
        "t",
        Array.from({ length: 10 }, () => ({ ok: false })),
        { ownerId: users.user },
      )),
    ];
    const start = Math.floor(Date.now() / 60_000);
    q.start();
    await waitFor(() => ended.completed + ended.failed === ids.length, { what: "every job to end" });
    await q.stop(1000);
    const sum = async (scope: CountScope) => {
      const out: Record<string, number> = {};
      for (const r of await q.throughput(scope, start, start + 10))
        out[r.status] = (out[r.status] ?? 0) + r.n;
      return out;
    };
    expect(await sum(null)).toEqual({ completed: 30, failed: 10 });
    expect(await sum({ ownerId: users.app, withEndUsers: true })).toEqual({ completed: 30 });
    expect(await sum({ ownerId: users.user, withEndUsers: false })).toEqual({ failed: 10 });
    expect(await q.cleanupRetention({ completedHours: 0, failedHours: 0 })).toBe(40);
    expect(await sum(null)).toEqual({ completed: 30, failed: 10 });
    expect(await q.stats()).toMatchObject({ completed: 0, failed: 0, byType: {} });
  });
});

describe("job counts on SQLite", () => {
  test("stay exact when a busy process is killed with kill -9, and after the next start recovers its jobs", async () => {
    const tmp = tempDir();
    cleanups.push(tmp.cleanup);
    const path = join(tmp.dir, "q.db");
    const parent = testQueue(path);
    const users = await seedUsers(parent);
    const proc = Bun.spawn(["bun", CHURN], {
      env: {
        ...process.env,
        DB_PATH: path,
        OWNERS: JSON.stringify(["", users.app, ...users.endUsers, users.user]),
      },
      stdout: "pipe",
      stderr: "inherit",
    });
    cleanups.push(() => proc.kill(9));
    // Kill it mid-flight, once it has done real work.
    const reader = proc.stdout.getReader();
    let seen = "";
    while (!/ops [3-9]\d\d\b/.test(seen)) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`churn process exited early: ${seen}`);
      seen += new TextDecoder().decode(value);
    }
    proc.kill(9);
    expect(await proc.exited).not.toBe(0);

    const now = Date.now();
    await expectExact(parent, now, users);
    const leftActive = (
      dbOf(parent).query("SELECT count(*) AS n FROM jobs WHERE status = 'active'").get() as { n: number }
    ).n;
    // A start-up recovers the dead process's active jobs; the counts follow.
    parent.define(defineJob({ type: "a", input: z.object({}).passthrough(), run: async () => 1 }));
    parent.define(defineJob({ type: "b", input: z.object({}).passthrough(), run: async () => 1 }));
    const recovered = await parent.recoverStalled(true);
    expect(recovered.requeued + recovered.failed).toBe(leftActive);
    await expectExact(parent, Date.now(), users);
    dbOf(parent).close();
  }, 30_000);
});
