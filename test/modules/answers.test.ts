/**
 * Answers carry what was asked, over real HTTP, a real WebSocket and a real webhook receiver: a job shows its
 * request as accepted (prompts per item id, settings, the caller's metadata); terminal webhooks and frames
 * carry the images, the failed items with their codes and the metadata, so no follow-up GET is needed; an
 * instant claim names its recipe and variables; a retry shows the images already made; a cancelled job's
 * unfinished items are `cancelled`.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { InstantClaimView } from "../../src/modules/instant/model";
import { createRecipe, createUser, expectStatus, seedReadyBacklog } from "../fixtures/backlog";
import { startTestServer, type TestServer, waitFor } from "../helpers";
import { WsClient } from "../realtime/client";
import { Receiver } from "../webhooks/receiver";

type Asset = { url: string; thumbnailUrl: string | null; itemId: string | null; itemIdx: number };
type Job = {
  id: string;
  status: string;
  request: {
    provider: string;
    prompt: string | null;
    size: string;
    output: unknown;
    seed: number | null;
    negativePrompt: string | null;
    items?: { id: string; prompt: string; seed?: number }[];
    itemCount?: number;
  } | null;
  metadata: Record<string, unknown> | null;
  items?: { id: string; status: string; assets: Asset[] }[];
  assets?: Asset[];
};

const TERMINAL = new Set(["completed", "partial", "failed", "cancelled"]);
const metadata = { bookId: "book-7", pages: [1, 2], owner: { name: "Ada" } };

let server: TestServer;
let receiver: Receiver;
beforeAll(async () => {
  server = await startTestServer({
    env: {
      ALLOW_PRIVATE_URLS: "true",
      CREDITS_ENABLED: "false",
      ITEM_MAX_ATTEMPTS: "1",
      JOB_MAX_ATTEMPTS: "1",
      BACKLOG_CRON: "0 0 1 1 *",
    },
  });
  receiver = new Receiver();
  const { secret } = await expectStatus<{ secret: string }>(await server.api("/api/webhooks/secret"), 200);
  receiver.secrets.push(secret);
});
afterAll(async () => {
  receiver.stop();
  await server.close();
});

const submit = async (body: Record<string, unknown>) =>
  (
    await expectStatus<{ jobId: string }>(
      await server.api("/api/jobs/generate-image", { method: "POST", json: body }),
      202,
    )
  ).jobId;

const finished = (id: string) =>
  waitFor(
    async () => {
      const job = (await (await server.api(`/api/jobs/${id}`)).json()) as Job;
      return TERMINAL.has(job.status) ? job : null;
    },
    { timeoutMs: 20_000, what: `job ${id} to finish` },
  );

describe("a job shows its request as accepted", () => {
  test("the detail has every item's id and prompt, the settings and the caller's metadata", async () => {
    const id = await submit({
      items: [
        { id: "page-1", prompt: "a fox in a wood", seed: 7 },
        { id: "page-2", prompt: "a fox by a river" },
      ],
      negativePrompt: "blurry",
      size: "256x256",
      output: "thumb-256",
      metadata,
    });
    const job = await finished(id);
    expect(job.request).toMatchObject({
      provider: "placeholder",
      prompt: null,
      negativePrompt: "blurry",
      size: "256x256",
      output: "thumb-256",
      items: [
        { id: "page-1", prompt: "a fox in a wood", seed: 7 },
        { id: "page-2", prompt: "a fox by a river" },
      ],
    });
    expect(job.metadata).toEqual(metadata);
    // Which image is which page, without the app's own bookkeeping.
    expect(job.items?.map((i) => [i.id, i.assets.length])).toEqual([
      ["page-1", 1],
      ["page-2", 1],
    ]);

    const list = (await (await server.api("/api/jobs?type=generate")).json()) as { jobs: Job[] };
    const row = list.jobs.find((j) => j.id === id)!;
    expect(row.request).toMatchObject({ provider: "placeholder", size: "256x256", itemCount: 2 });
    expect(row.request?.items).toBeUndefined();
    expect(row.metadata).toEqual(metadata);
  });

  test("a multipart upload's JSON fields (items, metadata, an inline output) are read and handed back", async () => {
    const form = new FormData();
    form.set("items", JSON.stringify([{ id: "p1", prompt: "uploaded" }]));
    form.set("size", "128x128");
    form.set("output", JSON.stringify({ format: "webp", width: 64 }));
    form.set("metadata", JSON.stringify(metadata));
    const res = await server.api("/api/jobs/generate-image/upload", { method: "POST", body: form });
    const { jobId } = await expectStatus<{ jobId: string }>(res, 202);
    const job = await finished(jobId);
    expect(job.metadata).toEqual(metadata);
    expect(job.request).toMatchObject({
      items: [{ id: "p1", prompt: "uploaded" }],
      output: { format: "webp", width: 64 },
    });
  });

  test("a one-prompt job has its prompt; a recipe job its recipe and variables, not Easel's own keys", async () => {
    const single = await submit({ prompt: "a lighthouse", size: "128x128", seed: 3 });
    const job = await finished(single);
    expect(job.request).toMatchObject({
      prompt: "a lighthouse",
      seed: 3,
      items: [{ id: "main", prompt: "a lighthouse" }],
    });
    expect(job.metadata).toBeNull();

    await createRecipe(server.api, { id: "fox", backlogMin: 0 });
    const fromRecipe = await finished(
      await submit({ recipeId: "fox", variables: { color: "blue" }, metadata }),
    );
    expect(fromRecipe.request).toMatchObject({
      prompt: "a blue fox",
      recipeId: "fox",
      variables: { color: "blue" },
    });
    expect(fromRecipe.metadata).toEqual(metadata);
  });
});

describe("terminal webhooks and frames carry the outcome", () => {
  test("job.completed has each image with its item id and thumbnail, and the metadata", async () => {
    const id = await submit({
      items: [
        { id: "a", prompt: "one" },
        { id: "b", prompt: "two" },
      ],
      size: "128x128",
      metadata,
      webhookUrl: receiver.url,
    });
    const hook = await waitFor(() => receiver.ofType("job.completed").find((r) => r.body.data.jobId === id), {
      timeoutMs: 20_000,
      what: "the job.completed webhook",
    });
    expect(hook.verified).toBe(true);
    const data = hook.body.data as { assets: Asset[]; failedItems: unknown[]; metadata: unknown };
    expect(data.assets.map((a) => a.itemId)).toEqual(["a", "b"]);
    for (const a of data.assets) {
      expect((await fetch(a.url)).status).toBe(200);
      expect((await fetch(a.thumbnailUrl!)).status).toBe(200);
    }
    expect(data.failedItems).toEqual([]);
    expect(data.metadata).toEqual(metadata);
    // The earlier events name the metadata too.
    const started = await waitFor(
      () => receiver.ofType("job.started").find((r) => r.body.data.jobId === id),
      {
        what: "the job.started webhook",
      },
    );
    expect(started.body.data.metadata).toEqual(metadata);
  });

  test("job.partial names the failed items with their codes; the WebSocket frame says the same", async () => {
    const ws = await WsClient.connect(`${server.url.replace(/^http/, "ws")}/ws`, {
      headers: { authorization: `Bearer ${server.ctx.config.ADMIN_KEY}` },
    });
    try {
      const id = await submit({
        items: [
          { id: "ok", prompt: "fine" },
          { id: "broken", prompt: "[fail] not fine" },
        ],
        size: "128x128",
        metadata,
        webhookUrl: receiver.url,
      });
      ws.send({ type: "subscribe_to_job", jobId: id });
      const frame = await ws.next("job_partial", (f) => f.jobId === id, 20_000);
      expect(frame.failedItems).toEqual([
        { id: "broken", code: "provider_unavailable", message: expect.stringContaining("[fail]") },
      ]);
      expect((frame.assets as Asset[]).map((a) => a.itemId)).toEqual(["ok"]);
      expect(frame.metadata).toEqual(metadata);

      const hook = await waitFor(() => receiver.ofType("job.partial").find((r) => r.body.data.jobId === id), {
        timeoutMs: 20_000,
        what: "the job.partial webhook",
      });
      expect(hook.body.data).toMatchObject({
        failedItems: frame.failedItems,
        assets: frame.assets,
        metadata,
      });
    } finally {
      ws.close();
    }
  });

  test("job.failed carries the failed items and metadata too", async () => {
    const id = await submit({ prompt: "[fail] never", size: "128x128", metadata, webhookUrl: receiver.url });
    const hook = await waitFor(() => receiver.ofType("job.failed").find((r) => r.body.data.jobId === id), {
      timeoutMs: 20_000,
      what: "the job.failed webhook",
    });
    expect(hook.body.data).toMatchObject({
      error: { code: "provider_unavailable" },
      failedItems: [{ id: "main", code: "provider_unavailable" }],
      assets: [],
      metadata,
    });
  });
});

describe("control answers", () => {
  test("a retry answers with the images already made; only the failed item runs again", async () => {
    const id = await submit({
      items: [
        { id: "kept", prompt: "fine" },
        { id: "again", prompt: "[fail-once] flaky" },
      ],
      size: "128x128",
    });
    const partial = await finished(id);
    expect(partial.status).toBe("partial");
    const retried = await expectStatus<Job>(
      await server.api(`/api/jobs/${id}/retry`, { method: "POST" }),
      200,
    );
    expect(retried.items?.find((i) => i.id === "kept")).toMatchObject({ status: "completed" });
    expect(retried.items?.find((i) => i.id === "kept")?.assets).toHaveLength(1);
    expect(retried.assets?.map((a) => a.itemIdx)).toEqual([0]);
    expect((await finished(id)).status).toBe("completed");
  });

  test("a cancelled job's unfinished items are cancelled, and a retry runs them", async () => {
    const id = await submit({
      items: [
        { id: "s1", prompt: "[slow] one" },
        { id: "s2", prompt: "[slow] two" },
      ],
      size: "128x128",
    });
    const cancelled = await expectStatus<Job>(
      await server.api(`/api/jobs/${id}/cancel`, { method: "POST" }),
      200,
    );
    expect(cancelled.status).toBe("cancelled");
    expect(cancelled.items?.map((i) => i.status)).toEqual(["cancelled", "cancelled"]);
    const retried = await expectStatus<Job>(
      await server.api(`/api/jobs/${id}/retry`, { method: "POST" }),
      200,
    );
    expect(retried.items?.map((i) => i.status)).toEqual(["pending", "pending"]);
  });

  test("an instant claim names its recipe and the variables the image was made with", async () => {
    await createRecipe(server.api, { id: "ready-fox", backlogMin: 0 });
    const [jobId] = await seedReadyBacklog(server.ctx, "ready-fox", 1);
    const user = await createUser(server.api);
    const claim = await expectStatus<{ recipeId: string; variables: unknown; job: Job }>(
      await server.api("/api/generate/instant", {
        method: "POST",
        key: user.key,
        json: { recipeId: "ready-fox" },
      }),
      200,
    );
    expect(claim.recipeId).toBe("ready-fox");
    expect(claim.variables).toEqual({ color: "red" });
    expect(claim.job.id).toBe(jobId!);
    expect(claim.job.request).toMatchObject({ prompt: "a red fox", itemCount: 1 });
    expect(claim.job.metadata).toBeNull();
    // The documented shape, exactly.
    expect(InstantClaimView.strict().safeParse(claim).error).toBeUndefined();
  });
});
