import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { createFalProvider, type FalOptions } from "../../src/providers/fal";
import { CancelledError } from "../../src/queue/errors";
import { HANG } from "../fakes/base";
import { FalFake, falError } from "../fakes/fal";
import { context, failureOf, request, until } from "./adapter-support";

let fake: FalFake;

beforeAll(async () => {
  fake = await new FalFake().start();
});
afterAll(() => fake.stop());
beforeEach(() => fake.reset());

const provider = (opts: Partial<FalOptions> = {}) =>
  createFalProvider({ key: "fal-key-id:secret", queueBaseUrl: fake.url, pollIntervalMs: 5, ...opts });

describe("fal request shape", () => {
  test("submits the model input to the model path with Key auth (no negative prompt: FLUX takes none)", async () => {
    await provider().generate(
      request({ size: "1024x768", n: 2, seed: 11, negativePrompt: "text" }),
      context(),
    );
    const submit = fake.server.requests[0]!;
    expect(submit.method).toBe("POST");
    expect(submit.path).toBe("/fal-ai/flux/schnell");
    expect(submit.headers.get("authorization")).toBe("Key fal-key-id:secret");
    expect(submit.json).toEqual({
      prompt: "a red fox in the snow",
      image_size: "landscape_4_3",
      num_images: 2,
      enable_safety_checker: true,
      output_format: "png",
      seed: 11,
    });
    for (const r of fake.server.requests.slice(1)) {
      if (!r.path.startsWith("/files/")) expect(r.headers.get("authorization")).toBe("Key fal-key-id:secret");
    }
  });

  test("sizes without a fal name go as width/height; params pass through", async () => {
    await provider().generate(request({ size: "1200x800", params: { guidance_scale: 3 } }), context());
    const body = fake.server.requests[0]!.json as Record<string, unknown>;
    expect(body.image_size).toEqual({ width: 1200, height: 800 });
    expect(body.guidance_scale).toBe(3);
  });

  test("FLUX Kontext edits: image_url as a data URL and an aspect_ratio instead of image_size", async () => {
    const img = { bytes: fake.image, mime: "image/jpeg" };
    const images = await provider().generate(
      request({ size: "1536x1024", model: "fal-ai/flux-pro/kontext", images: [img], prompt: "add a hat" }),
      context(),
    );
    const body = fake.server.requests[0]!.json as Record<string, unknown>;
    expect(fake.server.requests[0]!.path).toBe("/fal-ai/flux-pro/kontext");
    expect(body.image_url).toBe(`data:image/jpeg;base64,${Buffer.from(fake.image).toString("base64")}`);
    expect(body.aspect_ratio).toBe("3:2");
    expect(body.image_size).toBeUndefined();
    expect(images).toHaveLength(1);
  });

  test("a Kontext edit that names no size sends no aspect_ratio, so the output keeps the input's shape", async () => {
    const img = { bytes: fake.image, mime: "image/jpeg" };
    await provider().generate(
      request({ model: "fal-ai/flux-pro/kontext", images: [img], sizeGiven: false }),
      context(),
    );
    const body = fake.server.requests[0]!.json as Record<string, unknown>;
    expect(body.aspect_ratio).toBeUndefined();
    expect(body.image_size).toBeUndefined();
  });
});

describe("fal queue lifecycle", () => {
  test("IN_QUEUE → IN_PROGRESS → COMPLETED, result fetched from response_url, images downloaded", async () => {
    const ctx = context();
    const images = await provider().generate(request({ n: 2 }), ctx);
    const paths = fake.server.requests.map((r) => `${r.method} ${r.path}`);
    expect(paths.slice(0, 7)).toEqual([
      "POST /fal-ai/flux/schnell",
      ...Array(5).fill("GET /fal-ai/flux/requests/req-1/status"),
      "GET /fal-ai/flux/requests/req-1",
    ]);
    // Downloads run in parallel, so their order is not fixed.
    expect(paths.slice(7).sort()).toEqual(["GET /files/req-1-0.jpg", "GET /files/req-1-1.jpg"]);
    expect(fake.server.requests[1]!.query.get("logs")).toBe("1");
    expect(images).toEqual([
      { bytes: fake.image, mime: "image/jpeg", seed: 987654 },
      { bytes: fake.image, mime: "image/jpeg", seed: 987654 },
    ]);
    expect(ctx.progress).toEqual([
      { pct: 0, message: "queued (position 1)" },
      { pct: 0, message: "queued (position 0)" },
      { pct: 33, message: "processing" },
      { pct: 67, message: "processing" },
    ]);
  });

  test("abort while in progress PUTs cancel_url and rethrows the job's reason", async () => {
    fake.behaviour.stuck = true;
    const ac = new AbortController();
    const run = provider().generate(request(), context(ac.signal));
    await until(() => fake.server.requestsTo(/\/status$/).length >= 2);
    const reason = new CancelledError();
    ac.abort(reason);
    expect(await failureOf(run)).toBe(reason);
    const cancel = fake.server.requestsTo("/fal-ai/flux/requests/req-1/cancel");
    expect(cancel).toHaveLength(1);
    expect(cancel[0]!.method).toBe("PUT");
    expect(fake.queue.get("req-1")!.cancelled).toBe(true);
  });

  test("flagged images are dropped; some left is a smaller result", async () => {
    fake.behaviour.nsfw = [true, false];
    const images = await provider().generate(request({ n: 2 }), context());
    expect(images).toHaveLength(1);
    expect(fake.server.requestsTo(/^\/files\//).map((r) => r.path)).toEqual(["/files/req-1-1.jpg"]);
  });

  test("every image flagged → content_policy, not refundable", async () => {
    fake.behaviour.nsfw = [true, true];
    const err = await failureOf(provider().generate(request({ n: 2 }), context()));
    expect(err).toMatchObject({
      kind: "content_policy",
      code: "content_policy",
      retryable: false,
      refundable: false,
    });
  });

  test("a content_policy_violation detail from the result → content_policy", async () => {
    fake.behaviour.resultError = falError.contentPolicy;
    const err = await failureOf(provider().generate(request(), context()));
    expect(err).toMatchObject({ code: "content_policy", retryable: false, refundable: false });
  });
});

describe("fal error classification", () => {
  test("422 validation detail → provider_invalid_request with fal's message", async () => {
    fake.server.script(falError.validation(), { method: "POST" });
    const err = await failureOf(provider().generate(request({ n: 9 }), context()));
    expect(err).toMatchObject({
      kind: "invalid_request",
      code: "provider_invalid_request",
      refundable: true,
    });
    expect((err as Error).message).toContain("less than or equal to 4");
  });

  test("429 with Retry-After → rate_limited with that wait", async () => {
    fake.server.script(falError.rateLimited(7));
    const err = await failureOf(provider().generate(request(), context()));
    expect(err).toMatchObject({ kind: "rate_limited", retryAfterMs: 7000, code: "provider_rate_limited" });
  });

  test("X-Fal-Error-Type runner failure is retryable and the next attempt succeeds", async () => {
    fake.server.script(falError.runnerFailure());
    const p = provider();
    const err = await failureOf(p.generate(request(), context()));
    expect(err).toMatchObject({ kind: "transient" });
    expect(err).toMatchObject({
      code: "provider_unavailable",
      details: { errorType: "runner_server_error" },
    });
    expect(await p.generate(request(), context())).toHaveLength(1);
  });

  test("a request_timeout on the status poll is retryable", async () => {
    fake.server.script(falError.requestTimeout(), { path: /\/status$/ });
    const err = await failureOf(provider().generate(request(), context()));
    expect(err).toMatchObject({ code: "provider_unavailable", retryable: true });
  });

  test("401 → provider_auth; exhausted balance 403 → provider_quota", async () => {
    fake.server.script(falError.unauthorized());
    expect(await failureOf(provider().generate(request(), context()))).toMatchObject({
      code: "provider_auth",
      retryable: false,
    });
    fake.server.script(falError.exhaustedBalance());
    expect(await failureOf(provider().generate(request(), context()))).toMatchObject({
      code: "provider_quota",
      retryable: false,
      refundable: true,
    });
  });

  test("a hanging submit is cut at the request timeout as a retryable timeout", async () => {
    fake.server.script(HANG);
    const err = await failureOf(provider({ timeoutMs: 150 }).generate(request(), context()));
    expect(err).toMatchObject({ kind: "timeout", code: "provider_timeout" });
  });
});
