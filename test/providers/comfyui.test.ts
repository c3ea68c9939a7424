import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { type ComfyuiOptions, createComfyuiProvider } from "../../src/providers/comfyui";
import { ProviderError } from "../../src/providers/errors";
import { CancelledError } from "../../src/queue/errors";
import { HANG, json } from "../fakes/base";
import { ComfyuiFake } from "../fakes/comfyui";
import { context, failureOf, request, until } from "./adapter-support";

let fake: ComfyuiFake;

beforeAll(async () => {
  fake = await new ComfyuiFake().start();
});
afterAll(() => fake.stop());
beforeEach(() => fake.reset());

const provider = (opts: Partial<ComfyuiOptions> = {}) =>
  createComfyuiProvider({ url: fake.url, pollIntervalMs: 5, ...opts });

type Graph = Record<string, { class_type: string; inputs: Record<string, unknown> }>;
const submitted = () => fake.server.requestsTo("/prompt")[0]!.json as { prompt: Graph; client_id: string };
const historyPolls = () => fake.server.requestsTo(/^\/history\//).length;

describe("comfyui workflow and request shape", () => {
  test("fills the default txt2img graph and fetches every saved image via /view", async () => {
    const images = await provider().generate(
      request({ size: "832x1216", n: 2, seed: 123, negativePrompt: "watermark", params: { steps: 6 } }),
      context(),
    );
    const { prompt: graph, client_id } = submitted();
    expect(graph["4"]).toEqual({
      class_type: "CheckpointLoaderSimple",
      inputs: { ckpt_name: "sd_xl_base_1.0.safetensors" },
    });
    expect(graph["5"]!.inputs).toEqual({ width: 832, height: 1216, batch_size: 2 });
    expect(graph["6"]!.inputs.text).toBe("a red fox in the snow");
    expect(graph["7"]!.inputs.text).toBe("watermark");
    expect(graph["3"]!.inputs).toMatchObject({
      seed: 123,
      steps: 6,
      cfg: 7,
      sampler_name: "euler",
      scheduler: "normal",
    });
    // The socket and the prompt share one client id, so progress frames reach this job.
    expect(fake.socketClients).toEqual([client_id]);
    const views = fake.server.requestsTo("/view");
    expect(views.map((v) => v.query.get("type"))).toEqual(["output", "output"]);
    expect(views.map((v) => v.query.get("filename")).sort()).toEqual([
      "easel_00000_.png",
      "easel_00001_.png",
    ]);
    expect(images).toEqual([
      { bytes: fake.image, mime: "image/png", seed: 123 },
      { bytes: fake.image, mime: "image/png", seed: 123 },
    ]);
  });

  test("without a seed a random one is sent and reported", async () => {
    const [image] = await provider().generate(request(), context());
    const seed = submitted().prompt["3"]!.inputs.seed;
    expect(typeof seed).toBe("number");
    expect(image!.seed).toBe(seed as number);
  });

  test("a user workflow (JSON text) gets its placeholders filled, typed when whole", async () => {
    const workflow = JSON.stringify({
      "1": { class_type: "CheckpointLoaderSimple", inputs: { ckpt_name: "{{model}}" } },
      "2": {
        class_type: "CLIPTextEncode",
        inputs: { text: "analog photo of {{prompt}}, 35mm", clip: ["1", 1] },
      },
      "3": {
        class_type: "EmptyLatentImage",
        inputs: { width: "{{width}}", height: "{{height}}", batch_size: 1 },
      },
      "4": { class_type: "KSampler", inputs: { seed: "{{seed}}", steps: 4, latent_image: ["3", 0] } },
      "9": { class_type: "SaveImage", inputs: { filename_prefix: "custom", images: ["4", 0] } },
    });
    const p = provider({ workflow, checkpoint: "flux1-schnell-fp8.safetensors" });
    expect(p.info.defaultModel).toBe("flux1-schnell-fp8.safetensors");
    const [image] = await p.generate(request({ size: "512x768", seed: 9 }), context());
    expect(image!.seed).toBe(9);
    const graph = submitted().prompt;
    expect(graph["1"]!.inputs.ckpt_name).toBe("flux1-schnell-fp8.safetensors");
    expect(graph["2"]!.inputs.text).toBe("analog photo of a red fox in the snow, 35mm");
    expect(graph["3"]!.inputs).toEqual({ width: 512, height: 768, batch_size: 1 });
    expect(graph["4"]!.inputs.seed).toBe(9);
  });

  test("a UI-format workflow is refused when the provider is built", () => {
    expect(() => provider({ workflow: { nodes: [], links: [] } as never })).toThrow(ProviderError);
  });

  test("img2img: the input is uploaded, the edit graph loads it by name, encodes it and redraws it", async () => {
    const img = { bytes: fake.image, mime: "image/png" };
    const images = await provider().generate(
      request({ images: [img], n: 2, seed: 9, params: { denoise: 0.6 } }),
      context(),
    );
    const upload = fake.server.requestsTo("/upload/image")[0]!;
    expect(upload.method).toBe("POST");
    const form = Object.fromEntries(upload.form ?? []);
    expect(form.type).toBe("input");
    expect(form.image).toMatchObject({ type: "image/png", bytes: fake.image });
    const name = (form.image as { name: string }).name;
    expect(fake.uploads.has(name)).toBe(true);
    const graph = submitted().prompt;
    const load = Object.values(graph).find((n) => n.class_type === "LoadImage")!;
    expect(load.inputs.image).toBe(name);
    const sampler = Object.values(graph).find((n) => n.class_type === "KSampler")!;
    expect(sampler.inputs).toMatchObject({ seed: 9, denoise: 0.6 });
    expect(Object.values(graph).some((n) => n.class_type === "VAEEncode")).toBe(true);
    expect(Object.values(graph).some((n) => n.class_type === "EmptyLatentImage")).toBe(false);
    expect(images).toHaveLength(2);
    expect(images[0]).toMatchObject({ mime: "image/png", seed: 9 });
  });

  test("a user edit workflow (JSON text) gets {{image}} and {{denoise}} filled", async () => {
    const editWorkflow = JSON.stringify({
      "1": { class_type: "CheckpointLoaderSimple", inputs: { ckpt_name: "{{model}}" } },
      "2": { class_type: "LoadImage", inputs: { image: "{{image}}" } },
      "3": {
        class_type: "KSampler",
        inputs: { seed: "{{seed}}", denoise: "{{denoise}}", steps: "{{steps}}" },
      },
      "9": { class_type: "SaveImage", inputs: { filename_prefix: "mine", images: ["3", 0] } },
    });
    const img = { bytes: fake.image, mime: "image/png" };
    await provider({ editWorkflow }).generate(request({ images: [img], seed: 2 }), context());
    const graph = submitted().prompt;
    expect(graph["2"]!.inputs.image).toBe([...fake.uploads.keys()][0]!);
    expect(graph["3"]!.inputs).toEqual({ seed: 2, denoise: 0.75, steps: 20 });
  });

  test("a mask is refused before any request (the built-in edit graph does not inpaint)", async () => {
    const img = { bytes: fake.image, mime: "image/png" };
    const err = await failureOf(provider().generate(request({ images: [img], mask: img }), context()));
    expect(err).toMatchObject({ code: "provider_invalid_request" });
    expect(fake.server.requests).toHaveLength(0);
  });
});

describe("comfyui progress and completion", () => {
  test("progress frames become 0-100 and an end frame wakes the loop before its poll interval", async () => {
    // The first poll sees no entry whatever the timing, so only the socket's end frame can finish the job early.
    fake.server.script(json({}), { path: /^\/history\// });
    const ctx = context();
    const started = Date.now();
    const images = await provider({ pollIntervalMs: 10_000 }).generate(request(), ctx);
    expect(images).toHaveLength(1);
    expect(Date.now() - started).toBeLessThan(3000);
    expect(historyPolls()).toBe(2);
    expect(ctx.progress).toEqual([
      { pct: 25, message: "sampling" },
      { pct: 50, message: "sampling" },
      { pct: 75, message: "sampling" },
      { pct: 100, message: "sampling" },
    ]);
  });

  test("without the socket, polling /history alone completes the job", async () => {
    fake.behaviour.socket = false;
    fake.behaviour.tickMs = 10;
    const ctx = context();
    const images = await provider().generate(request(), ctx);
    expect(images).toHaveLength(1);
    expect(ctx.progress).toEqual([]);
    expect(historyPolls()).toBeGreaterThan(1);
  });

  test("an execution_error in history is a retryable failure naming the exception", async () => {
    fake.behaviour.fail = { type: "torch.OutOfMemoryError", message: "CUDA out of memory" };
    const err = await failureOf(provider().generate(request(), context()));
    expect(err).toMatchObject({ kind: "transient", code: "provider_failed" });
    expect((err as Error).message).toContain("CUDA out of memory");
  });

  test("a run interrupted by someone else is retryable", async () => {
    fake.behaviour.stuck = true;
    const run = provider().generate(request(), context());
    await until(() => fake.promptIds.length === 1 && historyPolls() >= 1);
    fake.interruptRunning();
    expect(await failureOf(run)).toMatchObject({ code: "provider_interrupted", retryable: true });
  });
});

describe("comfyui cancellation", () => {
  test("abort while our prompt runs interrupts it (checked against /queue first)", async () => {
    fake.behaviour.stuck = true;
    const ac = new AbortController();
    const run = provider().generate(request(), context(ac.signal));
    await until(() => historyPolls() >= 2);
    const reason = new CancelledError();
    ac.abort(reason);
    expect(await failureOf(run)).toBe(reason);
    const calls = fake.server.requests.map((r) => `${r.method} ${r.path}`);
    expect(calls.slice(-2)).toEqual(["GET /queue", "POST /interrupt"]);
    expect(fake.server.requestsTo("/interrupt")[0]!.json).toEqual({ prompt_id: fake.promptIds[0] });
  });

  test("abort while our prompt is pending deletes it from the queue and interrupts nobody", async () => {
    fake.occupy();
    const ac = new AbortController();
    const run = provider().generate(request(), context(ac.signal));
    await until(() => historyPolls() >= 2);
    ac.abort(new CancelledError());
    await failureOf(run);
    expect(fake.server.requestsTo("/interrupt")).toHaveLength(0);
    const del = fake.server.requests.filter((r) => r.method === "POST" && r.path === "/queue");
    expect(del.map((r) => r.json)).toEqual([{ delete: [fake.promptIds[0]] }]);
  });
});

describe("comfyui error classification", () => {
  test("a graph ComfyUI rejects (node_errors) → provider_invalid_request with the node's message", async () => {
    const err = await failureOf(provider().generate(request({ model: "missing.safetensors" }), context()));
    expect(err).toMatchObject({
      kind: "invalid_request",
      code: "provider_invalid_request",
      refundable: true,
    });
    expect((err as Error).message).toContain("CheckpointLoaderSimple: Value not in list");
    expect((err as ProviderError).details).toMatchObject({
      nodeErrors: { "4": { class_type: "CheckpointLoaderSimple" } },
    });
  });

  test("5xx is retryable and the next attempt succeeds", async () => {
    fake.server.script(json({ error: "internal" }, 500), { path: "/prompt" });
    const p = provider();
    expect(await failureOf(p.generate(request(), context()))).toMatchObject({ code: "provider_unavailable" });
    expect(await p.generate(request(), context())).toHaveLength(1);
  });

  test("a fronting proxy's 429 with Retry-After → rate_limited with its wait; its 401 → provider_auth", async () => {
    fake.server.script(json({ error: "slow down" }, 429, { "retry-after": "2" }), { path: "/prompt" });
    const limited = await failureOf(provider().generate(request(), context()));
    expect(limited).toMatchObject({ kind: "rate_limited", retryAfterMs: 2000 });
    fake.server.script(json({ error: "unauthorized" }, 401), { path: "/prompt" });
    expect(await failureOf(provider().generate(request(), context()))).toMatchObject({
      code: "provider_auth",
    });
  });

  test("a safety-checker node refusing the image is an execution_error: retried, never content_policy", async () => {
    // ComfyUI has no safety system in its API (docs/providers.md). The nearest equivalent is a checker custom node
    // that raises during execution: on the wire that is the same `execution_error` any failing node gives, so
    // it is classified like one (retryable, bounded by the job's attempts; a new attempt draws a new seed).
    fake.behaviour.fail = {
      type: "NSFWContentDetected",
      message: "Safety checker: potential NSFW content was detected",
    };
    const err = await failureOf(provider().generate(request(), context()));
    expect(err).toMatchObject({ kind: "transient", code: "provider_failed", refundable: true });
    expect((err as Error).message).toContain("NSFWContentDetected: Safety checker");
    expect(fake.server.requestsTo("/view")).toHaveLength(0);
  });

  test("a hosting gateway's 402 (out of credits) → provider_quota; its 403 → provider_auth; neither retried", async () => {
    // ComfyUI itself has no quota or accounts; hosted ComfyUI behind a billing gateway answers plain HTTP.
    fake.server.script(json({ error: "Payment required: your balance is exhausted" }, 402), {
      path: "/prompt",
    });
    const quota = await failureOf(provider().generate(request(), context()));
    expect(quota).toMatchObject({
      kind: "quota",
      code: "provider_quota",
      retryable: false,
      refundable: true,
    });
    fake.server.script(json({ error: "forbidden" }, 403), { path: "/prompt" });
    expect(await failureOf(provider().generate(request(), context()))).toMatchObject({
      code: "provider_auth",
      retryable: false,
    });
    expect(fake.promptIds).toHaveLength(0);
  });

  test("a hanging /prompt is cut at the request timeout as a retryable timeout", async () => {
    fake.server.script(HANG, { path: "/prompt" });
    const err = await failureOf(provider({ timeoutMs: 150 }).generate(request(), context()));
    expect(err).toMatchObject({ kind: "timeout", code: "provider_timeout" });
  });
});
