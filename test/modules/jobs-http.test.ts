import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { z } from "zod";
import type { ErrorBody as ErrorSchema } from "../../src/modules/docs/model";
import type {
  JobList as JobListSchema,
  JobStats,
  JobStatusView,
  JobView,
} from "../../src/modules/jobs/model";
import type { HealthReport } from "../../src/modules/ops/model";
import { defineJob, UnrecoverableError } from "../../src/queue";
import { ADMIN_KEY, startTestServer, type TestServer, waitFor } from "../helpers";

const HOUR = 3_600_000;

type ErrorBody = z.infer<typeof ErrorSchema>;
type JobList = z.infer<typeof JobListSchema>;
type StatusView = JobStatusView;
type Counts = z.infer<typeof JobStats>;
type QueueStatus = {
  running: boolean;
  slots: { total: number; free: number };
  active: { id: string; type: string }[];
  debounced: { dedupeKey: string; jobId: string }[];
  counts: Counts;
};
type Health = HealthReport;

/** Flipped by the retry test: the next `flaky` attempt fails while this is true. */
const flaky = { fail: true };
/** Releases every running `block` job. */
const gates = new Set<() => void>();
const releaseAll = () => {
  for (const release of [...gates]) release();
};

const jobTypes = [
  defineJob({
    type: "echo",
    input: z.object({ n: z.number() }),
    run: async ({ input }) => ({ doubled: input.n * 2 }),
  }),
  defineJob({
    type: "flaky",
    input: z.object({}),
    maxAttempts: 1,
    run: async () => {
      if (flaky.fail) throw new UnrecoverableError("flaky is failing", { code: "flaky_failed" });
      return { ok: true };
    },
  }),
  defineJob({
    type: "block",
    input: z.object({}),
    run: ({ signal }) =>
      new Promise((resolve) => {
        const release = () => {
          gates.delete(release);
          resolve({ released: true });
        };
        gates.add(release);
        signal.addEventListener("abort", release, { once: true });
      }),
  }),
  defineJob({
    type: "batch",
    input: z.object({}),
    items: {
      maxAttempts: 1,
      run: async ({ itemInput }) => {
        if ((itemInput as { fail?: boolean }).fail)
          throw new UnrecoverableError("item broke", { code: "item_broke" });
        return { result: { fine: true } };
      },
    },
  }),
];

async function ok<T>(res: Response, status = 200): Promise<T> {
  const text = await res.text();
  expect(`${res.status} ${text}`).toStartWith(`${status} `);
  return JSON.parse(text) as T;
}

async function expectError(res: Response, status: number, code: string): Promise<void> {
  const text = await res.text();
  expect(`${res.status} ${text}`).toStartWith(`${status} `);
  const body = JSON.parse(text) as ErrorBody;
  expect(body.error.code).toBe(code);
  expect(body.error.message.length).toBeGreaterThan(0);
}

async function createUser(server: TestServer, role: "app" | "user") {
  const res = await server.api("/api/users", {
    method: "POST",
    json: { name: `${role}-${Bun.randomUUIDv7()}`, role },
  });
  const created = await ok<{ user: { id: string }; key: string }>(res, 201);
  return { id: created.user.id, key: created.key };
}

function rowStatus(server: TestServer, id: string): string | undefined {
  const row = server.ctx.db.$client.query("SELECT status FROM jobs WHERE id = ?").get(id) as {
    status: string;
  } | null;
  return row?.status;
}

function waitForStatus(server: TestServer, id: string, status: string): Promise<boolean> {
  return waitFor(() => rowStatus(server, id) === status, { timeoutMs: 5000, what: `job ${id} ${status}` });
}

describe("jobs over HTTP", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ jobs: jobTypes, env: { WORKER_CONCURRENCY: "4" } });
  });
  afterAll(async () => {
    releaseAll();
    await server.close();
  });

  const enqueue = async (
    type: string,
    input: unknown,
    ownerId: string | null,
    opts: { delayMs?: number } = {},
  ) => (await server.ctx.queue.enqueue(type, input, { ownerId, ...opts })).id;
  const list = async (key: string, query = "") => ok<JobList>(await server.api(`/api/jobs${query}`, { key }));
  const ids = async (key: string, query = "") => (await list(key, query)).jobs.map((j) => j.id);

  test("GET /api/jobs lists the caller's own jobs only (admins: all)", async () => {
    const a = await createUser(server, "user");
    const b = await createUser(server, "user");
    const jobsA = [
      await enqueue("echo", { n: 1 }, a.id, { delayMs: HOUR }),
      await enqueue("echo", { n: 2 }, a.id, { delayMs: HOUR }),
    ];
    const jobB = await enqueue("echo", { n: 3 }, b.id, { delayMs: HOUR });

    const listed = await list(a.key);
    expect(listed.jobs.map((j) => j.id).sort()).toEqual([...jobsA].sort());
    expect(listed.jobs.every((j) => j.ownerId === a.id)).toBe(true);
    expect(listed.nextCursor).toBeNull();
    expect(await ids(b.key)).toEqual([jobB]);
    expect(await ids(ADMIN_KEY, "?limit=200")).toEqual(expect.arrayContaining([...jobsA, jobB]));
  });

  test("GET /api/jobs filters by status and type", async () => {
    const u = await createUser(server, "user");
    const done = [await enqueue("echo", { n: 1 }, u.id), await enqueue("echo", { n: 2 }, u.id)];
    const delayedEcho = await enqueue("echo", { n: 3 }, u.id, { delayMs: HOUR });
    const delayedBatch = (
      await server.ctx.queue.enqueue(
        "batch",
        {},
        { ownerId: u.id, delayMs: HOUR, items: [{ key: "only", input: {} }] },
      )
    ).id;
    const cancelled = await enqueue("echo", { n: 4 }, u.id, { delayMs: HOUR });
    await server.ctx.queue.cancel(cancelled);
    for (const id of done) await waitForStatus(server, id, "completed");

    const sorted = async (query: string) => (await ids(u.key, query)).sort();
    expect(await sorted("?status=completed")).toEqual([...done].sort());
    expect(await sorted("?type=echo")).toEqual([...done, delayedEcho, cancelled].sort());
    expect(await sorted("?status=delayed")).toEqual([delayedEcho, delayedBatch].sort());
    expect(await sorted("?status=queued&type=batch")).toEqual([delayedBatch]);
    expect(await sorted("?status=queued&type=echo")).toEqual([delayedEcho]);
    expect(await sorted("?status=cancelled")).toEqual([cancelled]);
    expect(await sorted("?status=failed")).toEqual([]);
    expect(await sorted("?type=no-such-type")).toEqual([]);
  });

  test("GET /api/jobs pages with a cursor: no duplicates, newest first, nextCursor null at the end", async () => {
    const u = await createUser(server, "user");
    const created = await Promise.all(
      Array.from({ length: 7 }, (_, n) => enqueue("echo", { n }, u.id, { delayMs: HOUR })),
    );

    const pages: JobList[] = [];
    let cursor: string | null = null;
    do {
      const query: string = `?limit=3${cursor ? `&cursor=${cursor}` : ""}`;
      const page: JobList = await list(u.key, query);
      pages.push(page);
      cursor = page.nextCursor;
    } while (cursor && pages.length < 10);

    expect(pages.map((p) => p.jobs.length)).toEqual([3, 3, 1]);
    expect(pages.map((p) => p.nextCursor === null)).toEqual([false, false, true]);
    const seen = pages.flatMap((p) => p.jobs.map((j) => j.id));
    expect(new Set(seen).size).toBe(7);
    expect(seen).toEqual([...created].sort().reverse());

    // An exact multiple of the page size ends without an empty trailing page.
    const six = await list(u.key, `?limit=3&cursor=${seen[0]}`);
    expect(six.jobs.length).toBe(3);
    const last = await list(u.key, `?limit=3&cursor=${six.nextCursor}`);
    expect(last.jobs.map((j) => j.id)).toEqual(seen.slice(4));
    expect(last.nextCursor).toBeNull();
  });

  test("a batch job shows its items on GET /api/jobs/:id and item counts on /status", async () => {
    const items = [
      { id: "first", input: {} },
      { id: "broken", input: { fail: true } },
      { id: "third", input: {} },
    ];
    const waiting = await ok<JobView>(
      await server.api("/api/jobs", {
        method: "POST",
        json: { type: "batch", input: {}, items, delayMs: HOUR },
      }),
      202,
    );
    const pending = await ok<StatusView>(await server.api(`/api/jobs/${waiting.id}/status`));
    expect(pending).toMatchObject({ status: "queued", completedItems: 0, totalItems: 3, result: null });

    const job = await ok<JobView>(
      await server.api("/api/jobs", { method: "POST", json: { type: "batch", input: {}, items } }),
      202,
    );
    await waitForStatus(server, job.id, "partial");

    const detail = await ok<JobView>(await server.api(`/api/jobs/${job.id}`));
    expect(detail.status).toBe("partial");
    expect(detail.items?.map((i) => [i.id, i.idx, i.status])).toEqual([
      ["first", 0, "completed"],
      ["broken", 1, "failed"],
      ["third", 2, "completed"],
    ]);
    expect(detail.items?.[0]?.result).toEqual({ fine: true });
    expect(detail.items?.[1]?.error?.code).toBe("item_broke");

    const status = await ok<StatusView>(await server.api(`/api/jobs/${job.id}/status`));
    expect(status).toMatchObject({
      jobId: job.id,
      status: "partial",
      completedItems: 2,
      totalItems: 3,
      progress: 100,
    });
    expect(status.result).toMatchObject({ totalItems: 3, completedItems: 2, failedIds: ["broken"] });

    const plain = await enqueue("echo", { n: 5 }, job.ownerId, { delayMs: HOUR });
    const plainStatus = await ok<StatusView>(await server.api(`/api/jobs/${plain}/status`));
    expect(plainStatus).toMatchObject({ completedItems: null, totalItems: null });
    expect((await ok<JobView>(await server.api(`/api/jobs/${plain}`))).items).toEqual([]);
  });

  test("cancelling a queued job: 200 and cancelled; again (or a finished job) 409", async () => {
    const queued = await ok<JobView>(
      await server.api("/api/jobs", {
        method: "POST",
        json: { type: "echo", input: { n: 1 }, delayMs: HOUR },
      }),
      202,
    );
    const cancelled = await ok<JobView>(
      await server.api(`/api/jobs/${queued.id}/cancel`, { method: "POST" }),
    );
    expect(cancelled).toMatchObject({ id: queued.id, status: "cancelled" });
    expect(rowStatus(server, queued.id)).toBe("cancelled");
    await expectError(
      await server.api(`/api/jobs/${queued.id}/cancel`, { method: "POST" }),
      409,
      "not_cancellable",
    );

    const finished = await ok<JobView>(
      await server.api("/api/jobs", { method: "POST", json: { type: "echo", input: { n: 2 } } }),
      202,
    );
    await waitForStatus(server, finished.id, "completed");
    await expectError(
      await server.api(`/api/jobs/${finished.id}/cancel`, { method: "POST" }),
      409,
      "not_cancellable",
    );
    expect(rowStatus(server, finished.id)).toBe("completed");
  });

  test("retrying a failed job queues it again and it completes; other states get 409", async () => {
    flaky.fail = true;
    const job = await ok<JobView>(
      await server.api("/api/jobs", { method: "POST", json: { type: "flaky", input: {} } }),
      202,
    );
    await waitForStatus(server, job.id, "failed");
    const failed = await ok<JobView>(await server.api(`/api/jobs/${job.id}`));
    expect(failed.error?.code).toBe("flaky_failed");

    const queued = await enqueue("echo", { n: 1 }, failed.ownerId, { delayMs: HOUR });
    await expectError(
      await server.api(`/api/jobs/${queued}/retry`, { method: "POST" }),
      409,
      "not_retryable",
    );

    flaky.fail = false;
    const retried = await ok<JobView>(await server.api(`/api/jobs/${job.id}/retry`, { method: "POST" }));
    expect(retried).toMatchObject({ id: job.id, status: "queued", error: null });
    await waitForStatus(server, job.id, "completed");
    const done = await ok<StatusView>(await server.api(`/api/jobs/${job.id}/status`));
    expect(done).toMatchObject({ status: "completed", result: { ok: true } });
    await expectError(
      await server.api(`/api/jobs/${job.id}/retry`, { method: "POST" }),
      409,
      "not_retryable",
    );
  });

  test("GET /api/jobs/stats counts the caller's jobs by status and type (apps: with their users')", async () => {
    const app = await createUser(server, "app");
    const minted = await ok<{ userId: string; token: string }>(
      await server.api("/api/tokens", { method: "POST", key: app.key, json: { userId: "stats-user" } }),
      201,
    );
    const owner = minted.userId;
    await enqueue("echo", { n: 1 }, owner, { delayMs: HOUR });
    await enqueue("echo", { n: 2 }, owner, { delayMs: HOUR });
    const done = await enqueue("echo", { n: 3 }, owner);
    const cancelled = await enqueue("batch", {}, owner, { delayMs: HOUR });
    await server.ctx.queue.cancel(cancelled);
    flaky.fail = true;
    const failed = await enqueue("flaky", {}, app.id);
    await waitForStatus(server, done, "completed");
    await waitForStatus(server, failed, "failed");

    const stats = await ok<Counts>(await server.api("/api/jobs/stats", { key: app.key }));
    expect(stats).toEqual({
      waiting: 0,
      delayed: 2,
      active: 0,
      completed: 1,
      partial: 0,
      failed: 1,
      cancelled: 1,
      byType: { echo: { delayed: 2, completed: 1 }, batch: { cancelled: 1 }, flaky: { failed: 1 } },
    });
    const stranger = await createUser(server, "user");
    const empty = await ok<Counts>(await server.api("/api/jobs/stats", { key: stranger.key }));
    expect(empty).toMatchObject({ delayed: 0, completed: 0, failed: 0, cancelled: 0, byType: {} });

    const admin = await ok<Counts>(await server.api("/api/jobs/stats"));
    const sql = server.ctx.db.$client
      .query("SELECT count(*) AS n FROM jobs WHERE status = 'completed'")
      .get() as { n: number };
    expect(admin.completed).toBe(sql.n);
    expect(admin.completed).toBeGreaterThan(stats.completed);
    await expectError(await server.api("/api/jobs/stats", { key: minted.token }), 403, "forbidden");
  });

  test("GET /api/queue/status shows active jobs, free slots and debounced keys to admins only", async () => {
    const blockers = [
      (
        await ok<JobView>(
          await server.api("/api/jobs", { method: "POST", json: { type: "block", input: {} } }),
          202,
        )
      ).id,
      (
        await ok<JobView>(
          await server.api("/api/jobs", { method: "POST", json: { type: "block", input: {} } }),
          202,
        )
      ).id,
    ];
    const debounced = (
      await server.ctx.queue.enqueue("echo", { n: 9 }, { dedupeKey: "status-view", debounceMs: HOUR })
    ).id;
    await waitFor(() => gates.size === 2, { what: "both block jobs running" });

    const view = await ok<QueueStatus>(await server.api("/api/queue/status"));
    expect(view.running).toBe(true);
    expect(view.slots).toEqual({ total: 4, free: 2 });
    expect(view.active.map((a) => a.id).sort()).toEqual([...blockers].sort());
    expect(view.active.every((a) => a.type === "block")).toBe(true);
    expect(view.counts.active).toBe(2);
    expect(view.debounced).toContainEqual(
      expect.objectContaining({ dedupeKey: "status-view", jobId: debounced }),
    );

    const app = await createUser(server, "app");
    const user = await createUser(server, "user");
    await expectError(await server.api("/api/queue/status", { key: app.key }), 403, "forbidden");
    await expectError(await server.api("/api/queue/status", { key: user.key }), 403, "forbidden");

    releaseAll();
    for (const id of blockers) await waitForStatus(server, id, "completed");
    const after = await ok<QueueStatus>(await server.api("/api/queue/status"));
    expect(after.slots).toEqual({ total: 4, free: 4 });
    expect(after.active).toEqual([]);
    await server.ctx.queue.cancel(debounced);
  });

  test("Idempotency-Key: a repeat returns the same job and creates one row; another body gets 422", async () => {
    const marker = 424_242;
    const rows = () =>
      (
        server.ctx.db.$client
          .query("SELECT count(*) AS n FROM jobs WHERE type = 'echo' AND json_extract(input, '$.n') = ?")
          .get(marker) as { n: number }
      ).n;
    const post = (n: number, key: string) =>
      server.api("/api/jobs", {
        method: "POST",
        json: { type: "echo", input: { n }, delayMs: HOUR },
        headers: { "idempotency-key": key },
      });

    const first = await ok<JobView>(await post(marker, "enqueue-once"), 202);
    const again = await ok<JobView>(await post(marker, "enqueue-once"), 202);
    expect(again.id).toBe(first.id);
    expect(again).toEqual(first);
    expect(rows()).toBe(1);

    await expectError(await post(marker + 1, "enqueue-once"), 422, "idempotency_key_reused");
    expect(rows()).toBe(1);
    const other = await ok<JobView>(await post(marker, "enqueue-twice"), 202);
    expect(other.id).not.toBe(first.id);
    expect(rows()).toBe(2);
  });

  test("Idempotency-Key on control routes replays the first answer, per caller", async () => {
    const app = await createUser(server, "app");
    const mine = await enqueue("echo", { n: 1 }, app.id, { delayMs: HOUR });
    const admins = await enqueue("echo", { n: 2 }, null, { delayMs: HOUR });
    const cancel = (id: string, key: string) =>
      server.api(`/api/jobs/${id}/cancel`, {
        method: "POST",
        key,
        headers: { "idempotency-key": "cancel-1" },
      });

    const first = await ok<JobView>(await cancel(mine, app.key));
    expect(first.status).toBe("cancelled");
    expect(await ok<JobView>(await cancel(mine, app.key))).toEqual(first);
    await expectError(
      await server.api(`/api/jobs/${mine}/cancel`, { method: "POST", key: app.key }),
      409,
      "not_cancellable",
    );
    // The same key from another caller is a different request.
    expect((await ok<JobView>(await cancel(admins, ADMIN_KEY))).id).toBe(admins);
  });
});

describe("health", () => {
  let server: TestServer | null = null;
  afterEach(async () => {
    await server?.close();
    server = null;
  });

  test("/api/health and /api/jobs/health are 200 with checks, and 503 naming the failing check", async () => {
    server = await startTestServer();
    for (const path of ["/api/health", "/api/jobs/health"]) {
      const res = await server.api(path, { key: null });
      const health = await ok<Health>(res);
      expect(health).toMatchObject({ ok: true, status: "ok" });
      expect(health.checks.map((c) => [c.name, c.ok])).toEqual(
        expect.arrayContaining([
          ["db", true],
          ["workers", true],
        ]),
      );
    }

    await server.ctx.queue.stop(0);
    for (const path of ["/api/health", "/api/jobs/health"]) {
      const health = await ok<Health>(await server.api(path, { key: null }), 503);
      expect(health).toMatchObject({ ok: false, status: "unavailable" });
      const failing = health.checks.filter((c) => !c.ok);
      expect(failing.map((c) => c.name)).toEqual(["workers"]);
      expect(failing[0]?.error).toContain("not running");
    }
    expect((await server.api("/api/health/live", { key: null })).status).toBe(200);
  });
});
