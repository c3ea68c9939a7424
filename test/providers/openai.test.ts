import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { createOpenAIProvider } from "../../src/providers/openai";
import type { GenerateRequest } from "../../src/providers/types";
import { json, testImage } from "../fakes/base";
import { OpenAIFake } from "../fakes/openai";
import { expectFailure } from "./assert-failure";

let fake: OpenAIFake;
beforeAll(async () => {
  fake = await OpenAIFake.create();
});
afterAll(() => fake.stop());
beforeEach(() => {
  fake.reset();
  fake.responseMode = "b64";
});

const ctx = () => ({ signal: new AbortController().signal });
const req = (over: Partial<GenerateRequest> = {}): GenerateRequest => ({
  prompt: "a lighthouse at dusk",
  size: "1024x1024",
  n: 1,
  ...over,
});
const provider = (timeoutMs?: number) =>
  createOpenAIProvider({ apiKey: "sk-test", baseUrl: fake.baseUrl, ...(timeoutMs && { timeoutMs }) });

describe("openai: generations", () => {
  test("sends the documented JSON body with bearer auth and decodes b64_json", async () => {
    const images = await provider().generate(
      req({
        n: 2,
        size: "1536x1024",
        negativePrompt: "people",
        params: { quality: "low", output_format: "png" },
      }),
      ctx(),
    );
    const sent = fake.requests[0];
    expect(sent?.method).toBe("POST");
    expect(sent?.path).toBe("/v1/images/generations");
    expect(sent?.headers.get("authorization")).toBe("Bearer sk-test");
    expect(sent?.json).toEqual({
      model: "gpt-image-1",
      prompt: "a lighthouse at dusk\n\nAvoid: people",
      n: 2,
      size: "1536x1024",
      quality: "low",
      output_format: "png",
    });
    expect(images).toHaveLength(2);
    expect(images[0]).toEqual({ bytes: fake.image, mime: "image/png" });
  });

  test("dall-e-3 asks for b64_json and makes one call per image", async () => {
    const images = await provider().generate(req({ model: "dall-e-3", n: 2, size: "1024x1792" }), ctx());
    expect(images).toHaveLength(2);
    expect(fake.requests.map((r) => r.json)).toEqual([
      {
        model: "dall-e-3",
        prompt: "a lighthouse at dusk",
        n: 1,
        size: "1024x1792",
        response_format: "b64_json",
      },
      {
        model: "dall-e-3",
        prompt: "a lighthouse at dusk",
        n: 1,
        size: "1024x1792",
        response_format: "b64_json",
      },
    ]);
    expect(provider().requestCost?.(req({ model: "dall-e-3", n: 2 }))).toBe(2);
  });

  test("url responses are downloaded, revised_prompt kept", async () => {
    fake.responseMode = "url";
    const [img] = await provider().generate(req({ model: "sd-turbo" }), ctx());
    expect(img).toEqual({ bytes: fake.image, mime: "image/png", revisedPrompt: "revised 0" });
    expect(fake.requests.map((r) => `${r.method} ${r.path}`)).toEqual([
      "POST /v1/images/generations",
      "GET /files/out-0.png",
    ]);
  });

  test("unknown models (OpenAI-compatible servers) get the size as requested", async () => {
    await provider().generate(req({ model: "sd-turbo", size: "768x512", n: 3 }), ctx());
    expect(fake.requests[0]?.json).toMatchObject({ model: "sd-turbo", size: "768x512", n: 3 });
  });
});

describe("openai: edits", () => {
  test("a GPT image edit that names no size asks for auto (the input's shape)", async () => {
    const input = await testImage({ format: "png" });
    await provider().generate(
      req({ images: [{ bytes: input, mime: "image/png" }], sizeGiven: false }),
      ctx(),
    );
    expect(fake.field(fake.requests[0]!, "size")).toBe("auto");
  });

  test("one image goes as multipart `image` with an optional mask", async () => {
    const input = await testImage({ format: "png" });
    const mask = await testImage({ format: "png", color: "#000000" });
    await provider().generate(
      req({ images: [{ bytes: input, mime: "image/png" }], mask: { bytes: mask, mime: "image/png" }, n: 1 }),
      ctx(),
    );
    const sent = fake.requests[0];
    expect(sent?.path).toBe("/v1/images/edits");
    expect(sent?.headers.get("content-type")).toStartWith("multipart/form-data");
    const form = Object.fromEntries(sent?.form ?? []);
    expect(form).toMatchObject({
      model: "gpt-image-1",
      prompt: "a lighthouse at dusk",
      n: "1",
      size: "1024x1024",
    });
    expect(form.image).toMatchObject({ name: "image-0.png", type: "image/png", bytes: input });
    expect(form.mask).toMatchObject({ name: "mask.png", bytes: mask });
  });

  test("several images go as repeated `image[]`", async () => {
    const a = await testImage({ format: "png", color: "#ff0000" });
    const b = await testImage({ format: "jpeg", color: "#00ff00" });
    await provider().generate(
      req({
        images: [
          { bytes: a, mime: "image/png" },
          { bytes: b, mime: "image/jpeg" },
        ],
      }),
      ctx(),
    );
    const files = (fake.requests[0]?.form ?? []).filter(([k]) => k === "image[]").map(([, v]) => v);
    expect(files).toMatchObject([
      { name: "image-0.png", bytes: a },
      { name: "image-1.jpg", type: "image/jpeg", bytes: b },
    ]);
  });
});

describe("openai: failures", () => {
  test("429 rate_limit_exceeded honours retry-after-ms before retry-after", async () => {
    fake.rateLimited({ "retry-after-ms": "1200", "retry-after": "30" });
    await expectFailure(provider().generate(req(), ctx()), {
      kind: "rate_limited",
      code: "provider_rate_limited",
      retryAfterMs: 1200,
    });
  });

  test("429 with only OpenAI's x-ratelimit-reset-requests header waits that long", async () => {
    fake.rateLimited({ "x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "20s" });
    await expectFailure(provider().generate(req(), ctx()), {
      kind: "rate_limited",
      code: "provider_rate_limited",
      retryAfterMs: 20_000,
    });
  });

  test('429 whose message says "Please try again in 1m30s" waits that long', async () => {
    fake.script(
      json(
        {
          error: {
            message: "Rate limit reached for gpt-image-1. Please try again in 1m30s.",
            type: "requests",
            code: "rate_limit_exceeded",
          },
        },
        429,
      ),
    );
    await expectFailure(provider().generate(req(), ctx()), {
      kind: "rate_limited",
      code: "provider_rate_limited",
      retryAfterMs: 90_000,
    });
  });

  test("429 without a hint is retryable", async () => {
    fake.rateLimited();
    await expectFailure(provider().generate(req(), ctx()), {
      kind: "rate_limited",
      code: "provider_rate_limited",
      retryable: true,
    });
  });

  test("429 insufficient_quota is not retried", async () => {
    fake.insufficientQuota();
    await expectFailure(provider().generate(req(), ctx()), {
      kind: "quota",
      code: "provider_quota",
      retryable: false,
      refundable: true,
    });
  });

  test("5xx then success: the first call is retryable, the next one works", async () => {
    fake.serverError(502);
    await expectFailure(provider().generate(req(), ctx()), {
      kind: "transient",
      code: "provider_unavailable",
    });
    expect(await provider().generate(req(), ctx())).toHaveLength(1);
  });

  test.each(["moderation_blocked", "content_policy_violation"] as const)(
    "400 %s → content_policy",
    async (code) => {
      fake.contentPolicy(code);
      const err = await expectFailure(provider().generate(req(), ctx()), {
        kind: "content_policy",
        code: "content_policy",
        retryable: false,
        refundable: false,
      });
      expect(err.message).toContain("safety system");
    },
  );

  test("a 400 whose only tell is the safety-system message is still content_policy", async () => {
    fake.script(
      json(
        {
          error: {
            message: "Your request was rejected as a result of our safety system.",
            type: "invalid_request_error",
            code: null,
          },
        },
        400,
      ),
    );
    await expectFailure(provider().generate(req(), ctx()), {
      kind: "content_policy",
      code: "content_policy",
      refundable: false,
    });
  });

  test("400 invalid request and 401 are unrecoverable and refundable", async () => {
    fake.invalidRequest().unauthorized();
    await expectFailure(provider().generate(req(), ctx()), {
      kind: "invalid_request",
      code: "provider_invalid_request",
      refundable: true,
    });
    await expectFailure(provider().generate(req(), ctx()), {
      kind: "auth",
      code: "provider_auth",
      refundable: true,
    });
  });

  test("a hanging server is cut by the request timeout", async () => {
    fake.hang();
    await expectFailure(provider(200).generate(req(), ctx()), {
      kind: "timeout",
      code: "provider_timeout",
    });
  });

  test("a hanging server is released by the job's abort", async () => {
    fake.hang();
    const ac = new AbortController();
    const reason = new Error("job cancelled");
    setTimeout(() => ac.abort(reason), 50);
    expect(
      await provider()
        .generate(req(), { signal: ac.signal })
        .catch((e: unknown) => e),
    ).toBe(reason);
  });
});
