/**
 * A full disk, simulated on the server's own connection: `PRAGMA max_page_count` pinned to the file's size
 * and the free pages filled, so every write that needs a new page fails with SQLITE_FULL ("database or disk
 * is full") exactly as on a full disk. Jobs that hit it are re-queued (retryably, attempt kept) instead of
 * staying active, requests get 503 instead of 500, and readiness is red until space returns.
 */

import type { Database } from "bun:sqlite";
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import { join } from "node:path";
import { z } from "zod";
import { writeHealth } from "../../src/db/write-health";
import { defineJob } from "../../src/queue";
import { dbOf, startTestServer, type TestServer, tempDir, testQueue, waitFor } from "../helpers";

// bunfig's [test] timeout is not read by this Bun: the per-file default is set here, generously (a loaded
// machine makes these slower, never red).
setDefaultTimeout(60_000);

let server: TestServer;

beforeAll(async () => {
  server = await startTestServer({ env: { PLACEHOLDER_LATENCY_MS: "200", BATCH_CONCURRENCY: "2" } });
  server.ctx.db.$client.run("CREATE TABLE filler (x BLOB)");
});
afterAll(() => server.close());

function fillDisk(db: Database = server.ctx.db.$client): void {
  const { page_count } = db.query("PRAGMA page_count").get() as { page_count: number };
  db.query(`PRAGMA max_page_count = ${page_count}`).get();
  for (const size of [4000, 500, 50, 1]) {
    try {
      for (;;) db.run(`INSERT INTO filler VALUES (randomblob(${size}))`);
    } catch (err) {
      expect(String(err)).toContain("database or disk is full");
    }
  }
}

function freeDisk(db: Database = server.ctx.db.$client): void {
  db.query("PRAGMA max_page_count = 1073741823").get();
}

const readiness = async () => {
  const res = await server.api("/api/health/ready", { key: null });
  return { status: res.status, body: (await res.json()) as { checks: { name: string; error?: string }[] } };
};

test("a job whose writes hit a full disk is re-queued retryably, then completes once space returns", async () => {
  expect((await readiness()).status).toBe(200);
  const items = Array.from({ length: 30 }, (_, i) => ({ id: `i${i}`, prompt: `a lighthouse number ${i}` }));
  const res = await server.api("/api/jobs/generate-image", {
    method: "POST",
    json: { items, n: 4, size: "64x64" },
  });
  expect(res.status).toBe(202);
  const { jobId } = (await res.json()) as { jobId: string };
  await waitFor(async () => (await server.ctx.queue.get(jobId))?.status === "active", {
    what: "job to start",
  });
  fillDisk();

  const requeued = await waitFor(
    async () => {
      const job = await server.ctx.queue.get(jobId);
      return job?.status === "queued" && job.error?.code === "disk_full" ? job : null;
    },
    { timeoutMs: 20_000, what: "job to be re-queued with disk_full" },
  );
  expect(requeued.error).toMatchObject({ retryable: true, refundable: true });
  expect(requeued.attempts).toBe(0);

  const red = await readiness();
  expect(red.status).toBe(503);
  expect(red.body.checks.find((c) => c.name === "db")?.error).toContain("database or disk is full");

  // Requests that need to write answer 503, never 500.
  const many = Array.from({ length: 100 }, (_, i) => ({
    id: `m${i}`,
    prompt: `${"a long prompt ".repeat(40)}${i}`,
  }));
  const refused = await server.api("/api/jobs/generate-image", { method: "POST", json: { items: many } });
  expect(refused.status).toBe(503);
  expect(((await refused.json()) as { error: { code: string } }).error.code).toBe("database_unavailable");

  freeDisk();
  expect((await readiness()).status).toBe(200);
  const done = await waitFor(
    async () => {
      const job = await server.ctx.queue.get(jobId);
      return job && ["completed", "partial", "failed"].includes(job.status) ? job : null;
    },
    { timeoutMs: 25_000, what: "job to finish after space returned" },
  );
  expect(done.status).toBe("completed");
}, 90_000);

test("an outcome the full database refuses is kept, retried with backoff and recorded once space returns", async () => {
  const tmp = tempDir();
  const q = testQueue(join(tmp.dir, "q.db"));
  const gate = Promise.withResolvers<void>();
  q.define(
    defineJob({
      type: "big",
      input: z.object({}),
      // A result of 200 KB: recording it needs new pages, which the full database refuses.
      run: async () => {
        await gate.promise;
        return { blob: "x".repeat(200_000) };
      },
    }),
  );
  try {
    dbOf(q).run("CREATE TABLE filler (x BLOB)");
    const { id } = await q.enqueue("big", {});
    q.start();
    await waitFor(async () => (await q.get(id))?.status === "active", { what: "job to start" });
    fillDisk(dbOf(q));
    gate.resolve();
    await waitFor(() => writeHealth(dbOf(q)).fault, { timeoutMs: 20_000, what: "the refused settlement" });
    expect((await q.get(id))?.status).toBe("active");
    freeDisk(dbOf(q));
    const done = await waitFor(async () => ((await q.get(id))?.status === "completed" ? q.get(id) : null), {
      timeoutMs: 20_000,
      what: "the outcome to be recorded",
    });
    expect((done.result as { blob: string }).blob).toHaveLength(200_000);
  } finally {
    await q.stop(0);
    tmp.cleanup();
  }
});
