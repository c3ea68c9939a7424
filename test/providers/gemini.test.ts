import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { createGeminiProvider } from "../../src/providers/gemini";
import type { GenerateRequest } from "../../src/providers/types";
import { testImage } from "../fakes/base";
import { GeminiFake } from "../fakes/gemini";
import { expectFailure } from "./assert-failure";

let fake: GeminiFake;
beforeAll(async () => {
  fake = await GeminiFake.create();
});
afterAll(() => fake.stop());
beforeEach(() => {
  fake.reset();
  fake.snakeCase = false;
});

const ctx = () => ({ signal: new AbortController().signal });
const req = (over: Partial<GenerateRequest> = {}): GenerateRequest => ({
  prompt: "a teapot shaped like a whale",
  size: "1536x1024",
  n: 1,
  ...over,
});
type SentBody = { generationConfig?: { imageConfig?: unknown }; parameters?: { sampleCount?: number } };
const sentJson = (i: number) => (fake.requests[i]?.json ?? {}) as SentBody;
const provider = (timeoutMs?: number) =>
  createGeminiProvider({ apiKey: "AIza-test", baseUrl: fake.baseUrl, ...(timeoutMs && { timeoutMs }) });

describe("gemini: generateContent", () => {
  test("sends contents + imageConfig with x-goog-api-key and reads inlineData", async () => {
    const input = await testImage({ format: "jpeg" });
    const images = await provider().generate(
      req({ images: [{ bytes: input, mime: "image/jpeg" }], seed: 3 }),
      ctx(),
    );
    const sent = fake.requests[0];
    expect(sent?.path).toBe("/v1beta/models/gemini-2.5-flash-image:generateContent");
    expect(sent?.headers.get("x-goog-api-key")).toBe("AIza-test");
    expect(sent?.headers.get("authorization")).toBeNull();
    expect(sent?.json).toEqual({
      contents: [
        {
          role: "user",
          parts: [
            { text: "a teapot shaped like a whale" },
            { inlineData: { mimeType: "image/jpeg", data: Buffer.from(input).toString("base64") } },
          ],
        },
      ],
      generationConfig: {
        responseModalities: ["TEXT", "IMAGE"],
        imageConfig: { aspectRatio: "3:2" },
        seed: 3,
      },
    });
    expect(images).toEqual([{ bytes: fake.image, mime: "image/png", seed: 3 }]);
  });

  test("an edit that names no size sends no aspectRatio, so the output keeps the input's shape", async () => {
    const input = await testImage({ format: "png" });
    await provider().generate(
      req({ images: [{ bytes: input, mime: "image/png" }], sizeGiven: false }),
      ctx(),
    );
    const body = fake.requests[0]?.json as { generationConfig: { imageConfig: Record<string, unknown> } };
    expect(body.generationConfig.imageConfig).toEqual({});
  });

  test("accepts snake_case inline_data; n images → n calls", async () => {
    fake.snakeCase = true;
    const p = provider();
    const images = await p.generate(req({ n: 2, size: "1080x1920" }), ctx());
    expect(images).toHaveLength(2);
    expect(images[0]?.bytes).toEqual(fake.image);
    expect(fake.requests).toHaveLength(2);
    expect(sentJson(0).generationConfig?.imageConfig).toEqual({ aspectRatio: "9:16" });
    expect(p.requestCost?.(req({ n: 2 }))).toBe(2);
  });

  test("gemini-3 models also get an imageSize class", async () => {
    await provider().generate(req({ model: "gemini-3-pro-image-preview", size: "2048x2048" }), ctx());
    expect(sentJson(0).generationConfig?.imageConfig).toEqual({ aspectRatio: "1:1", imageSize: "2K" });
  });

  test.each(["IMAGE_SAFETY", "PROHIBITED_CONTENT", "SAFETY"])(
    "HTTP 200 with finishReason %s → content_policy",
    async (reason) => {
      fake.finished(reason);
      await expectFailure(provider().generate(req(), ctx()), {
        kind: "content_policy",
        code: "content_policy",
        retryable: false,
        refundable: false,
      });
    },
  );

  test("promptFeedback.blockReason with no candidates → content_policy", async () => {
    fake.blockedPrompt("PROHIBITED_CONTENT");
    const err = await expectFailure(provider().generate(req(), ctx()), {
      kind: "content_policy",
      code: "content_policy",
      refundable: false,
    });
    expect(err.details).toMatchObject({ blockReason: "PROHIBITED_CONTENT" });
  });

  test("NO_IMAGE, or a text-only STOP, is retryable provider_no_image", async () => {
    fake.finished("NO_IMAGE").finished("STOP");
    for (let i = 0; i < 2; i++) {
      await expectFailure(provider().generate(req(), ctx()), {
        kind: "transient",
        code: "provider_no_image",
        refundable: true,
      });
    }
  });
});

describe("gemini: imagen :predict", () => {
  test("sends instances/parameters and splits n over calls of 4", async () => {
    const p = provider();
    const images = await p.generate(
      req({ model: "imagen-4.0-generate-001", n: 5, size: "1024x1024" }),
      ctx(),
    );
    expect(images).toHaveLength(5);
    expect(fake.requests.map((r) => r.path)).toEqual([
      "/v1beta/models/imagen-4.0-generate-001:predict",
      "/v1beta/models/imagen-4.0-generate-001:predict",
    ]);
    expect(fake.requests[0]?.json).toEqual({
      instances: [{ prompt: "a teapot shaped like a whale" }],
      parameters: { sampleCount: 4, aspectRatio: "1:1", includeRaiReason: true },
    });
    expect(sentJson(1).parameters?.sampleCount).toBe(1);
    expect(p.requestCost?.(req({ model: "imagen-4.0-generate-001", n: 5 }))).toBe(2);
  });

  test("all images filtered (raiFilteredReason) → content_policy", async () => {
    fake.imagenFiltered();
    await expectFailure(provider().generate(req({ model: "imagen-3.0-generate-002" }), ctx()), {
      kind: "content_policy",
      code: "content_policy",
      refundable: false,
    });
  });

  test("imagen refuses input images before calling", async () => {
    await expectFailure(
      provider().generate(
        req({ model: "imagen-4.0-generate-001", images: [{ bytes: fake.image, mime: "image/png" }] }),
        ctx(),
      ),
      { kind: "unsupported", code: "provider_unsupported" },
    );
    expect(fake.requests).toHaveLength(0);
  });
});

describe("gemini: errors", () => {
  test("429 RESOURCE_EXHAUSTED with RetryInfo.retryDelay → rate_limited with that wait", async () => {
    fake.resourceExhausted("12s");
    await expectFailure(provider().generate(req(), ctx()), {
      kind: "rate_limited",
      code: "provider_rate_limited",
      retryAfterMs: 12_000,
    });
  });

  test("429 without RetryInfo is retryable; 503 then success", async () => {
    fake.resourceExhausted().unavailable();
    await expectFailure(provider().generate(req(), ctx()), {
      kind: "rate_limited",
      code: "provider_rate_limited",
    });
    await expectFailure(provider().generate(req(), ctx()), {
      kind: "transient",
      code: "provider_unavailable",
    });
    expect(await provider().generate(req(), ctx())).toHaveLength(1);
  });

  test("quota that will not refill soon (per-day, or a limit of 0) → provider_quota, not retried", async () => {
    fake.quotaExceeded("daily").quotaExceeded("zero");
    for (const model of ["gemini-2.5-flash-image", "imagen-4.0-generate-001"]) {
      const err = await expectFailure(provider().generate(req({ model }), ctx()), {
        kind: "quota",
        code: "provider_quota",
        retryable: false,
        refundable: true,
      });
      expect(err.message).toContain("exceeded your current quota");
    }
    expect(fake.requests).toHaveLength(2);
  });

  test("a per-minute RESOURCE_EXHAUSTED stays a rate limit, retried after its RetryInfo; then success", async () => {
    fake.perMinuteLimit();
    await expectFailure(provider().generate(req(), ctx()), {
      kind: "rate_limited",
      code: "provider_rate_limited",
      retryAfterMs: 8000,
    });
    expect(await provider().generate(req(), ctx())).toHaveLength(1);
  });

  test("400 INVALID_ARGUMENT → invalid request; API_KEY_INVALID and 403 → auth", async () => {
    fake.invalidArgument().invalidApiKey().permissionDenied();
    for (const [kind, code] of [
      ["invalid_request", "provider_invalid_request"],
      ["auth", "provider_auth"],
      ["auth", "provider_auth"],
    ] as const) {
      await expectFailure(provider().generate(req(), ctx()), {
        kind,
        code,
        refundable: true,
      });
    }
  });

  test("a hang is cut by the request timeout", async () => {
    fake.hang();
    await expectFailure(provider(200).generate(req(), ctx()), {
      kind: "timeout",
      code: "provider_timeout",
    });
  });
});
