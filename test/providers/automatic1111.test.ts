import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { type Automatic1111Options, createAutomatic1111Provider } from "../../src/providers/automatic1111";
import { CancelledError } from "../../src/queue/errors";
import { Automatic1111Fake, a1111Error } from "../fakes/automatic1111";
import { HANG } from "../fakes/base";
import { context, failureOf, request, until } from "./adapter-support";

const auth = { username: "easel", password: "s3cret" };
let fake: Automatic1111Fake;

beforeAll(async () => {
  fake = await new Automatic1111Fake(auth).start();
});
afterAll(() => fake.stop());
beforeEach(() => fake.reset());

const basic = `Basic ${Buffer.from("easel:s3cret").toString("base64")}`;
const provider = (opts: Partial<Automatic1111Options> = {}) =>
  createAutomatic1111Provider({ url: fake.url, auth, progressIntervalMs: 5, ...opts });

describe("automatic1111 request shape", () => {
  test("txt2img gets the mapped body and Basic auth; images are decoded with their seeds", async () => {
    const images = await provider().generate(
      request({ size: "768x512", n: 2, seed: 42, negativePrompt: "blurry", params: { steps: 8 } }),
      context(),
    );
    const call = fake.server.requestsTo("/sdapi/v1/txt2img")[0]!;
    expect(call.headers.get("authorization")).toBe(basic);
    expect(call.json).toEqual({
      prompt: "a red fox in the snow",
      negative_prompt: "blurry",
      seed: 42,
      steps: 8,
      cfg_scale: 7,
      width: 768,
      height: 512,
      sampler_name: "Euler a",
      batch_size: 2,
      n_iter: 1,
    });
    expect(images).toEqual([
      { bytes: fake.image, mime: "image/png", seed: 42 },
      { bytes: fake.image, mime: "image/png", seed: 43 },
    ]);
  });

  test("input images switch to img2img with base64 init_images, mask and denoising strength", async () => {
    const img = { bytes: fake.image, mime: "image/png" };
    await provider().generate(
      request({ images: [img], mask: img, model: "dreamshaper_8.safetensors" }),
      context(),
    );
    const body = fake.server.requestsTo("/sdapi/v1/img2img")[0]!.json as Record<string, unknown>;
    const b64 = Buffer.from(fake.image).toString("base64");
    expect(body.init_images).toEqual([b64]);
    expect(body.mask).toBe(b64);
    expect(body.denoising_strength).toBe(0.75);
    expect(body.override_settings).toEqual({ sd_model_checkpoint: "dreamshaper_8.safetensors" });
  });

  test("a leading grid image is skipped using index_of_first_image", async () => {
    fake.behaviour.grid = true;
    const images = await provider().generate(request({ n: 2 }), context());
    expect(images.map((i) => i.seed)).toEqual([1000, 1001]);
  });
});

describe("automatic1111 blocking call", () => {
  test("progress is polled while the call blocks and reported as 0-100", async () => {
    fake.behaviour.progressSteps = 4;
    const ctx = context();
    const images = await provider().generate(request(), ctx);
    expect(images).toHaveLength(1);
    expect(ctx.progress).toEqual([
      { pct: 25, message: "generating" },
      { pct: 50, message: "generating" },
      { pct: 75, message: "generating" },
    ]);
    expect(fake.server.requestsTo("/sdapi/v1/progress")[0]!.headers.get("authorization")).toBe(basic);
  });

  test("abort while generating sends /sdapi/v1/interrupt and rethrows the job's reason", async () => {
    fake.behaviour.progressSteps = 1000;
    const ac = new AbortController();
    const ctx = context(ac.signal);
    const run = provider().generate(request(), ctx);
    await until(() => ctx.progress.length >= 2);
    const reason = new CancelledError();
    ac.abort(reason);
    expect(await failureOf(run)).toBe(reason);
    const interrupt = fake.server.requestsTo("/sdapi/v1/interrupt");
    expect(interrupt).toHaveLength(1);
    expect(interrupt[0]!.headers.get("authorization")).toBe(basic);
    expect(fake.interrupts).toBe(1);
  });
});

describe("automatic1111 error classification", () => {
  test("422 detail list → provider_invalid_request with the field message", async () => {
    fake.server.script(a1111Error.validation());
    const err = await failureOf(provider().generate(request(), context()));
    expect(err).toMatchObject({
      kind: "invalid_request",
      code: "provider_invalid_request",
      refundable: true,
    });
    expect((err as Error).message).toContain("not a valid integer");
  });

  test("wrong credentials → provider_auth", async () => {
    const err = await failureOf(
      provider({ auth: { username: "easel", password: "nope" } }).generate(request(), context()),
    );
    expect(err).toMatchObject({ code: "provider_auth", retryable: false });
  });

  test("CUDA out of memory (500) is retryable and the next attempt succeeds", async () => {
    fake.server.script(a1111Error.outOfMemory());
    const p = provider();
    const err = await failureOf(p.generate(request(), context()));
    expect(err).toMatchObject({ kind: "transient", code: "provider_unavailable" });
    expect(await p.generate(request(), context())).toHaveLength(1);
  });

  test("a server without --api (404) is not retried", async () => {
    fake.server.script(a1111Error.apiDisabled());
    expect(await failureOf(provider().generate(request(), context()))).toMatchObject({ retryable: false });
  });

  test("429 with Retry-After (a fronting proxy, e.g. a shared Forge) → rate_limited with that wait, then success", async () => {
    // A1111 itself never rate-limits; a box shared behind a proxy or gateway does, with the standard header.
    fake.server.script(a1111Error.busy(4), { path: "/sdapi/v1/txt2img" });
    const p = provider();
    const err = await failureOf(p.generate(request(), context()));
    expect(err).toMatchObject({
      kind: "rate_limited",
      code: "provider_rate_limited",
      retryAfterMs: 4000,
      retryable: true,
    });
    expect(await p.generate(request(), context())).toHaveLength(1);
    expect(fake.server.requestsTo("/sdapi/v1/txt2img")).toHaveLength(2);
  });

  test("a refused prompt (an extension's FastAPI 4xx) is not retried, and is no provider safety verdict", async () => {
    // A1111's API has no safety system (docs/providers.md): NSFW filters either black the image out (a normal 200,
    // indistinguishable from any other image) or, as prompt-filter extensions do, raise an HTTPException that
    // FastAPI answers as `{detail}`. That 4xx is the nearest honest equivalent of a safety rejection: final,
    // and not `content_policy` (which means a paid provider refused and keeps the credits).
    fake.server.script(a1111Error.promptRefused(), { path: "/sdapi/v1/txt2img" });
    const err = await failureOf(provider().generate(request(), context()));
    expect(err).toMatchObject({
      kind: "invalid_request",
      code: "provider_invalid_request",
      retryable: false,
      refundable: true,
    });
    expect((err as Error).message).toContain("NSFW");
  });

  test("a hanging call is cut at the request timeout as a retryable timeout", async () => {
    fake.server.script(HANG, { path: "/sdapi/v1/txt2img" });
    const err = await failureOf(provider({ timeoutMs: 150 }).generate(request(), context()));
    expect(err).toMatchObject({ kind: "timeout", code: "provider_timeout" });
  });
});
