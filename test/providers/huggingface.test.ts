import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { createHuggingFaceProvider } from "../../src/providers/huggingface";
import type { GenerateRequest } from "../../src/providers/types";
import { HANG, json } from "../fakes/base";
import { HuggingFaceFake } from "../fakes/huggingface";
import { expectFailure } from "./assert-failure";

let fake: HuggingFaceFake;
beforeAll(async () => {
  fake = await HuggingFaceFake.create();
});
afterAll(() => fake.stop());
beforeEach(() => {
  fake.reset();
  fake.responseMode = "bytes";
  fake.unknownModels.clear();
});

const ctx = () => ({ signal: new AbortController().signal });
const req = (over: Partial<GenerateRequest> = {}): GenerateRequest => ({
  prompt: "an astronaut riding a horse",
  size: "1024x768",
  n: 1,
  ...over,
});
const provider = (over: { timeoutMs?: number; waitForModel?: boolean } = {}) =>
  createHuggingFaceProvider({ token: "hf_test", baseUrl: fake.url, randomSeed: () => 1000, ...over });

describe("huggingface: requests and answers", () => {
  test("posts {inputs, parameters} to the model route with bearer auth; raw bytes back", async () => {
    const images = await provider().generate(
      req({ seed: 7, params: { num_inference_steps: 28, guidance_scale: 3.5 } }),
      ctx(),
    );
    const sent = fake.requests[0];
    expect(sent?.path).toBe("/hf-inference/models/black-forest-labs/FLUX.1-dev");
    expect(sent?.headers.get("authorization")).toBe("Bearer hf_test");
    expect(sent?.headers.get("x-wait-for-model")).toBeNull();
    expect(sent?.json).toEqual({
      inputs: "an astronaut riding a horse",
      parameters: {
        width: 1024,
        height: 768,
        seed: 7,
        num_inference_steps: 28,
        guidance_scale: 3.5,
      },
    });
    expect(images).toEqual([{ bytes: fake.image, mime: "image/jpeg", seed: 7 }]);
  });

  test("n images → n calls with consecutive seeds; cost n", async () => {
    const p = provider({ waitForModel: true });
    const images = await p.generate(req({ n: 3, model: "stabilityai/stable-diffusion-xl-base-1.0" }), ctx());
    expect(images.map((i) => i.seed)).toEqual([1000, 1001, 1002]);
    const seeds = fake.requests.map((r) => (r.json as { parameters: { seed: number } }).parameters.seed);
    expect(seeds.sort()).toEqual([1000, 1001, 1002]);
    expect(
      fake.requests.every((r) => r.path === "/hf-inference/models/stabilityai/stable-diffusion-xl-base-1.0"),
    ).toBe(true);
    expect(fake.requests[0]?.headers.get("x-wait-for-model")).toBe("true");
    expect(p.requestCost?.(req({ n: 3 }))).toBe(3);
  });

  test("negative prompts go to SDXL, never to FLUX (which would ignore or draw them)", async () => {
    const sdxl = "stabilityai/stable-diffusion-xl-base-1.0";
    await provider().generate(req({ model: sdxl, negativePrompt: "blurry" }), ctx());
    await provider().generate(req({ negativePrompt: "blurry" }), ctx());
    const params = fake.requests.map((r) => (r.json as { parameters: Record<string, unknown> }).parameters);
    expect(params[0]?.negative_prompt).toBe("blurry");
    expect(params[1]).not.toHaveProperty("negative_prompt");
  });

  test("tolerates JSON {data:[{b64_json}]} and {output:[url]}", async () => {
    fake.responseMode = "b64json";
    expect((await provider().generate(req(), ctx()))[0]?.bytes).toEqual(fake.image);
    fake.responseMode = "url";
    const [img] = await provider().generate(req(), ctx());
    expect(img).toMatchObject({ bytes: fake.image, mime: "image/jpeg" });
    expect(fake.requests.at(-1)?.path).toBe("/files/out.jpg");
  });

  test("edits are refused up front", async () => {
    await expectFailure(
      provider().generate(req({ images: [{ bytes: fake.image, mime: "image/jpeg" }] }), ctx()),
      { kind: "unsupported", code: "provider_unsupported" },
    );
    expect(fake.requests).toHaveLength(0);
  });
});

describe("huggingface: failures", () => {
  test("503 model loading → transient, waiting estimated_time (capped)", async () => {
    fake.loading(20);
    await expectFailure(provider().generate(req(), ctx()), {
      kind: "transient",
      code: "provider_unavailable",
      retryAfterMs: 20_000,
    });
    fake.loading(100_000);
    await expectFailure(provider().generate(req(), ctx()), {
      kind: "transient",
      code: "provider_unavailable",
      retryAfterMs: 300_000,
    });
  });

  test("429 with Retry-After, then success", async () => {
    fake.rateLimited({ "retry-after": "5" });
    await expectFailure(provider().generate(req(), ctx()), {
      kind: "rate_limited",
      code: "provider_rate_limited",
      retryAfterMs: 5000,
    });
    expect(await provider().generate(req(), ctx())).toHaveLength(1);
  });

  test("402 out of credits → provider_quota", async () => {
    fake.outOfCredits();
    await expectFailure(provider().generate(req(), ctx()), {
      kind: "quota",
      code: "provider_quota",
      retryable: false,
      refundable: true,
    });
  });

  test("400/422 bad parameters, 401, 404 unknown model", async () => {
    fake.badParameters(422).badParameters(400).unauthorized();
    for (const [kind, code] of [
      ["invalid_request", "provider_invalid_request"],
      ["invalid_request", "provider_invalid_request"],
      ["auth", "provider_auth"],
    ] as const) {
      await expectFailure(provider().generate(req(), ctx()), {
        kind,
        code,
        refundable: true,
      });
    }
    fake.unknownModels.add("nobody/nothing");
    await expectFailure(provider().generate(req({ model: "nobody/nothing" }), ctx()), {
      kind: "not_found",
      code: "provider_model_not_found",
    });
  });

  test("5xx is retryable and the next attempt succeeds", async () => {
    fake.serverError(500);
    await expectFailure(provider().generate(req(), ctx()), {
      kind: "transient",
      code: "provider_unavailable",
    });
    expect(await provider().generate(req(), ctx())).toEqual([
      { bytes: fake.image, mime: "image/jpeg", seed: 1000 },
    ]);
  });

  test("a safety refusal in HF's {error} text → content_policy, not retried, not refundable", async () => {
    fake.nsfwRefused(400).nsfwRefused(422);
    for (let i = 0; i < 2; i++) {
      const err = await expectFailure(provider().generate(req(), ctx()), {
        kind: "content_policy",
        code: "content_policy",
        retryable: false,
        refundable: false,
      });
      expect(err.message).toContain("NSFW content detected");
    }
    expect(fake.requests).toHaveLength(2);
  });

  test("a validation error that merely names the safety checker stays an invalid request", async () => {
    fake.script(json({ error: "Input validation error: `enable_safety_checker` must be a boolean" }, 422));
    await expectFailure(provider().generate(req(), ctx()), {
      kind: "invalid_request",
      code: "provider_invalid_request",
      refundable: true,
    });
  });

  test("one failing call of n aborts the others", async () => {
    // The first request hangs; the second fails at once and must cut the hanging one short.
    fake.script(HANG).script(json({ error: "bad" }, 422));
    const t0 = performance.now();
    await expectFailure(provider({ timeoutMs: 10_000 }).generate(req({ n: 2 }), ctx()), {
      kind: "invalid_request",
      code: "provider_invalid_request",
    });
    expect(performance.now() - t0).toBeLessThan(2000);
  });

  test("a hang is cut by the request timeout", async () => {
    fake.hang();
    await expectFailure(provider({ timeoutMs: 200 }).generate(req(), ctx()), {
      kind: "timeout",
      code: "provider_timeout",
    });
  });

  test("a non-image, non-JSON answer → provider_bad_response", async () => {
    fake.script(new Response("<html>oops</html>", { headers: { "content-type": "text/html" } }));
    await expectFailure(provider().generate(req(), ctx()), {
      kind: "bad_response",
      code: "provider_bad_response",
    });
  });
});
