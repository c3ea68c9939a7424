import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { createReplicateProvider, type ReplicateOptions } from "../../src/providers/replicate";
import { CancelledError } from "../../src/queue/errors";
import { HANG, json } from "../fakes/base";
import { ReplicateFake, replicateError } from "../fakes/replicate";
import { context, failureOf, request, until } from "./adapter-support";

let fake: ReplicateFake;

beforeAll(async () => {
  fake = await new ReplicateFake().start();
});
afterAll(() => fake.stop());
beforeEach(() => fake.reset());

const provider = (opts: Partial<ReplicateOptions> = {}) =>
  createReplicateProvider({
    apiToken: "r8_test",
    baseUrl: fake.baseUrl,
    pollIntervalMs: 5,
    waitSeconds: 5,
    ...opts,
  });

describe("replicate request shape", () => {
  test("owner/name models are created on the model endpoint with auth, Prefer: wait and the model's inputs", async () => {
    const images = await provider().generate(request({ size: "1344x768", n: 2, seed: 7 }), context());
    const create = fake.server.requests[0]!;
    expect(create.method).toBe("POST");
    expect(create.path).toBe("/v1/models/black-forest-labs/flux-schnell/predictions");
    expect(create.headers.get("authorization")).toBe("Bearer r8_test");
    expect(create.headers.get("prefer")).toBe("wait=5");
    expect(create.json).toEqual({
      input: {
        prompt: "a red fox in the snow",
        aspect_ratio: "16:9",
        num_outputs: 2,
        output_format: "png",
        seed: 7,
      },
    });
    expect(images).toHaveLength(2);
    expect(images[0]).toEqual({ bytes: fake.image, mime: "image/png", seed: 7 });
  });

  test("FLUX 1.1 pro: a custom aspect ratio with width/height, one prediction per image, seeds one apart", async () => {
    fake.behaviour.sync = true;
    const p = provider();
    const model = "black-forest-labs/flux-1.1-pro";
    const images = await p.generate(request({ model, size: "1440x800", n: 2, seed: 3 }), context());
    const inputs = fake.server.requests
      .filter((r) => r.method === "POST")
      .map((r) => (r.json as { input: Record<string, unknown> }).input);
    expect(inputs.sort((a, b) => Number(a.seed) - Number(b.seed))).toEqual([
      {
        prompt: "a red fox in the snow",
        aspect_ratio: "custom",
        width: 1440,
        height: 800,
        output_format: "png",
        seed: 3,
      },
      {
        prompt: "a red fox in the snow",
        aspect_ratio: "custom",
        width: 1440,
        height: 800,
        output_format: "png",
        seed: 4,
      },
    ]);
    expect(images).toHaveLength(2);
    expect(p.requestCost?.(request({ model, n: 3 }))).toBe(3);
  });

  test("FLUX Kontext edits send input_image; with no size asked it keeps the input's aspect ratio", async () => {
    fake.behaviour.sync = true;
    const img = { bytes: fake.image, mime: "image/png" };
    const model = "black-forest-labs/flux-kontext-pro";
    await provider().generate(request({ model, images: [img], sizeGiven: false }), context());
    await provider().generate(request({ model, images: [img], size: "1024x1024" }), context());
    const [kept, square] = fake.server.requests
      .filter((r) => r.method === "POST")
      .map((r) => (r.json as { input: Record<string, unknown> }).input);
    expect(kept).toEqual({
      prompt: "a red fox in the snow",
      aspect_ratio: "match_input_image",
      output_format: "png",
      input_image: `data:image/png;base64,${Buffer.from(fake.image).toString("base64")}`,
    });
    expect(square?.aspect_ratio).toBe("1:1");
    expect(square).not.toHaveProperty("num_outputs");
  });

  test("a model outside the table gets every input, as given", async () => {
    fake.behaviour.sync = true;
    await provider().generate(
      request({ model: "acme/painter", size: "640x480", n: 2, negativePrompt: "blurry" }),
      context(),
    );
    expect((fake.server.requests[0]!.json as { input: unknown }).input).toEqual({
      prompt: "a red fox in the snow",
      aspect_ratio: "4:3",
      width: 640,
      height: 480,
      num_outputs: 2,
      output_format: "png",
      negative_prompt: "blurry",
    });
  });

  test("owner/name:version and bare version ids go to /predictions with a version", async () => {
    await provider().generate(request({ model: "stability-ai/sdxl:39ed52f2a78e" }), context());
    const hash = "a".repeat(64);
    await provider().generate(request({ model: hash }), context());
    const creates = fake.server.requestsTo("/v1/predictions");
    expect(creates.map((r) => (r.json as { version: string }).version)).toEqual(["39ed52f2a78e", hash]);
  });

  test("input images become data URLs and params pass through", async () => {
    const img = { bytes: fake.image, mime: "image/png" };
    await provider().generate(
      request({ model: "black-forest-labs/flux-kontext-pro", images: [img], params: { go_fast: true } }),
      context(),
    );
    const input = (fake.server.requests[0]!.json as { input: Record<string, unknown> }).input;
    expect(String(input.input_image)).toStartWith("data:image/png;base64,");
    expect(input.go_fast).toBe(true);
  });

  test("a malformed model name is refused before any request", async () => {
    const err = await failureOf(provider().generate(request({ model: "not a model" }), context()));
    expect(err).toMatchObject({
      kind: "invalid_request",
      code: "provider_invalid_request",
      refundable: true,
    });
    expect(fake.server.requests).toHaveLength(0);
  });
});

describe("replicate prediction lifecycle", () => {
  test("Prefer: wait answers finished: no polling", async () => {
    fake.behaviour.sync = true;
    const images = await provider().generate(request(), context());
    expect(images).toHaveLength(1);
    expect(fake.server.requests.map((r) => `${r.method} ${r.path}`)).toEqual([
      "POST /v1/models/black-forest-labs/flux-schnell/predictions",
      "GET /files/pred1-0.png",
    ]);
  });

  test("waitSeconds 0 sends no Prefer header; cancelAfter sets Replicate's deadline header", async () => {
    await provider({ waitSeconds: 0, cancelAfter: "10m" }).generate(request(), context());
    expect(fake.server.requests[0]!.headers.get("prefer")).toBeNull();
    expect(fake.server.requests[0]!.headers.get("cancel-after")).toBe("10m");
  });

  test("starting → processing → succeeded is polled through urls.get, with progress and the logged seed", async () => {
    fake.behaviour.processingPolls = 3;
    fake.behaviour.outputAsString = true;
    const ctx = context();
    const images = await provider().generate(request(), ctx);
    expect(fake.server.requestsTo("/v1/predictions/pred1")).toHaveLength(4);
    expect(images).toEqual([{ bytes: fake.image, mime: "image/png", seed: 4242 }]);
    expect(ctx.progress.map((p) => p.pct)).toEqual([0, 25, 50, 75]);
    expect(ctx.progress[0]!.message).toBe("starting");
  });

  test("abort while processing cancels the prediction and rethrows the job's reason", async () => {
    fake.behaviour.stuck = true;
    const ac = new AbortController();
    const run = provider().generate(request(), context(ac.signal));
    await until(() => fake.server.requestsTo("/v1/predictions/pred1").length >= 2);
    const reason = new CancelledError();
    ac.abort(reason);
    expect(await failureOf(run)).toBe(reason);
    const cancels = fake.server.requestsTo("/v1/predictions/pred1/cancel");
    expect(cancels).toHaveLength(1);
    expect(cancels[0]!.method).toBe("POST");
    expect(cancels[0]!.headers.get("authorization")).toBe("Bearer r8_test");
    expect(fake.predictions.get("pred1")!.status).toBe("canceled");
  });

  test("a prediction failed for NSFW content is a content-policy rejection, not refundable", async () => {
    fake.behaviour.fail = "NSFW content detected. Try running it again, or try a different prompt.";
    const err = await failureOf(provider().generate(request(), context()));
    expect(err).toMatchObject({
      kind: "content_policy",
      code: "content_policy",
      retryable: false,
      refundable: false,
    });
  });

  test("any other failed prediction is retryable", async () => {
    fake.behaviour.fail = "CUDA error: device-side assert triggered";
    const err = await failureOf(provider().generate(request(), context()));
    expect(err).toMatchObject({ kind: "transient", code: "provider_failed", retryable: true });
  });

  test("a prediction canceled by someone else is retryable", async () => {
    fake.server.script(json({ id: "x", status: "canceled", output: null, error: null, urls: {} }, 201));
    const err = await failureOf(provider().generate(request(), context()));
    expect(err).toMatchObject({ code: "provider_failed", retryable: true });
  });
});

describe("replicate error classification", () => {
  test("429 with Retry-After → rate_limited with that wait", async () => {
    fake.server.script(replicateError.throttled(5), { method: "POST" });
    const err = await failureOf(provider().generate(request(), context()));
    expect(err).toMatchObject({
      kind: "rate_limited",
      code: "provider_rate_limited",
      retryAfterMs: 5000,
      refundable: true,
    });
  });

  test('the documented 429 body without Retry-After ("resets in ~30s") waits 30 s', async () => {
    fake.server.script(replicateError.throttledResets(30), { method: "POST" });
    const err = await failureOf(provider().generate(request(), context()));
    expect(err).toMatchObject({ kind: "rate_limited", code: "provider_rate_limited", retryAfterMs: 30_000 });
  });

  test('429 whose older detail says "available in N seconds", without the header, uses the detail', async () => {
    fake.server.script(json({ detail: "Request was throttled. Expected available in 3 seconds." }, 429));
    const err = await failureOf(provider().generate(request(), context()));
    expect(err).toMatchObject({ kind: "rate_limited", retryAfterMs: 3000 });
  });

  test("429 without any hint → rate_limited with no wait", async () => {
    fake.server.script(replicateError.throttledNoHeader());
    const err = await failureOf(provider().generate(request(), context()));
    expect(err).toMatchObject({ kind: "rate_limited", code: "provider_rate_limited", retryable: true });
  });

  test("5xx is retryable and the next attempt succeeds", async () => {
    fake.server.script(replicateError.serverError());
    const p = provider();
    const err = await failureOf(p.generate(request(), context()));
    expect(err).toMatchObject({ kind: "transient", code: "provider_unavailable" });
    expect(await p.generate(request(), context())).toHaveLength(1);
  });

  test.each([
    ["unauthorized", "provider_auth", "auth", replicateError.unauthorized()],
    ["payment required", "provider_quota", "quota", replicateError.paymentRequired()],
    ["unknown model", "provider_model_not_found", "not_found", replicateError.notFound()],
    ["invalid input", "provider_invalid_request", "invalid_request", replicateError.invalidInput()],
  ])("%s → %s, not retried (refundable)", async (_name, code, kind, reply) => {
    fake.server.script(reply);
    const err = await failureOf(provider().generate(request(), context()));
    expect(err).toMatchObject({ kind, code, retryable: false, refundable: true });
  });

  test("a hanging create is cut at the request timeout as a retryable timeout", async () => {
    fake.server.script(HANG);
    const started = Date.now();
    const err = await failureOf(provider({ timeoutMs: 150 }).generate(request(), context()));
    expect(err).toMatchObject({ kind: "timeout", code: "provider_timeout" });
    expect(Date.now() - started).toBeLessThan(1000);
  });

  test("a hanging create is released at once when the job's signal fires", async () => {
    fake.server.script(HANG);
    const err = await failureOf(provider().generate(request(), context(AbortSignal.timeout(150))));
    expect((err as Error).name).toBe("TimeoutError");
  });
});
