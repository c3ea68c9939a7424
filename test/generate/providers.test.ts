/**
 * Generate jobs through the whole engine (HTTP API → queue → adapter → fake provider → assets) for the remote
 * providers other than OpenAI (test/generate/openai.test.ts covers that one): a safety rejection in each
 * provider's own shape fails the job with `content_policy` after one request, and a 429 with Retry-After is
 * waited out and then completes, without spending an attempt.
 *
 * Replicate, fal, Gemini and Hugging Face have no base-URL setting in the configuration (only OpenAI, ComfyUI
 * and A1111 do), so the server runs with their real default URLs and this file's `fetch` sends requests for
 * those hosts to the fake servers instead; anything else leaving 127.0.0.1 fails the test rather than
 * reaching the internet.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import type { RecordedRequest } from "../fakes/base";
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
let server: TestServer;

/** Outgoing requests to the providers' real hosts, as rewritten, with the time they were sent. */
const sent: { url: string; method: string; at: number }[] = [];
const realFetch = globalThis.fetch;

function redirectProviderHosts(): void {
  const routes: [string, () => string][] = [
    ["https://api.replicate.com/v1", () => replicate.baseUrl],
    ["https://queue.fal.run", () => fal.url],
    ["https://generativelanguage.googleapis.com/v1beta", () => gemini.baseUrl],
    ["https://router.huggingface.co", () => hf.url],
  ];
  const redirected = (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const url = typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
    const route = routes.find(([from]) => url.startsWith(from));
    if (route) {
      if (input instanceof Request)
        throw new Error(`test fetch: Request objects are not redirected (${url})`);
      const target = route[1]() + url.slice(route[0].length);
      sent.push({ url: target, method: (init?.method ?? "GET").toUpperCase(), at: Date.now() });
      return realFetch(target, init);
    }
    const host = new URL(url).hostname;
    if (host !== "127.0.0.1" && host !== "localhost") {
      return Promise.reject(new Error(`test fetch: unexpected outbound request to ${url}`));
    }
    return realFetch(input, init);
  };
  globalThis.fetch = Object.assign(redirected, { preconnect: realFetch.preconnect }) as typeof fetch;
}

beforeAll(async () => {
  [replicate, fal, gemini, hf] = await Promise.all([
    new ReplicateFake().start(),
    new FalFake().start(),
    GeminiFake.create(),
    HuggingFaceFake.create(),
  ]);
  redirectProviderHosts();
  server = await startTestServer({
    env: {
      CREDITS_ENABLED: "false",
      REPLICATE_API_TOKEN: "r8_test",
      FAL_KEY: "fal-test",
      GEMINI_API_KEY: "AIza-test",
      HF_TOKEN: "hf_test",
      // The adapters' default rpm would pace these tests; the limiter has its own tests.
      PROVIDER_LIMITS: JSON.stringify(
        Object.fromEntries(
          ["replicate", "fal", "gemini", "huggingface"].map((p) => [p, { rpm: 0, concurrency: 4 }]),
        ),
      ),
    },
  });
});

afterAll(async () => {
  await server?.close();
  globalThis.fetch = realFetch;
  await Promise.all([replicate?.stop(), fal?.stop(), gemini?.stop(), hf?.stop()]);
});

beforeEach(() => {
  sent.length = 0;
  replicate.reset();
  // `Prefer: wait` answers finished, as Replicate does for fast models: no 1 s polling in these tests.
  replicate.behaviour.sync = true;
  fal.reset();
  fal.behaviour.queuedPolls = 0;
  fal.behaviour.progressPolls = 0;
  gemini.reset();
  hf.reset();
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
    // The two generation calls, as sent: the second waited out the 1 s Retry-After.
    const calls = sent.filter((s) => s.method === "POST" && !s.url.includes("/requests/"));
    expect(calls).toHaveLength(2);
    expect(calls[1]!.at - calls[0]!.at).toBeGreaterThanOrEqual(950);
  });
});
