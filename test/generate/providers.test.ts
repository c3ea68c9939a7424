/**
 * Generate jobs through the whole engine (HTTP API → queue → adapter → fake provider → assets) for the remote
 * providers other than OpenAI (test/generate/openai.test.ts covers that one): a safety rejection in each
 * provider's own shape fails the job with `content_policy` after one request, and a 429 with Retry-After is
 * waited out and then completes, without spending an attempt.
 *
 * Each provider's base-URL setting (REPLICATE_BASE_URL, FAL_QUEUE_URL, GEMINI_BASE_URL, HF_BASE_URL,
 * BFL_BASE_URL) points the server at its fake.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import type { RecordedRequest } from "../fakes/base";
import { BflFake, bflError } from "../fakes/bfl";
import { FalFake, falError } from "../fakes/fal";
import { GeminiFake } from "../fakes/gemini";
import { HuggingFaceFake } from "../fakes/huggingface";
import { ReplicateFake, replicateError } from "../fakes/replicate";
import { startTestServer, type TestServer, waitFor } from "../helpers";

type JobError = { code: string; retryable: boolean; refundable: boolean };
type JobDetail = {
  status: string;
  error: JobError | null;
  items: { id: string; status: string; attempts: number; error: JobError | null; assets: unknown[] }[];
};

const TERMINAL = new Set(["completed", "partial", "failed", "cancelled"]);

let replicate: ReplicateFake;
let fal: FalFake;
let gemini: GeminiFake;
let hf: HuggingFaceFake;
let bfl: BflFake;
let server: TestServer;

beforeAll(async () => {
  [replicate, fal, gemini, hf, bfl] = await Promise.all([
    new ReplicateFake().start(),
    new FalFake().start(),
    GeminiFake.create(),
    HuggingFaceFake.create(),
    new BflFake().start(),
  ]);
  server = await startTestServer({
    env: {
      CREDITS_ENABLED: "false",
      REPLICATE_API_TOKEN: "r8_test",
      REPLICATE_BASE_URL: replicate.baseUrl,
      FAL_KEY: "fal-test",
      FAL_QUEUE_URL: fal.url,
      GEMINI_API_KEY: "AIza-test",
      GEMINI_BASE_URL: gemini.baseUrl,
      HF_TOKEN: "hf_test",
      HF_BASE_URL: hf.url,
      BFL_API_KEY: bfl.apiKey,
      BFL_BASE_URL: bfl.url,
      // The adapters' default rpm would pace these tests; the limiter has its own tests.
      PROVIDER_LIMITS: JSON.stringify(
        Object.fromEntries(
          ["replicate", "fal", "gemini", "huggingface", "bfl"].map((p) => [p, { rpm: 0, concurrency: 4 }]),
        ),
      ),
    },
  });
});

afterAll(async () => {
  await server?.close();
  await Promise.all([replicate?.stop(), fal?.stop(), gemini?.stop(), hf?.stop(), bfl?.stop()]);
});

beforeEach(() => {
  replicate.reset();
  // `Prefer: wait` answers finished, as Replicate does for fast models: no 1 s polling in these tests.
  replicate.behaviour.sync = true;
  fal.reset();
  fal.behaviour.queuedPolls = 0;
  fal.behaviour.progressPolls = 0;
  gemini.reset();
  hf.reset();
  bfl.reset();
  bfl.behaviour.pendingPolls = 0;
});

async function submit(provider: string, prompt: string): Promise<string> {
  const res = await server.api("/api/jobs/generate-image", {
    method: "POST",
    json: { provider, prompt, size: "256x256" },
  });
  const text = await res.text();
  expect(`${res.status} ${text}`).toStartWith("202 ");
  return (JSON.parse(text) as { jobId: string }).jobId;
}

async function finished(id: string): Promise<JobDetail> {
  return waitFor(
    async () => {
      const job = (await (await server.api(`/api/jobs/${id}`)).json()) as JobDetail;
      return TERMINAL.has(job.status) ? job : null;
    },
    { timeoutMs: 20_000, what: `job ${id} to finish` },
  );
}

type Case = {
  provider: string;
  /** The provider's generation calls (not polls or downloads) seen by its fake. */
  generations: () => RecordedRequest[];
  /** The next generation is refused by the provider's safety system, in its own shape. */
  refuse: () => void;
  /** The next generation call answers 429 with `retry-after: 1`. */
  throttleOnce: () => void;
};

const isGeneration = (r: RecordedRequest) => r.method === "POST";

const cases: Case[] = [
  {
    provider: "replicate",
    generations: () => replicate.server.requests.filter(isGeneration),
    // Replicate reports safety only as a failed prediction whose error mentions NSFW content.
    refuse: () => {
      replicate.behaviour.fail = "NSFW content detected. Try running it again, or try a different prompt.";
    },
    throttleOnce: () => replicate.server.script(replicateError.throttled(1), { method: "POST" }),
  },
  {
    provider: "fal",
    generations: () => fal.server.requests.filter((r) => isGeneration(r) && !r.path.includes("/requests/")),
    // Every image flagged by fal's checker (`has_nsfw_concepts`).
    refuse: () => {
      fal.behaviour.nsfw = [true];
    },
    throttleOnce: () => fal.server.script(falError.rateLimited(1), { method: "POST" }),
  },
  {
    provider: "gemini",
    generations: () => gemini.requests.filter(isGeneration),
    // HTTP 200 whose candidate stopped with finishReason IMAGE_SAFETY.
    refuse: () => gemini.finished("IMAGE_SAFETY"),
    throttleOnce: () => gemini.resourceExhausted("1s"),
  },
  {
    provider: "huggingface",
    generations: () => hf.requests.filter(isGeneration),
    refuse: () => hf.nsfwRefused(),
    throttleOnce: () => hf.rateLimited({ "retry-after": "1" }),
  },
  {
    provider: "bfl",
    generations: () => bfl.submissions,
    // Moderation is a poll status: the task ends as "Request Moderated".
    refuse: () => {
      bfl.behaviour.outcome = "Request Moderated";
    },
    throttleOnce: () => bfl.server.script(bflError.activeTasks(1), { method: "POST" }),
  },
];

describe.each(cases)("$provider through the engine", (c) => {
  test("a safety rejection → failed content_policy (not refundable) after one request", async () => {
    c.refuse();
    const job = await finished(await submit(c.provider, `something unsafe for ${c.provider}`));
    expect(job.status).toBe("failed");
    expect(job.error).toMatchObject({ code: "content_policy", retryable: false, refundable: false });
    expect(job.items[0]).toMatchObject({ status: "failed", attempts: 1, assets: [] });
    expect(job.items[0]?.error).toMatchObject({ code: "content_policy", refundable: false });
    expect(c.generations()).toHaveLength(1);
  });

  test("429 with Retry-After, then success → completed after waiting, without spending an attempt", async () => {
    c.throttleOnce();
    const job = await finished(await submit(c.provider, `rate limited once on ${c.provider}`));
    expect(job.status).toBe("completed");
    expect(job.items[0]).toMatchObject({ status: "completed", attempts: 1 });
    expect(job.items[0]?.assets).toHaveLength(1);
    expect(c.generations()).toHaveLength(2);
    // The two generation calls, as the fake received them: the second waited out the 1 s Retry-After.
    const calls = c.generations();
    expect(calls[1]!.at - calls[0]!.at).toBeGreaterThanOrEqual(950);
  });
});
