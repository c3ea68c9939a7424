import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { type BflOptions, createBflProvider } from "../../src/providers/bfl";
import type { ProviderError } from "../../src/providers/errors";
import { CancelledError } from "../../src/queue/errors";
import { HANG } from "../fakes/base";
import { BflFake, bflError } from "../fakes/bfl";
import { context, failureOf, request, until } from "./adapter-support";

let fake: BflFake;

beforeAll(async () => {
  fake = await new BflFake().start();
});
afterAll(() => fake.stop());
beforeEach(() => fake.reset());

const provider = (opts: Partial<BflOptions> = {}) =>
  createBflProvider({ apiKey: fake.apiKey, baseUrl: fake.url, pollIntervalMs: 5, ...opts });

const polls = () => fake.server.requestsTo("/regional/us1/v1/get_result");

describe("bfl request shape and lifecycle", () => {
  test("submits with x-key, polls the returned polling URL, downloads the signed sample", async () => {
    const ctx = context();
    const images = await provider().generate(request({ size: "1440x800", seed: 21 }), ctx);
    const submit = fake.submissions[0]!;
    expect(submit.path).toBe("/v1/flux-pro-1.1");
    expect(submit.headers.get("x-key")).toBe(fake.apiKey);
    expect(submit.json).toEqual({
      prompt: "a red fox in the snow",
      width: 1440,
      height: 800,
      output_format: "png",
      seed: 21,
    });
    // Pending, Pending, Ready: every poll went to the URL the submit answered, with the key.
    expect(polls()).toHaveLength(3);
    for (const p of polls()) {
      expect(p.query.get("id")).toBe("task-1");
      expect(p.headers.get("x-key")).toBe(fake.apiKey);
    }
    const download = fake.server.requestsTo(/^\/delivery\//)[0]!;
    expect(download.query.get("sig")).toBe("fake");
    expect(download.headers.get("x-key")).toBeNull();
    expect(images).toEqual([{ bytes: fake.image, mime: "image/png", seed: 21 }]);
    expect(ctx.progress.map((p) => p.pct)).toEqual([33, 67]);
    expect(ctx.progress[0]!.message).toBe("pending");
  });

  test("n images are n tasks with seeds one apart", async () => {
    const p = provider();
    const images = await p.generate(request({ n: 3, seed: 5 }), context());
    expect(images.map((i) => i.seed).sort()).toEqual([5, 6, 7]);
    expect(fake.submissions).toHaveLength(3);
    expect(p.requestCost?.(request({ n: 3 }))).toBe(3);
  });

  test("Kontext edits send the input as base64 input_image; without a size, no aspect_ratio", async () => {
    const img = { bytes: fake.image, mime: "image/png" };
    await provider().generate(
      request({ model: "flux-kontext-pro", images: [img], prompt: "make it night", sizeGiven: false }),
      context(),
    );
    await provider().generate(request({ model: "flux-kontext-pro", size: "1344x768" }), context());
    const [edit, text] = fake.submissions.map((r) => r.json as Record<string, unknown>);
    expect(fake.submissions[0]!.path).toBe("/v1/flux-kontext-pro");
    expect(edit).toEqual({
      prompt: "make it night",
      output_format: "png",
      input_image: Buffer.from(fake.image).toString("base64"),
    });
    expect(text).toMatchObject({ aspect_ratio: "16:9" });
    expect(text).not.toHaveProperty("width");
  });

  test("Kontext Max takes several inputs as input_image, input_image_2, …", async () => {
    const img = { bytes: fake.image, mime: "image/png" };
    await provider().generate(request({ model: "flux-kontext-max", images: [img, img] }), context());
    expect(Object.keys(fake.submissions[0]!.json as object)).toEqual(
      expect.arrayContaining(["input_image", "input_image_2"]),
    );
  });

  test("an abort while pending rethrows the job's reason (BFL has no cancel endpoint)", async () => {
    fake.behaviour.pendingPolls = 1_000_000;
    const ac = new AbortController();
    const run = provider().generate(request(), context(ac.signal));
    await until(() => polls().length >= 2);
    const reason = new CancelledError();
    ac.abort(reason);
    expect(await failureOf(run)).toBe(reason);
  });
});

describe("bfl failures", () => {
  test.each([["Request Moderated"], ["Content Moderated"]] as const)(
    "%s → content_policy with the reasons, not refundable",
    async (outcome) => {
      fake.behaviour.outcome = outcome;
      const err = await failureOf(provider().generate(request(), context()));
      expect(err).toMatchObject({
        kind: "content_policy",
        code: "content_policy",
        retryable: false,
        refundable: false,
      });
      expect((err as Error).message).toContain("Derivative Works Filter");
    },
  );

  test("Error and a lost task are retryable provider_failed", async () => {
    fake.behaviour.outcome = "Error";
    expect(await failureOf(provider().generate(request(), context()))).toMatchObject({
      code: "provider_failed",
      retryable: true,
    });
    fake.behaviour.outcome = "Task not found";
    expect(await failureOf(provider().generate(request(), context()))).toMatchObject({
      code: "provider_failed",
      retryable: true,
    });
  });

  test("429 too many active tasks: retryable; with Retry-After, that wait; then success", async () => {
    fake.server.script(bflError.activeTasks(), { method: "POST" });
    const p = provider();
    const plain = await failureOf(p.generate(request(), context()));
    expect(plain).toMatchObject({ kind: "rate_limited" });
    expect((plain as ProviderError).retryAfterMs).toBeUndefined();
    expect(plain).toMatchObject({ code: "provider_rate_limited" });
    fake.server.script(bflError.activeTasks(4), { method: "POST" });
    expect(await failureOf(p.generate(request(), context()))).toMatchObject({ retryAfterMs: 4000 });
    expect(await p.generate(request(), context())).toHaveLength(1);
  });

  test("a 429 on a poll is a rate limit too", async () => {
    fake.server.script(bflError.activeTasks(2), { path: "/regional/us1/v1/get_result" });
    expect(await failureOf(provider().generate(request(), context()))).toMatchObject({
      code: "provider_rate_limited",
      retryAfterMs: 2000,
    });
  });

  test.each([
    ["out of credits (402)", bflError.insufficientCredits(), "provider_quota", "quota"],
    ["a wrong key (403)", bflError.unauthenticated(), "provider_auth", "auth"],
  ])("%s → %s, not retried", async (_what, reply, code, kind) => {
    fake.server.script(reply, { method: "POST" });
    const err = await failureOf(provider().generate(request(), context()));
    expect(err).toMatchObject({ kind, code, retryable: false, refundable: true });
  });

  test("a size off the 32-pixel grid is BFL's 422 → provider_invalid_request with its message", async () => {
    const err = await failureOf(provider().generate(request({ size: "1000x1000" }), context()));
    expect(err).toMatchObject({ code: "provider_invalid_request", retryable: false });
    expect((err as Error).message).toContain("multiple of 32");
  });

  test("5xx and 503 are retryable, and the next attempt succeeds", async () => {
    fake.server.script(bflError.internal(), { method: "POST" });
    fake.server.script(bflError.unavailable(), { path: "/regional/us1/v1/get_result" });
    const p = provider();
    expect(await failureOf(p.generate(request(), context()))).toMatchObject({ code: "provider_unavailable" });
    expect(await failureOf(p.generate(request(), context()))).toMatchObject({ code: "provider_unavailable" });
    expect(await p.generate(request(), context())).toHaveLength(1);
  });

  test("an expired signed URL is retryable (a new task gets a fresh one), not an auth failure", async () => {
    fake.behaviour.expired = true;
    const err = await failureOf(provider().generate(request(), context()));
    expect(err).toMatchObject({ kind: "transient", code: "provider_output_expired" });
  });

  test("a hanging submit is cut at the request timeout as a retryable timeout", async () => {
    fake.server.script(HANG, { method: "POST" });
    const err = await failureOf(provider({ timeoutMs: 150 }).generate(request(), context()));
    expect(err).toMatchObject({ code: "provider_timeout", retryable: true });
  });
});
