/**
 * Model capabilities through the real interface: `POST /api/jobs/generate-image` refuses at submit what a model
 * cannot do (422 naming what it takes, before any charge, stored input or queue row), a model outside the
 * table runs with a warning in its job, and `GET /api/providers` returns the table. The adapters' wire for the
 * same models is checked against the fakes (what each fake received).
 */
import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import {
  checkRequest,
  describeSizes,
  imagesPerCallSplit,
  matchAspectRatio,
} from "../../src/providers/capabilities";
import { testImage } from "../fakes/base";
import { DashscopeFake, GENERATION_PATH } from "../fakes/dashscope";
import { OpenAIFake } from "../fakes/openai";
import { ReplicateFake } from "../fakes/replicate";
import { createUser, expectStatus } from "../fixtures/backlog";
import { startTestServer, type TestServer, waitFor } from "../helpers";

type ErrorBody = { error: { code: string; message: string; details?: Record<string, unknown> } };
type JobDetail = {
  status: string;
  input: { size: string; autoSize?: boolean; warnings?: string[] };
  error: unknown;
};

let openai: OpenAIFake;
let dashscope: DashscopeFake;
let replicate: ReplicateFake;
let server: TestServer;
let image: string;

beforeAll(async () => {
  [openai, dashscope, replicate] = await Promise.all([
    OpenAIFake.create(),
    new DashscopeFake().start(),
    new ReplicateFake().start(),
  ]);
  server = await startTestServer({
    env: {
      OPENAI_API_KEY: "sk-test",
      OPENAI_BASE_URL: openai.baseUrl,
      DASHSCOPE_API_KEY: dashscope.apiKey,
      DASHSCOPE_BASE_URL: dashscope.url,
      REPLICATE_API_TOKEN: "r8_test",
      REPLICATE_BASE_URL: replicate.baseUrl,
      PROVIDER_LIMITS: JSON.stringify({
        openai: { rpm: 0 },
        dashscope: { rpm: 0 },
        replicate: { rpm: 0 },
      }),
    },
  });
  const bytes = await testImage({ width: 64, height: 48 });
  image = `data:image/png;base64,${Buffer.from(bytes).toString("base64")}`;
});

afterAll(async () => {
  await server?.close();
  await Promise.all([openai?.stop(), dashscope?.stop(), replicate?.stop()]);
});

beforeEach(() => {
  openai.reset();
  dashscope.reset();
  replicate.reset();
  replicate.behaviour.sync = true;
});

const submit = (json: Record<string, unknown>, key?: string) =>
  server.api("/api/jobs/generate-image", { method: "POST", json, ...(key && { key }) });

function jobCount(): number {
  return (server.ctx.db.$client.query("SELECT count(*) AS n FROM jobs").get() as { n: number }).n;
}

async function inputKeys(): Promise<string[]> {
  const keys: string[] = [];
  for await (const o of server.ctx.storage.list("inputs/")) keys.push(o.key);
  return keys;
}

async function finished(id: string): Promise<JobDetail> {
  return waitFor(
    async () => {
      const job = (await (await server.api(`/api/jobs/${id}`)).json()) as JobDetail;
      return ["completed", "partial", "failed"].includes(job.status) ? job : null;
    },
    { timeoutMs: 20_000, what: `job ${id} to finish` },
  );
}

describe("refused at submit, before any charge, stored input or queue row", () => {
  const cases: Array<[string, () => Record<string, unknown>, RegExp]> = [
    [
      "qwen-image-edit with a size (its output follows the input image)",
      () => ({ provider: "dashscope", prompt: "make it blue", image, size: "2560x1440" }),
      /qwen-image-edit on dashscope does not take size 2560x1440 \(takes no size: the output follows the input image\)/,
    ],
    [
      "qwen-image-edit-plus past 2048 per side",
      () => ({ provider: "dashscope", model: "qwen-image-edit-plus", prompt: "x", image, size: "2560x1440" }),
      /takes 512–2048 pixels per side/,
    ],
    [
      "qwen-image-edit without an input image",
      () => ({ provider: "dashscope", prompt: "a fox" }),
      /a request without an input image \(it only edits\)/,
    ],
    [
      "a gpt-image-1 size outside its list",
      () => ({ provider: "openai", prompt: "x", size: "1344x768" }),
      /takes sizes 1024x1024, 1536x1024, 1024x1536/,
    ],
    [
      "an input image for dall-e-3, naming the models that take it",
      () => ({ provider: "openai", model: "dall-e-3", prompt: "x", image }),
      /dall-e-3 on openai does not take input images \(it only generates from text\); openai models that take this request: gpt-image-1, gpt-image-1-mini, gpt-image-1.5, dall-e-2$/,
    ],
    ["a seed on OpenAI", () => ({ provider: "openai", prompt: "x", seed: 5 }), /does not take a seed/],
    [
      "a negative prompt on FLUX schnell",
      () => ({ provider: "replicate", prompt: "x", negativePrompt: "blur" }),
      /does not take a negative prompt/,
    ],
    [
      "a batch item whose size FLUX 1.1 pro cannot make",
      () => ({
        provider: "replicate",
        model: "black-forest-labs/flux-1.1-pro",
        items: [
          { id: "ok", prompt: "a", size: "1024x768" },
          { id: "bad", prompt: "b", size: "1000x1000" },
        ],
      }),
      /size 1000x1000 \(takes 256–1440 pixels per side in steps of 32\)/,
    ],
    [
      "an aspect ratio FLUX schnell does not offer",
      () => ({ provider: "replicate", prompt: "x", size: "1024x300" }),
      /takes aspect ratios 1:1, 16:9/,
    ],
    [
      "an output format the model cannot write",
      () => ({ provider: "openai", model: "dall-e-3", prompt: "x", params: { output_format: "webp" } }),
      /output_format webp \(takes png\)/,
    ],
  ];

  for (const [what, body, message] of cases) {
    test(`${what} → 422 unsupported_by_model`, async () => {
      const user = await createUser(server.api, { credits: 5 });
      const jobsBefore = jobCount();
      const inputsBefore = await inputKeys();
      const err = await expectStatus<ErrorBody>(await submit(body(), user.key), 422);
      expect(err.error.code).toBe("unsupported_by_model");
      expect(err.error.message).toMatch(message);
      expect(err.error.details).toMatchObject({ problems: expect.any(Array), supports: expect.any(Object) });
      expect(jobCount()).toBe(jobsBefore);
      expect(await inputKeys()).toEqual(inputsBefore);
      const credits = await expectStatus<{ credits: number }>(
        await server.api("/api/credits", { key: user.key }),
        200,
      );
      expect(credits.credits).toBe(5);
      expect(
        openai.requests.length + dashscope.server.requests.length + replicate.server.requests.length,
      ).toBe(0);
    });
  }
});

describe("accepted requests reach the provider with only what the model takes", () => {
  test("qwen-image-edit without a size: no size and no n on the wire; n=2 is two calls", async () => {
    const accepted = await expectStatus<{ jobId: string; warnings?: string[] }>(
      await submit({ provider: "dashscope", prompt: "make it blue", image, n: 2, seed: 4 }),
      202,
    );
    expect(accepted.warnings).toBeUndefined();
    const job = await finished(accepted.jobId);
    expect(job.status).toBe("completed");
    expect(job.input).toMatchObject({ size: "1024x1024", autoSize: true });
    const params = dashscope.server
      .requestsTo(GENERATION_PATH)
      .map((r) => (r.json as { parameters: Record<string, unknown> }).parameters);
    expect(params).toHaveLength(2);
    for (const p of params) {
      expect(p).not.toHaveProperty("size");
      expect(p).not.toHaveProperty("n");
    }
  });

  test("the plus series gets the asked size as W*H and n in one call", async () => {
    const { jobId } = await expectStatus<{ jobId: string }>(
      await submit({
        provider: "dashscope",
        model: "qwen-image-edit-plus",
        prompt: "x",
        image,
        size: "1536x1024",
        n: 2,
      }),
      202,
    );
    expect((await finished(jobId)).status).toBe("completed");
    const [call] = dashscope.server.requestsTo(GENERATION_PATH);
    expect((call!.json as { parameters: unknown }).parameters).toMatchObject({ size: "1536*1024", n: 2 });
  });

  test("a Kontext edit without a size keeps the input's aspect ratio", async () => {
    const { jobId } = await expectStatus<{ jobId: string }>(
      await submit({
        provider: "replicate",
        model: "black-forest-labs/flux-kontext-pro",
        prompt: "x",
        image,
      }),
      202,
    );
    expect((await finished(jobId)).status).toBe("completed");
    const input = (replicate.server.requests[0]!.json as { input: Record<string, unknown> }).input;
    expect(input.aspect_ratio).toBe("match_input_image");
    expect(String(input.input_image)).toStartWith("data:image/png;base64,");
  });
});

describe("a model outside the table", () => {
  test("runs unchecked, with a warning in the answer and in the job", async () => {
    const accepted = await expectStatus<{ jobId: string; warnings?: string[] }>(
      await submit({ provider: "openai", model: "sd-turbo", prompt: "x", size: "768x512", seed: 3 }),
      202,
    );
    expect(accepted.warnings).toEqual([
      expect.stringContaining('model "sd-turbo" is not in Easel\'s capability table'),
    ]);
    const job = await finished(accepted.jobId);
    expect(job.status).toBe("completed");
    expect(job.input.warnings).toEqual(accepted.warnings);
    expect(openai.requests[0]?.json).toMatchObject({ model: "sd-turbo", size: "768x512" });
  });
});

describe("GET /api/providers", () => {
  test("returns each provider's capability table", async () => {
    type View = { name: string; capabilities: { models: Record<string, { sizes: { kind: string } }> } };
    const body = await expectStatus<{ providers: View[] }>(await server.api("/api/providers"), 200);
    const byName = new Map(body.providers.map((p) => [p.name, p]));
    expect(byName.get("dashscope")?.capabilities.models["qwen-image-edit"]).toMatchObject({
      input: "edit",
      sizes: { kind: "input" },
      imagesPerCall: 1,
    });
    expect(byName.get("dashscope")?.capabilities.models["qwen-image-edit-plus"]).toMatchObject({
      sizes: { kind: "range", min: 512, max: 2048 },
      imagesPerCall: 6,
    });
    expect(byName.get("openai")?.capabilities.models["dall-e-3"]).toMatchObject({
      input: "text",
      sizes: { kind: "fixed", sizes: ["1024x1024", "1792x1024", "1024x1792"] },
    });
    expect(byName.get("placeholder")?.capabilities).toHaveProperty("anyModel");
  });
});

describe("capability helpers", () => {
  test("aspect ratios match within 5 % (Gemini's 1184x864 is its 4:3)", () => {
    const ratios = ["1:1", "4:3", "3:4", "16:9"];
    expect(matchAspectRatio("1184x864", ratios)).toBe("4:3");
    expect(matchAspectRatio("1344x768", ratios)).toBe("16:9");
    expect(matchAspectRatio("1024x300", ratios)).toBeUndefined();
  });

  test("images per call split n; sizes are described the way errors say them", () => {
    expect(imagesPerCallSplit(5, 4)).toEqual([4, 1]);
    expect(imagesPerCallSplit(3, 1)).toEqual([1, 1, 1]);
    expect(describeSizes({ kind: "range", min: 256, max: 1440, step: 32 })).toBe(
      "256–1440 pixels per side in steps of 32",
    );
  });

  test("a provider without a table is not checked and gets no warning", () => {
    expect(
      checkRequest({ name: "x", defaultModel: "m" }, undefined, { hasImage: true, hasMask: true }),
    ).toEqual({
      model: "m",
      problems: [],
    });
  });
});
