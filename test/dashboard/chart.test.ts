/**
 * The overview's throughput chart, over plain HTTP with a signed-in session: the last hour's ends of apps'
 * jobs from the rollup. Minutes the clock has left behind are read once and kept by the server; the
 * current ones are read again on every refresh, so a job that just ended shows at once.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { dashboardCookie, startTestServer, type TestServer, waitFor } from "../helpers";

let server: TestServer;
let cookie: string;

beforeAll(async () => {
  server = await startTestServer({ env: { CREDITS_ENABLED: "false", BACKLOG_CRON: "0 0 1 1 *" } });
  cookie = await dashboardCookie(server.url);
});
afterAll(() => server.close());

/** What the chart says it shows (its accessible label), from the fragment the page refreshes. */
async function chart(): Promise<{ completed: number; failed: number }> {
  const res = await fetch(`${server.url}/dashboard/fragments/overview`, { headers: { cookie } });
  expect(res.status).toBe(200);
  const label = /aria-label="(\d+) completed and (\d+) failed in the last hour"/.exec(await res.text());
  expect(label).not.toBeNull();
  return { completed: Number(label![1]), failed: Number(label![2]) };
}

async function generate(prompt: string): Promise<void> {
  const res = await server.api("/api/jobs/generate-image", {
    method: "POST",
    json: { prompt, size: "64x64" },
  });
  expect(res.status).toBe(202);
  const { jobId } = (await res.json()) as { jobId: string };
  await waitFor(
    async () => ["completed", "failed"].includes((await server.ctx.queue.get(jobId))?.status ?? ""),
    {
      timeoutMs: 20_000,
      what: `job ${jobId} to end`,
    },
  );
}

test("shows the last hour's ends: settled minutes kept, the current ones re-read on every refresh", async () => {
  const now = Math.floor(Date.now() / 60_000);
  // Rollup rows as the store writes them when jobs end: 20 minutes ago (settled, inside the hour), and
  // 90 minutes ago (outside it). Card renders are Easel's own work and cancelled runs are not ends shown.
  server.ctx.db.$client.run(
    `INSERT INTO job_throughput (scope, minute, type, status, n) VALUES
       ('', ?1, 'generate', 'completed', 7), ('', ?1, 'generate', 'failed', 2), ('', ?1, 'generate', 'partial', 1),
       ('', ?1, 'card.render', 'completed', 50), ('', ?1, 'generate', 'cancelled', 3),
       ('', ?2, 'generate', 'completed', 40)`,
    [now - 20, now - 90],
  );
  expect(await chart()).toEqual({ completed: 7, failed: 3 });
  await generate("a fox in the snow");
  expect(await chart()).toEqual({ completed: 8, failed: 3 });
  await generate("a fox in the snow [unsafe]");
  expect(await chart()).toEqual({ completed: 8, failed: 4 });
  expect(await server.ctx.queue.stats()).toMatchObject({ completed: 1, failed: 1 });
}, 30_000);

test("an admin's overview lists the live instances: this server, with its host and version", async () => {
  const res = await fetch(`${server.url}/dashboard/fragments/overview`, { headers: { cookie } });
  const page = await res.text();
  const section = /<section[^>]*aria-labelledby="instances-h">([\s\S]*?)<\/section>/.exec(page)?.[1] ?? "";
  expect(section).toContain("1 live");
  expect(section).toContain(`title="${server.ctx.queue.workerId}"`);
  const { version } = (await import("../../package.json")).default;
  expect(section).toContain(version);
});
