/**
 * The dashboard tells the truth, over plain HTTP with a signed-in session: a job's page shows its prompts and
 * metadata; an instantly claimed image's "took" is its generation time, not its wait in the backlog; Easel's
 * internal jobs are out of the counts and the list until asked for; a favicon is served.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import sharp from "sharp";
import { createRecipe, createUser, expectStatus, seedReadyBacklog } from "../fixtures/backlog";
import { dashboardCookie, startTestServer, type TestServer, waitFor } from "../helpers";

let server: TestServer;
let cookie: string;

beforeAll(async () => {
  server = await startTestServer({
    env: { RENDER_WORKERS: "1", CREDITS_ENABLED: "false", BACKLOG_CRON: "0 0 1 1 *" },
  });
  cookie = await dashboardCookie(server.url);
});
afterAll(() => server.close());

async function page(path: string): Promise<string> {
  const res = await fetch(`${server.url}${path}`, { headers: { cookie }, redirect: "manual" });
  expect(res.status).toBe(200);
  return res.text();
}

const finished = (id: string) =>
  waitFor(
    async () => ["completed", "partial", "failed"].includes((await server.ctx.queue.get(id))?.status ?? ""),
    {
      timeoutMs: 20_000,
      what: `job ${id} to finish`,
    },
  );

test("a job's page shows each item's prompt, the request's settings and the caller's metadata", async () => {
  const { jobId } = await expectStatus<{ jobId: string }>(
    await server.api("/api/jobs/generate-image", {
      method: "POST",
      json: {
        items: [
          { id: "page-1", prompt: "a fox reading <b>a book</b>" },
          { id: "page-2", prompt: "a fox asleep" },
        ],
        negativePrompt: "text, watermark",
        size: "128x128",
        metadata: { bookId: "story-42" },
      },
    }),
    202,
  );
  await finished(jobId);
  const html = await page(`/dashboard/jobs/${jobId}`);
  // Escaped, each beside its item id.
  expect(html).toContain("a fox reading &lt;b&gt;a book&lt;/b&gt;");
  expect(html).toMatch(/page-2<\/td><td class="prompt-cell">a fox asleep<\/td>/);
  expect(html).toContain("text, watermark");
  expect(html).toContain('id="metadata-h"');
  expect(html).toContain("story-42");
});

test("an instantly claimed image's 'took' is how long it was generating, not how long it waited", async () => {
  await createRecipe(server.api, { id: "dash-fox", backlogMin: 0 });
  const [jobId] = await seedReadyBacklog(server.ctx, "dash-fox", 1);
  // Generated in 1.5 s, then an hour in the backlog before the claim.
  const generatedAt = Date.now() - 3_600_000;
  server.ctx.db.$client
    .query("UPDATE jobs SET started_at = ?, finished_at = ? WHERE id = ?")
    .run(generatedAt - 1500, generatedAt, jobId!);
  const user = await createUser(server.api);
  await expectStatus(
    await server.api("/api/generate/instant", {
      method: "POST",
      key: user.key,
      json: { recipeId: "dash-fox" },
    }),
    200,
  );
  const job = await expectStatus<{ instantClaim: { generatedAt: number; claimedAt: number } }>(
    await server.api(`/api/jobs/${jobId}`),
    200,
  );
  expect(job.instantClaim.generatedAt).toBe(generatedAt);

  const html = await page(`/dashboard/jobs/${jobId}`);
  expect(html).toContain("took 1.5 s");
  expect(html).toContain("Claimed instantly");
  const list = await page("/dashboard/jobs?recipeId=dash-fox");
  expect(list).toMatch(/<td class="num hide-sm">1\.5 s<\/td>/);
});

describe("internal jobs", () => {
  test("are left out of the counts and the list by default, and shown when asked for", async () => {
    const card = await expectStatus<{ id: string }>(
      await server.api("/api/cards", {
        method: "POST",
        json: {
          template: "poll",
          data: {
            question: "Q?",
            creator: { name: "A" },
            options: [
              { label: "x", votes: 1 },
              { label: "y", votes: 0 },
            ],
          },
        },
      }),
      201,
    );
    await expectStatus(
      await server.api(`/api/cards/${card.id}`, {
        method: "PATCH",
        json: {
          data: {
            question: "Q2?",
            creator: { name: "A" },
            options: [
              { label: "x", votes: 2 },
              { label: "y", votes: 0 },
            ],
          },
        },
      }),
      200,
    );
    const renderJob = await waitFor(
      () =>
        server.ctx.db.$client.query("SELECT id FROM jobs WHERE type = 'card.render' LIMIT 1").get() as {
          id: string;
        } | null,
      { what: "a card.render job" },
    );

    const list = await page("/dashboard/jobs");
    expect(list).not.toContain(renderJob.id);
    expect(list).toContain('name="internal"');
    expect(await page("/dashboard/jobs?internal=1")).toContain(renderJob.id);
    // Naming the type is asking for it.
    expect(await page("/dashboard/jobs?type=card.render")).toContain(renderJob.id);

    const all = await server.ctx.queue.stats();
    const internal = Object.entries(all.byType)
      .filter(([type]) => type.startsWith("card.") || type === "webhook.deliver" || type === "backlog.topup")
      .reduce((n, [, counts]) => n + Object.values(counts).reduce((a, b) => a + b, 0), 0);
    expect(internal).toBeGreaterThan(0);
    const overview = await page("/dashboard");
    const shown = [...overview.matchAll(/data-count="(\w+)">(\d+)</g)].reduce((n, m) => n + Number(m[2]), 0);
    const total = ["waiting", "delayed", "active", "completed", "partial", "failed", "cancelled"].reduce(
      (n, k) => n + (all as unknown as Record<string, number>)[k]!,
      0,
    );
    expect(shown).toBe(total - internal);
    expect(overview).toContain('href="/dashboard/jobs?internal=1"');
  });
});

test("a favicon is served: an ICO holding a 32x32 PNG, and the SVG the pages link", async () => {
  const res = await fetch(`${server.url}/favicon.ico`);
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toBe("image/x-icon");
  const ico = Buffer.from(await res.arrayBuffer());
  expect([ico.readUInt16LE(0), ico.readUInt16LE(2), ico.readUInt16LE(4)]).toEqual([0, 1, 1]);
  const png = ico.subarray(ico.readUInt32LE(18), ico.readUInt32LE(18) + ico.readUInt32LE(14));
  expect(await sharp(png).metadata()).toMatchObject({ format: "png", width: 32, height: 32 });

  const svg = await fetch(`${server.url}/favicon.svg`);
  expect(svg.headers.get("content-type")).toBe("image/svg+xml");
  expect(await svg.text()).toStartWith("<svg");
  expect(await page("/dashboard")).toContain('<link rel="icon" href="/favicon.svg"');
});
