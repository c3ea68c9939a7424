/**
 * The API reference's response schemas (src/modules/docs/schemas.ts) describe what the services build by
 * hand (`jobView`, `statusView`, `CardService.view`, …). Here every documented shape is checked against a
 * live response, strictly at the top level, so a field added, dropped or retyped shows up as a failure.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import type { z } from "zod";
import { TokenView } from "../../src/modules/auth/model";
import { CardList, CardView } from "../../src/modules/cards/model";
import { JobList, JobStats, JobStatusView, JobView } from "../../src/modules/jobs/model";
import { HealthReport } from "../../src/modules/ops/model";
import { startTestServer, type TestServer, waitFor } from "../helpers";

let server: TestServer;
let jobId: string;
let cardId: string;

beforeAll(async () => {
  server = await startTestServer({ env: { RENDER_WORKERS: "1", CREDITS_ENABLED: "false" } });
  const gen = await server.api("/api/jobs/generate-image", {
    method: "POST",
    json: {
      size: "256x256",
      items: [
        { id: "a", prompt: "a fox" },
        { id: "b", prompt: "[unsafe] a fox" },
      ],
    },
  });
  jobId = ((await gen.json()) as { jobId: string }).jobId;
  await waitFor(() => server.ctx.queue.get(jobId)?.status === "partial", {
    timeoutMs: 15_000,
    what: "the job",
  });
  await server.api(`/api/jobs/${jobId}/retry`, { method: "POST" });
  await waitFor(() => server.ctx.queue.get(jobId)?.status === "partial", {
    timeoutMs: 15_000,
    what: "the retry",
  });
  const card = await server.api("/api/cards", {
    method: "POST",
    json: { template: "og", data: { title: "Shapes" } },
  });
  cardId = ((await card.json()) as { id: string }).id;
});
afterAll(() => server.close());

async function matches(schema: z.ZodObject, path: string, init?: Parameters<TestServer["api"]>[1]) {
  const res = await server.api(path, init);
  expect(res.status).toBeLessThan(300);
  const body = await res.json();
  const parsed = schema.strict().safeParse(body);
  expect(`${path}: ${parsed.error?.message ?? "ok"}`).toBe(`${path}: ok`);
  return body;
}

test("jobs: a batch job with items, assets and history; its status; the list; the counts", async () => {
  const job = (await matches(JobView, `/api/jobs/${jobId}`)) as { items: unknown[]; history: unknown[] };
  expect(job.items).toHaveLength(2);
  expect(job.history).toHaveLength(1);
  await matches(JobStatusView, `/api/jobs/${jobId}/status`);
  await matches(JobList, "/api/jobs");
  await matches(JobStats, "/api/jobs/stats");
});

test("cards, tokens and health", async () => {
  await matches(CardView, `/api/cards/${cardId}`);
  await matches(CardList, "/api/cards");
  await matches(TokenView, "/api/tokens", { method: "POST", json: { userId: "someone" } });
  await matches(HealthReport, "/api/health", { key: null });
});
