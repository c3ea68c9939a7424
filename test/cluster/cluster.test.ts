/**
 * Cluster mode end to end: two real Easel processes (test/fixtures/server.ts) on one PostgreSQL database and
 * one shared files directory, as two instances behind a load balancer would run. Every job runs exactly once,
 * a kill -9 loses nothing, frames cross instances, instant claims and card renders stay exact across them,
 * and the scheduled work moves to a live instance when its leader dies.
 */
import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { SQL } from "bun";
import { PG_TEST_URL, pgDatabasePerTest } from "../db/pg-helpers";
import { createRecipe, createUser, expectStatus } from "../fixtures/backlog";
import {
  ADMIN_KEY,
  apiAt,
  dashboardCookie,
  expectExit,
  runEasel,
  type ServerProcess,
  spawnServer,
  type TestServer,
  tempDir,
  waitFor,
} from "../helpers";
import { WsClient } from "../realtime/client";

const { cleanups, database } = pgDatabasePerTest();

type Instance = ServerProcess & {
  api: TestServer["api"];
  workerId: () => Promise<string>;
};

async function cluster(env: Record<string, string> = {}) {
  const pg = await database();
  const tmp = tempDir("easel-cluster-");
  cleanups.push(tmp.cleanup);
  const runLog = join(tmp.dir, "runs.log");
  const shared = { DATABASE_URL: pg.url, STORAGE_SHARED: "true", RUN_LOG: runLog, ...env };
  const start = async (): Promise<Instance> => {
    const server = await spawnServer(tmp.dir, shared);
    cleanups.push(async () => {
      server.proc.kill(9);
      await server.proc.exited;
    });
    const api = apiAt(server.url);
    const workerId = async () =>
      ((await (await api("/api/queue/status")).json()) as { workerId: string }).workerId;
    return { ...server, api, workerId };
  };
  /** Which process ran each job (every attempt), from the fixture's run log. */
  const runs = () => {
    if (!existsSync(runLog)) return [] as { id: string; pid: number }[];
    return readFileSync(runLog, "utf8")
      .trim()
      .split("\n")
      .filter(Boolean)
      .map((line) => {
        const [id, pid] = line.split(" ");
        return { id: id!, pid: Number(pid) };
      });
  };
  /** The instance holding the schedules' advisory lock, by its leader connection's application name. */
  const leader = async (): Promise<string | null> => {
    // pg_locks lists every database's locks: other tests' clusters run beside this one.
    const rows = await pg.sql`SELECT a.application_name AS name FROM pg_locks l
      JOIN pg_stat_activity a ON a.pid = l.pid
      WHERE l.locktype = 'advisory' AND l.granted AND a.datname = current_database()
        AND a.application_name LIKE 'easel-leader %'`;
    return (rows[0]?.name as string | undefined) ?? null;
  };
  return { pg, dir: tmp.dir, env: shared, start, runs, leader };
}

async function enqueue(i: Instance, type: string, input: unknown): Promise<string> {
  const res = await i.api("/api/jobs", { method: "POST", json: { type, input } });
  return (await expectStatus<{ id: string }>(res, 202)).id;
}

/** Runs `fn` over `items` with at most `width` in flight. */
async function pooled<T, R>(items: T[], width: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i]!, i);
      }
    }),
  );
  return out;
}

describe("two instances on one PostgreSQL", () => {
  test("1,000 jobs enqueued through both run exactly once, spread over both", async () => {
    const c = await cluster();
    const [a, b] = await Promise.all([c.start(), c.start()]);
    const ids = await pooled(
      Array.from({ length: 1000 }, (_, n) => n),
      16,
      (n) => enqueue(n % 2 ? b : a, "echo", { n }),
    );
    expect(new Set(ids).size).toBe(1000);
    await waitFor(
      async () => {
        const [{ n }] = await c.pg
          .sql`SELECT count(*)::int AS n FROM jobs WHERE type = 'echo' AND status = 'completed'`;
        return n === 1000;
      },
      { timeoutMs: 60_000, intervalMs: 100, what: "1,000 completed echo jobs" },
    );
    const runs = c.runs();
    expect(runs).toHaveLength(1000);
    expect(new Set(runs.map((r) => r.id)).size).toBe(1000);
    const byPid = new Map<number, number>();
    for (const r of runs) byPid.set(r.pid, (byPid.get(r.pid) ?? 0) + 1);
    expect([...byPid.keys()].sort()).toEqual([a.proc.pid, b.proc.pid].sort());
    const [{ n: rerun }] = await c.pg
      .sql`SELECT count(*)::int AS n FROM jobs WHERE type = 'echo' AND attempts <> 1`;
    expect(rerun).toBe(0);
    // Both list themselves as live instances, on either one.
    const status = (await (await b.api("/api/queue/status")).json()) as { instances: { id: string }[] };
    expect(status.instances.map((i) => i.id).sort()).toEqual([await a.workerId(), await b.workerId()].sort());
  }, 120_000);

  test("kill -9 of the leader mid-run: the other takes the schedules and finishes its jobs after the lease", async () => {
    const c = await cluster({ STALLED_AFTER_MS: "2000" });
    const a = await c.start();
    const aId = await a.workerId();
    await waitFor(async () => (await c.leader())?.includes(aId) ?? false, {
      what: "A to lead",
      timeoutMs: 20_000,
    });
    const b = await c.start();
    const bId = await b.workerId();
    const ids = await pooled(
      Array.from({ length: 12 }, (_, n) => n),
      4,
      () => enqueue(a, "slow", { ms: 1500 }),
    );
    await waitFor(() => c.runs().some((r) => r.pid === a.proc.pid), {
      what: "A running a job",
      timeoutMs: 20_000,
    });
    a.proc.kill(9);
    await a.proc.exited;
    const heldByA = new Set(
      c
        .runs()
        .filter((r) => r.pid === a.proc.pid)
        .map((r) => r.id),
    );
    expect(heldByA.size).toBeGreaterThan(0);

    await waitFor(async () => (await c.leader())?.includes(bId) ?? false, {
      what: "B to take the schedules",
      timeoutMs: 30_000,
    });
    await waitFor(
      async () => {
        const rows = await c.pg
          .sql`SELECT count(*)::int AS n FROM jobs WHERE type = 'slow' AND status = 'completed'`;
        return rows[0].n === ids.length;
      },
      { timeoutMs: 60_000, intervalMs: 200, what: "every slow job completed" },
    );
    const rows = (await c.pg.sql`SELECT id, result FROM jobs WHERE type = 'slow'`) as {
      id: string;
      result: string | { pid: number };
    }[];
    const finishedBy = new Map(
      rows.map((r) => [r.id, (typeof r.result === "string" ? JSON.parse(r.result) : r.result).pid as number]),
    );
    // What A was running when it died was run again, and finished, by B once its lease lapsed.
    const rerun = [...heldByA].filter((id) => finishedBy.get(id) === b.proc.pid);
    expect(rerun.length).toBeGreaterThan(0);
    for (const id of rerun)
      expect(
        c
          .runs()
          .filter((r) => r.id === id)
          .map((r) => r.pid),
      ).toEqual([a.proc.pid, b.proc.pid]);
    await waitFor(
      async () =>
        (
          (await (await b.api("/api/queue/status")).json()) as { instances: { id: string }[] }
        ).instances.every((i) => i.id !== aId),
      { what: "A to drop off the live instances", timeoutMs: 30_000 },
    );
  }, 150_000);

  test("a WebSocket client on one instance sees job_completed of a job that ran on the other", async () => {
    const c = await cluster();
    const [a, b] = await Promise.all([c.start(), c.start()]);
    const ws = (i: Instance) =>
      WsClient.connect(`${i.url.replace("http", "ws")}/ws`, {
        headers: { authorization: `Bearer ${ADMIN_KEY}` },
      });
    const [onA, onB] = await Promise.all([ws(a), ws(b)]);
    cleanups.push(() => {
      onA.ws.close();
      onB.ws.close();
    });
    const ids = await pooled(
      Array.from({ length: 20 }, (_, n) => n),
      4,
      (n) => enqueue(a, "echo", { n }),
    );
    await waitFor(() => new Set(c.runs().map((r) => r.id)).size === ids.length, {
      what: "all 20 jobs run",
      timeoutMs: 30_000,
    });
    const ranOn = new Map(c.runs().map((r) => [r.id, r.pid]));
    let crossed = 0;
    for (const id of ids) {
      const other = ranOn.get(id) === a.proc.pid ? onB : onA;
      await other.next("job_completed", (f) => f.jobId === id, 20_000);
      crossed++;
    }
    expect(crossed).toBe(ids.length);
    // Both kinds of crossing happened: jobs ran on each instance.
    expect(new Set(ranOn.values()).size).toBe(2);
  }, 120_000);

  test("100 concurrent instant claims split over both: exactly N wins, each generation once", async () => {
    const READY = 5;
    const c = await cluster({
      INSTANT_RATE_PER_MIN: "1000",
      BACKLOG_TOPUP_DELAY_MS: "600000",
      BACKLOG_MAX_CONCURRENT: String(READY),
      BACKLOG_CRON: "0 0 1 1 *",
    });
    const [a, b] = await Promise.all([c.start(), c.start()]);
    await createRecipe(a.api, { id: "fox", creditCost: 2, backlogMin: READY });
    expectExit(await runEasel(c.dir, ["backlog", "maintain", "--recipe", "fox"], c.env), 0);
    await waitFor(
      async () =>
        ((await (await b.api("/api/recipes/fox/backlog")).json()) as { ready: number }).ready >= READY,
      { what: `${READY} ready`, timeoutMs: 60_000, intervalMs: 100 },
    );
    const users = await Promise.all(Array.from({ length: 8 }, () => createUser(a.api, { credits: 10 })));
    const results = await Promise.all(
      Array.from({ length: 100 }, async (_, i) => {
        const res = await (i % 2 ? b : a).api("/api/generate/instant", {
          method: "POST",
          key: users[i % users.length]!.key,
          json: { recipeId: "fox" },
        });
        return { status: res.status, body: (await res.json()) as { job?: { id: string } } };
      }),
    );
    const won = results.filter((r) => r.status === 200);
    expect(won).toHaveLength(READY);
    expect(new Set(won.map((r) => r.body.job!.id)).size).toBe(READY);
    for (const r of results.filter((r) => r.status !== 200)) expect([404, 409]).toContain(r.status);
    const [{ n, spent }] = await c.pg.sql`SELECT count(*)::int AS n, coalesce(-sum(delta), 0)::int AS spent
      FROM credit_ledger WHERE reason = 'instant'`;
    expect(n).toBe(READY);
    expect(spent).toBe(READY * 2);
    let balances = 0;
    for (const u of users) {
      const res = await (balances % 2 ? a : b).api("/api/credits", { key: u.key });
      balances += ((await res.json()) as { credits: number }).credits;
    }
    expect(balances).toBe(8 * 10 - READY * 2);
  }, 150_000);

  test("100 card PATCHes split over both end in one render of the final data", async () => {
    const c = await cluster({ CARD_DEBOUNCE_MS: "1500" });
    const [a, b] = await Promise.all([c.start(), c.start()]);
    const poll = (votes: number[]) => ({
      question: "Tea or coffee?",
      creator: { name: "Ada" },
      options: votes.map((v, i) => ({ label: ["Tea", "Coffee"][i]!, votes: v })),
    });
    const created = await expectStatus<{ id: string }>(
      await a.api("/api/cards", { method: "POST", json: { template: "poll", data: poll([0, 0]) } }),
      201,
    );
    let last = { version: 0 };
    for (let i = 1; i <= 100; i++) {
      const res = await (i % 2 ? b : a).api(`/api/cards/${created.id}`, {
        method: "PATCH",
        json: { data: { options: poll([i, 100 - i]).options } },
      });
      last = await expectStatus<{ version: number }>(res, 200);
    }
    const expected = new Uint8Array(
      await (
        await a.api("/api/cards/preview", {
          method: "POST",
          json: { template: "poll", data: poll([100, 0]) },
        })
      ).arrayBuffer(),
    );
    for (const i of [a, b]) {
      const shown = await waitFor(
        async () => {
          const res = await i.api(`/api/cards/${created.id}/image`, { key: null });
          const version = Number(/-(\d+)"$/.exec(res.headers.get("etag") ?? "")?.[1] ?? 0);
          return version === last.version ? new Uint8Array(await res.arrayBuffer()) : null;
        },
        { timeoutMs: 30_000, intervalMs: 50, what: "the final version on the stable URL" },
      );
      expect(Buffer.from(shown).equals(Buffer.from(expected))).toBe(true);
    }
    // The burst rendered at its leading edge and once more for the final data: no render per PATCH.
    const [{ n }] = await c.pg.sql`SELECT count(*)::int AS n FROM jobs
      WHERE type = 'card.render' AND input->>'cardId' = ${created.id} AND status = 'completed'`;
    expect(n).toBeGreaterThanOrEqual(1);
    expect(n).toBeLessThanOrEqual(4);
  }, 120_000);
});

describe("a lost database connection", () => {
  test("every connection of an instance killed by the server: it reconnects, readiness recovers, no job is lost", async () => {
    const c = await cluster();
    const a = await c.start();
    const before = await pooled(
      Array.from({ length: 50 }, (_, n) => n),
      8,
      (n) => enqueue(a, "echo", { n }),
    );
    // What a database failover or a network cut does to the pool, the LISTEN and the leader connections.
    // Only client sessions of this role: an autovacuum worker busy in this database at that moment is the
    // server's own (a superuser process, which this role may not terminate).
    const [{ killed }] = await c.pg
      .sql`SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))::int AS killed
      FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()
        AND backend_type = 'client backend' AND usename = current_user`;
    // At least the pool's connection, the LISTEN connection and the leader's.
    expect(killed).toBeGreaterThanOrEqual(3);
    const ready = await waitFor(
      async () => {
        const res = await a.api("/api/health/ready", { key: null });
        return res.status === 200
          ? ((await res.json()) as { checks: { name: string; ok: boolean }[] })
          : null;
      },
      { what: "readiness to recover", timeoutMs: 30_000, intervalMs: 100 },
    );
    expect(ready.checks.filter((ch) => ["db", "listen"].includes(ch.name)).every((ch) => ch.ok)).toBe(true);
    const after = await pooled(
      Array.from({ length: 50 }, (_, n) => n),
      8,
      (n) => enqueue(a, "echo", { n }),
    );
    await waitFor(
      async () => {
        const [{ n }] = await c.pg
          .sql`SELECT count(*)::int AS n FROM jobs WHERE status = 'completed' AND type = 'echo'`;
        return n === before.length + after.length;
      },
      { timeoutMs: 60_000, intervalMs: 100, what: "all 100 jobs completed" },
    );
    // The schedules' leader took its lock again on a new connection.
    await waitFor(async () => (await c.leader())?.includes(await a.workerId()) ?? false, {
      what: "the leader lock held again",
      timeoutMs: 30_000,
    });
  }, 120_000);
});

describe("PostgreSQL closed to connections", () => {
  test("requests get 503 database_unavailable with Retry-After, never a 500, and succeed once it is back; nothing is lost", async () => {
    const c = await cluster();
    const a = await c.start();
    const user = await createUser(a.api);
    const before = await enqueue(a, "echo", { n: 1 });
    const [{ name }] = await c.pg.sql`SELECT current_database() AS name`;
    // From the maintenance database: this test's own pool loses its connections too.
    const admin = new SQL(PG_TEST_URL, { max: 1 });
    cleanups.push(() => admin.close());
    const allow = (on: boolean) => admin.unsafe(`ALTER DATABASE "${name}" ALLOW_CONNECTIONS ${on}`);
    await allow(false);
    try {
      // What a restart or a failover does: every session of the instance ends, and none can open.
      await admin`SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
        WHERE datname = ${name} AND backend_type = 'client backend' AND usename = current_user`;
      const requests: [string, Parameters<Instance["api"]>[1]][] = [
        ["/api/jobs", {}],
        [`/api/jobs/${before}`, {}],
        ["/api/jobs", { method: "POST", json: { type: "echo", input: { n: 2 } } }],
        ["/api/credits", { key: user.key }],
      ];
      for (const [path, init] of requests) {
        const res = await a.api(path, init);
        expect(`${init?.method ?? "GET"} ${path} ${res.status}`).toBe(`${init?.method ?? "GET"} ${path} 503`);
        expect(res.headers.get("retry-after")).toBe("5");
        expect(((await res.json()) as { error: { code: string } }).error.code).toBe("database_unavailable");
      }
      const ready = await a.api("/api/health/ready", { key: null });
      expect(ready.status).toBe(503);
    } finally {
      await allow(true);
    }
    // The pool reconnects by itself: the same requests go through, and the job queued before completes.
    await waitFor(async () => (await a.api("/api/jobs")).status === 200, {
      what: "requests to succeed again",
      timeoutMs: 30_000,
      intervalMs: 100,
    });
    expect((await a.api("/api/credits", { key: user.key })).status).toBe(200);
    const after = await enqueue(a, "echo", { n: 3 });
    for (const id of [before, after]) {
      await waitFor(
        async () =>
          ((await (await a.api(`/api/jobs/${id}`)).json()) as { status: string }).status === "completed",
        { what: `job ${id} to complete`, timeoutMs: 60_000, intervalMs: 100 },
      );
    }
  }, 120_000);
});

describe("credentials across instances", () => {
  test("a key revoked on one instance is refused by the other; a dashboard sign-out on one ends the session on both", async () => {
    const c = await cluster();
    const [a, b] = await Promise.all([c.start(), c.start()]);
    const user = await createUser(a.api);
    const spare = await expectStatus<{ id: string; key: string }>(
      await a.api("/api/keys", { method: "POST", key: user.key, json: { name: "spare" } }),
      201,
    );
    expect((await b.api("/api/credits", { key: spare.key })).status).toBe(200);
    await expectStatus(await b.api(`/api/keys/${spare.id}`, { method: "DELETE", key: user.key }), 200);
    expect((await a.api("/api/credits", { key: spare.key })).status).toBe(401);

    const cookie = await dashboardCookie(a.url);
    const page = (i: Instance) => fetch(`${i.url}/dashboard`, { headers: { cookie }, redirect: "manual" });
    const onB = await page(b);
    expect(onB.status).toBe(200);
    const csrf = /data-csrf="([^"]+)"/.exec(await onB.text())![1]!;
    const logout = await fetch(`${b.url}/dashboard/logout`, {
      method: "POST",
      redirect: "manual",
      headers: { cookie, "content-type": "application/x-www-form-urlencoded", origin: b.url },
      body: new URLSearchParams({ _csrf: csrf }),
    });
    expect(logout.status).toBe(303);
    expect((await page(a)).status).toBe(303);
    expect((await page(a)).headers.get("location")).toContain("/dashboard/login");
  }, 60_000);
});

describe("retention on PostgreSQL", () => {
  test("the leader deletes finished jobs past retention in slices, keeps the rest, and the counts stay exact", async () => {
    const c = await cluster();
    const a = await c.start();
    const done = async (n: number) =>
      waitFor(
        async () => {
          const [{ k }] = await c.pg.sql`SELECT count(*)::int AS k FROM jobs WHERE status = 'completed'`;
          return k === n;
        },
        { what: `${n} completed`, timeoutMs: 60_000, intervalMs: 100 },
      );
    const old = await pooled(
      Array.from({ length: 600 }, (_, n) => n),
      16,
      (n) => enqueue(a, "echo", { n }),
    );
    await done(old.length);
    // Two days ago, as if the server had been running since: past RETAIN_COMPLETED_HOURS (24).
    await c.pg.sql`UPDATE jobs SET finished_at = finished_at - ${48 * 3_600_000}`;
    const recent = await pooled(
      Array.from({ length: 20 }, (_, n) => n),
      4,
      (n) => enqueue(a, "echo", { n }),
    );
    await done(old.length + recent.length);
    await a.proc.kill("SIGTERM");
    await a.proc.exited;
    // Retention is due at start-up: the next instance to lead runs it.
    const b = await c.start();
    await waitFor(
      async () => {
        const [{ n }] = await c.pg.sql`SELECT count(*)::int AS n FROM jobs`;
        return n === recent.length;
      },
      { what: "the old jobs gone and the recent ones kept", timeoutMs: 60_000, intervalMs: 200 },
    );
    const stats = (await (await b.api("/api/jobs/stats")).json()) as { completed: number };
    expect(stats.completed).toBe(recent.length);
  }, 120_000);
});
