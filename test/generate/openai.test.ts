/**
 * Generation through the whole engine against the fake OpenAI Images API: a batch where some prompts are
 * refused by the safety system (partial, then a retry that re-sends only those), and how each kind of
 * provider failure ends up on the job (retried, waited for, or failed with a stable code).
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { json, type RecordedRequest, type ReplyFn, testImage } from "../fakes/base";
import { OpenAIFake } from "../fakes/openai";
import { startTestServer, type TestServer, waitFor } from "../helpers";

type JobError = { code: string; message: string; retryable: boolean; refundable: boolean };
type JobDetail = {
  id: string;
  status: string;
  result: {
    totalItems: number;
    completedItems: number;
    failedItems: number;
    failedIds: string[];
    errors: Record<string, { code: string }>;
  } | null;
  error: JobError | null;
  items: { id: string; status: string; attempts: number; error: JobError | null; assets: unknown[] }[];
};

const TERMINAL = new Set(["completed", "partial", "failed", "cancelled"]);

let fake: OpenAIFake;
beforeAll(async () => {
  fake = await OpenAIFake.create();
  fake.image = await testImage({ format: "png", width: 256, height: 256, color: "#aa5522" });
});
afterAll(() => fake.stop());
afterEach(() => fake.reset());

function openaiServer(env: Record<string, string> = {}): Promise<TestServer> {
  return startTestServer({
    env: {
      OPENAI_API_KEY: "sk-test",
      OPENAI_BASE_URL: fake.baseUrl,
      // The adapter's default 50 rpm would pace these tests; the limiter has its own tests.
      PROVIDER_LIMITS: JSON.stringify({ openai: { rpm: 0, concurrency: 8 } }),
      ...env,
    },
  });
}

const promptOf = (req: RecordedRequest) => String(fake.field(req, "prompt"));

/** OpenAI's success body, as the fake's own route answers it. */
const success = () =>
  json({ created: 1_700_000_000, data: [{ b64_json: Buffer.from(fake.image).toString("base64") }] });

/** Serves every request through `policy` (undefined → success) until the next `fake.reset()`. */
function everyRequest(policy: (req: RecordedRequest) => Response | undefined): void {
  const reply: ReplyFn = (req, f) => {
    f.script(reply);
    return policy(req) ?? success();
  };
  fake.script(reply);
}

const safetyRejection = () =>
  json(
    {
      error: {
        message: "Your request was rejected as a result of our safety system.",
        type: "invalid_request_error",
        param: null,
        code: "content_policy_violation",
      },
    },
    400,
  );

async function submit(server: TestServer, body: Record<string, unknown>): Promise<string> {
  const res = await server.api("/api/jobs/generate-image", {
    method: "POST",
    json: { provider: "openai", size: "1024x1024", ...body },
  });
  const text = await res.text();
  expect(`${res.status} ${text}`).toStartWith("202 ");
  return (JSON.parse(text) as { jobId: string }).jobId;
}

async function finished(server: TestServer, id: string): Promise<JobDetail> {
  return waitFor(
    async () => {
      const job = (await (await server.api(`/api/jobs/${id}`)).json()) as JobDetail;
      return TERMINAL.has(job.status) ? job : null;
    },
    { timeoutMs: 20_000, what: `job ${id} to finish` },
  );
}

describe("a batch with safety rejections", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await openaiServer();
  });
  afterAll(() => server.close());

  test("14 items, 4 refused → partial with exactly those ids; a retry re-sends only those 4", async () => {
    const items = Array.from({ length: 14 }, (_, i) => ({
      id: `p${String(i + 1).padStart(2, "0")}`,
      prompt: `batch prompt ${i + 1}`,
    }));
    const refusedIds = ["p03", "p07", "p10", "p12"];
    const refused = new Set(items.filter((i) => refusedIds.includes(i.id)).map((i) => i.prompt));
    everyRequest((req) => (refused.has(promptOf(req)) ? safetyRejection() : undefined));

    const jobId = await submit(server, { items });
    const job = await finished(server, jobId);
    expect(job.status).toBe("partial");
    expect(job.result).toMatchObject({ totalItems: 14, completedItems: 10, failedItems: 4 });
    expect(job.result?.failedIds.toSorted()).toEqual(refusedIds);
    for (const id of refusedIds) expect(job.result?.errors[id]?.code).toBe("content_policy");
    for (const item of job.items) {
      if (refusedIds.includes(item.id)) {
        expect(item).toMatchObject({ status: "failed", attempts: 1, assets: [] });
        expect(item.error).toMatchObject({ code: "content_policy", retryable: false, refundable: false });
      } else {
        expect(item.status).toBe("completed");
        expect(item.assets).toHaveLength(1);
      }
    }
    // Every prompt reached the provider once: refusals are final, not retried.
    const firstRound = fake.requests.map(promptOf);
    expect(firstRound.toSorted()).toEqual(items.map((i) => i.prompt).toSorted());

    // The provider now accepts them; a retry runs the failed items only.
    refused.clear();
    fake.requests.length = 0;
    const retry = await server.api(`/api/jobs/${jobId}/retry`, { method: "POST" });
    expect(retry.status).toBe(200);
    const again = await finished(server, jobId);
    expect(again.status).toBe("completed");
    expect(again.items.every((i) => i.status === "completed")).toBe(true);
    expect(again.result).toMatchObject({ totalItems: 14, completedItems: 14, failedItems: 0, failedIds: [] });
    const secondRound = fake.requests.map(promptOf);
    expect(secondRound.toSorted()).toEqual(
      items
        .filter((i) => refusedIds.includes(i.id))
        .map((i) => i.prompt)
        .toSorted(),
    );
    const assets = server.ctx.db.$client
      .query("SELECT item_idx FROM assets WHERE job_id = ? ORDER BY item_idx")
      .all(jobId) as { item_idx: number }[];
    expect(assets.map((a) => a.item_idx)).toEqual(items.map((_, i) => i));
  }, 30_000);
});

describe("provider failures through the engine", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await openaiServer();
  });
  afterAll(() => server.close());

  test("429 with Retry-After, then success → completed after waiting, without spending an attempt", async () => {
    const at: number[] = [];
    fake.script(() => {
      at.push(Date.now());
      return json(
        {
          error: { message: "Rate limit reached for images", type: "requests", code: "rate_limit_exceeded" },
        },
        429,
        { "retry-after": "1" },
      );
    });
    fake.script(() => {
      at.push(Date.now());
      return success();
    });
    const job = await finished(server, await submit(server, { prompt: "rate limited once" }));
    expect(job.status).toBe("completed");
    expect(fake.requests.map(promptOf)).toEqual(["rate limited once", "rate limited once"]);
    expect(at[1]! - at[0]!).toBeGreaterThanOrEqual(950);
    expect(job.items[0]).toMatchObject({ status: "completed", attempts: 1 });
  });

  test("500, then success → completed on the second attempt", async () => {
    fake.serverError(500);
    const job = await finished(server, await submit(server, { prompt: "server hiccup" }));
    expect(job.status).toBe("completed");
    expect(fake.requests).toHaveLength(2);
    expect(job.items[0]).toMatchObject({ status: "completed", attempts: 2 });
  });

  test("insufficient_quota → failed provider_quota at once, no retry", async () => {
    fake.insufficientQuota();
    const job = await finished(server, await submit(server, { prompt: "no credit left" }));
    expect(job.status).toBe("failed");
    expect(job.error).toMatchObject({ code: "provider_quota", retryable: false, refundable: true });
    expect(job.items[0]).toMatchObject({ status: "failed", attempts: 1 });
    expect(fake.requests).toHaveLength(1);
  });

  test("a safety rejection → failed content_policy, not refundable, one request", async () => {
    fake.contentPolicy("content_policy_violation");
    const job = await finished(server, await submit(server, { prompt: "something unsafe" }));
    expect(job.status).toBe("failed");
    expect(job.error).toMatchObject({ code: "content_policy", retryable: false, refundable: false });
    expect(job.items[0]?.error).toMatchObject({ code: "content_policy", refundable: false });
    expect(fake.requests).toHaveLength(1);
  });
});

describe("short item limits (ITEM_TIMEOUT_MS, ITEM_MAX_ATTEMPTS=2)", () => {
  const ITEM_TIMEOUT_MS = 1000;
  let server: TestServer;
  beforeAll(async () => {
    server = await openaiServer({ ITEM_TIMEOUT_MS: String(ITEM_TIMEOUT_MS), ITEM_MAX_ATTEMPTS: "2" });
  });
  afterAll(() => server.close());

  test("one hang: the attempt times out after ITEM_TIMEOUT_MS and the retry completes", async () => {
    fake.hang();
    const started = Date.now();
    const job = await finished(server, await submit(server, { prompt: "slow then fine" }));
    expect(job.status).toBe("completed");
    expect(Date.now() - started).toBeGreaterThanOrEqual(ITEM_TIMEOUT_MS);
    expect(fake.requests).toHaveLength(2);
    expect(job.items[0]).toMatchObject({ status: "completed", attempts: 2 });
  });

  test("hangs on every attempt → failed timeout after ITEM_MAX_ATTEMPTS", async () => {
    fake.hang().hang();
    const job = await finished(server, await submit(server, { prompt: "never answers" }));
    expect(job.status).toBe("failed");
    expect(job.error?.code).toBe("timeout");
    expect(job.items[0]).toMatchObject({ status: "failed", attempts: 2 });
    expect(fake.requests).toHaveLength(2);
  });
  test("an image sharp cannot decode → retried, then failed provider_bad_response with no asset", async () => {
    const good = fake.image;
    // A PNG signature and header, then nothing: it sniffs as PNG but cannot be decoded.
    fake.image = good.slice(0, 64);
    try {
      const jobId = await submit(server, { prompt: "truncated output" });
      const job = await finished(server, jobId);
      expect(job.status).toBe("failed");
      expect(job.error).toMatchObject({
        code: "provider_bad_response",
        message: expect.stringContaining("sharp cannot read"),
        retryable: false,
      });
      expect(job.items[0]).toMatchObject({ status: "failed", attempts: 2, assets: [] });
      expect(fake.requests).toHaveLength(2);
      const rows = server.ctx.db.$client
        .query("SELECT count(*) AS n FROM assets WHERE job_id = ?")
        .get(jobId);
      expect(rows).toEqual({ n: 0 });
    } finally {
      fake.image = good;
    }
  });
});

describe("edits", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await openaiServer();
  });
  afterAll(() => server.close());

  test("the validated input image and mask reach /images/edits as files, byte for byte", async () => {
    const image = await testImage({ format: "jpeg", width: 48, height: 32 });
    const mask = await testImage({ format: "png", width: 48, height: 32 });
    const form = new FormData();
    form.append("image", new File([image], "photo.jpg", { type: "image/jpeg" }));
    form.append("mask", new File([mask], "mask.png", { type: "image/png" }));
    form.append("prompt", "replace the sky");
    form.append("provider", "openai");
    form.append("size", "1024x1024");
    const res = await server.api("/api/jobs/generate-image/upload", { method: "POST", body: form });
    expect(res.status).toBe(202);
    const job = await finished(server, ((await res.json()) as { jobId: string }).jobId);
    expect(job.status).toBe("completed");
    const [sent] = fake.requestsTo("/v1/images/edits");
    const file = (name: string) =>
      sent?.form?.find(([k]) => k === name)?.[1] as { type: string; bytes: Uint8Array };
    expect(fake.field(sent!, "prompt")).toBe("replace the sky");
    expect(file("image").type).toBe("image/jpeg");
    expect(file("image").bytes).toEqual(image);
    expect(file("mask").bytes).toEqual(mask);
  });
});
