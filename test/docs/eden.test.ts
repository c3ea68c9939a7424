/**
 * The typed client: `treaty<App>` against a running server. This file is type-checked (`bun run check`),
 * so a route whose path, body or response shape changes breaks the build here first.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { treaty } from "@elysiajs/eden";
import type { App } from "../../src/app";
import { CardView } from "../../src/modules/cards/model";
import { ErrorBody } from "../../src/modules/docs/model";
import { ADMIN_KEY, startTestServer, type TestServer, waitFor } from "../helpers";

let server: TestServer;

beforeAll(async () => {
  server = await startTestServer({ env: { RENDER_WORKERS: "1" } });
});
afterAll(() => server.close());

const client = () => treaty<App>(server.url, { headers: { authorization: `Bearer ${ADMIN_KEY}` } });

test("creates a card, queues a generation and reads its status through typed calls", async () => {
  const api = client();

  const created = await api.api.cards.post({
    template: "poll",
    data: {
      question: "Best pizza topping?",
      creator: { name: "Ada" },
      options: [
        { label: "Mushroom", votes: 3 },
        { label: "Pineapple", votes: 1 },
      ],
    },
  });
  expect(created.status).toBe(201);
  // Typed from the route itself: no cast, no parse (a wrong field name here fails `tsc`).
  const card = created.data;
  if (!card) throw new Error(`no card: ${JSON.stringify(created.error)}`);
  const status: string = card.status;
  const stable: string = card.stableImageUrl;
  expect(status).toBe("rendered");
  expect(stable).toEndWith(`/api/cards/${card.id}/image`);
  // And the documented schema agrees with what came back.
  expect(CardView.parse(card).id).toBe(card.id);

  // Elysia types a body by its schema's output, so fields with defaults (n, output) are required here.
  const queued = await api.api.jobs["generate-image"].post({
    prompt: "a lighthouse at dusk",
    size: "256x256",
    n: 1,
    output: "original",
  });
  expect(queued.status).toBe(202);
  const jobId = queued.data?.jobId;
  if (!jobId) throw new Error(`no job id: ${JSON.stringify(queued.error)}`);
  expect(queued.data?.statusUrl).toContain(jobId);

  const done = await waitFor(
    async () => {
      const { data } = await api.api.jobs({ id: jobId }).status.get();
      return data?.status === "completed" ? data : null;
    },
    { what: "the generation to complete" },
  );
  expect(done.jobId).toBe(jobId);
  expect(done.progress).toBe(100);
  expect(done.error).toBeNull();
});

test("every JSON answer is typed by its route's response schema: jobs, keys, webhooks, credits", async () => {
  const api = client();

  const queued = await api.api.jobs["generate-image"].post({
    prompt: "a heron",
    size: "256x256",
    n: 1,
    output: "original",
  });
  const jobId = queued.data?.jobId;
  if (!jobId) throw new Error(`no job id: ${JSON.stringify(queued.error)}`);
  const job = await waitFor(
    async () => {
      const { data } = await api.api.jobs({ id: jobId }).get();
      return data?.status === "completed" ? data : null;
    },
    { what: "the generation to complete" },
  );
  // `request` and `assets` are typed from JobView: a renamed field fails `tsc` here.
  const prompt: string | null | undefined = job.request?.prompt;
  expect(prompt).toBe("a heron");
  const url: string | undefined = job.assets?.[0]?.url;
  expect(url).toContain("/files/");

  const list = await api.api.jobs.get({ query: { limit: 5 } });
  const ids: string[] = list.data?.jobs.map((j) => j.id) ?? [];
  expect(ids).toContain(jobId);

  const key = await api.api.keys.post({ name: "eden" });
  expect(key.status).toBe(201);
  const secret: string | undefined = key.data?.key;
  expect(secret).toStartWith("esk_");

  const endpoints = await api.api.webhooks.get();
  expect(Array.isArray(endpoints.data?.endpoints)).toBe(true);

  const credits = await api.api.credits.get({ query: { limit: 10 } });
  const balance: number | undefined = credits.data?.credits;
  expect(typeof balance).toBe("number");
});

test("errors come back typed with the documented error shape", async () => {
  const missing = await client().api.jobs({ id: "no-such-job" }).status.get();
  expect(missing.status).toBe(404);
  expect(ErrorBody.parse(missing.error?.value).error.code).toBe("not_found");

  const anonymous = await treaty<App>(server.url).api.jobs({ id: "x" }).status.get();
  expect(anonymous.status).toBe(401);
});
