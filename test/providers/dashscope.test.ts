import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { createDashscopeProvider, type DashscopeOptions } from "../../src/providers/dashscope";
import type { ProviderError } from "../../src/providers/errors";
import type { InputImage } from "../../src/providers/types";
import { HANG } from "../fakes/base";
import { DashscopeFake, dashscopeError, GENERATION_PATH } from "../fakes/dashscope";
import { context, failureOf, request } from "./adapter-support";

let fake: DashscopeFake;
let input: InputImage;

beforeAll(async () => {
  fake = await new DashscopeFake().start();
  input = { bytes: fake.image, mime: "image/png" };
});
afterAll(() => fake.stop());
beforeEach(() => fake.reset());

const provider = (opts: Partial<DashscopeOptions> = {}) =>
  createDashscopeProvider({ apiKey: fake.apiKey, baseUrl: fake.url, ...opts });
const edit = (overrides: Parameters<typeof request>[0] = {}) =>
  request({ prompt: "make the sky purple", images: [input], ...overrides });

describe("dashscope request shape", () => {
  test("posts a qwen-image-edit chat message with the image as a data URL, then downloads the URL", async () => {
    const images = await provider().generate(
      edit({ size: "1024x1536", seed: 5, negativePrompt: "low quality" }),
      context(),
    );
    const call = fake.server.requests[0]!;
    expect(call.method).toBe("POST");
    expect(call.path).toBe(GENERATION_PATH);
    expect(call.headers.get("authorization")).toBe(`Bearer ${fake.apiKey}`);
    const body = call.json as {
      model: string;
      input: { messages: Array<{ role: string; content: Array<Record<string, string>> }> };
      parameters: Record<string, unknown>;
    };
    expect(body.model).toBe("qwen-image-edit");
    expect(body.input.messages).toHaveLength(1);
    expect(body.input.messages[0]!.role).toBe("user");
    const [imagePart, textPart] = body.input.messages[0]!.content;
    expect(imagePart!.image).toBe(`data:image/png;base64,${Buffer.from(fake.image).toString("base64")}`);
    expect(textPart).toEqual({ text: "make the sky purple" });
    // qwen-image-edit takes neither size (the output follows the input) nor n (one image per call).
    expect(body.parameters).toEqual({ watermark: false, negative_prompt: "low quality", seed: 5 });
    expect(fake.server.requestsTo(/^\/oss\//).map((r) => r.path)).toEqual(["/oss/out-0.png"]);
    expect(images).toEqual([{ bytes: fake.image, mime: "image/png", seed: 5 }]);
  });

  test("qwen-image-edit: n images are n calls without n or size, seeds one apart", async () => {
    const p = provider();
    const images = await p.generate(edit({ n: 3, seed: 10 }), context());
    const params = fake.server
      .requestsTo(GENERATION_PATH)
      .map((r) => (r.json as { parameters: Record<string, unknown> }).parameters);
    expect(params.map((x) => x.seed).sort()).toEqual([10, 11, 12]);
    for (const x of params) {
      expect(x).not.toHaveProperty("n");
      expect(x).not.toHaveProperty("size");
    }
    expect(images).toHaveLength(3);
    expect(p.requestCost?.(edit({ n: 3 }))).toBe(3);
  });

  test("the plus series takes size (W*H) and n in one call; without an asked size it sends none", async () => {
    const p = provider();
    const images = await p.generate(
      edit({ model: "qwen-image-edit-plus", size: "1024x1536", n: 2 }),
      context(),
    );
    await p.generate(edit({ model: "qwen-image-edit-plus", sizeGiven: false }), context());
    const [sized, unsized] = fake.server
      .requestsTo(GENERATION_PATH)
      .map((r) => (r.json as { parameters: Record<string, unknown> }).parameters);
    expect(sized).toEqual({ watermark: false, n: 2, size: "1024*1536" });
    expect(unsized).toEqual({ watermark: false, n: 1 });
    expect(images).toHaveLength(2);
    expect(p.requestCost?.(edit({ model: "qwen-image-edit-plus", n: 2 }))).toBe(1);
  });

  test("without an input image the request is refused before any call", async () => {
    const err = await failureOf(provider().generate(request(), context()));
    expect(err).toMatchObject({
      kind: "invalid_request",
      code: "provider_invalid_request",
      refundable: true,
    });
    expect(fake.server.requests).toHaveLength(0);
  });

  test("a mask is refused (the model edits from the instruction alone)", async () => {
    const err = await failureOf(provider().generate(edit({ mask: input }), context()));
    expect(err).toMatchObject({ code: "provider_invalid_request" });
    expect(fake.server.requests).toHaveLength(0);
  });
});

describe("dashscope error classification", () => {
  test("DataInspectionFailed → content_policy, not refundable", async () => {
    fake.server.script(dashscopeError.dataInspection());
    const err = await failureOf(provider().generate(edit(), context()));
    expect(err).toMatchObject({
      kind: "content_policy",
      code: "content_policy",
      retryable: false,
      refundable: false,
    });
  });

  test("an error code in a 200 body is still classified", async () => {
    fake.server.script(dashscopeError.inspectionIn200());
    expect(await failureOf(provider().generate(edit(), context()))).toMatchObject({ code: "content_policy" });
  });

  test("Throttling.RateQuota (429) without a hint is a plain retryable rate limit", async () => {
    fake.server.script(dashscopeError.rateQuota());
    const err = await failureOf(provider().generate(edit(), context()));
    expect(err).toMatchObject({ kind: "rate_limited" });
    expect((err as ProviderError).retryAfterMs).toBeUndefined();
    expect(err).toMatchObject({ code: "provider_rate_limited", retryable: true });
  });

  test("Throttling.RateQuota (429) with Retry-After waits that long, then succeeds", async () => {
    fake.server.script(dashscopeError.rateQuota(6));
    const p = provider();
    const err = await failureOf(p.generate(edit(), context()));
    expect(err).toMatchObject({
      kind: "rate_limited",
      code: "provider_rate_limited",
      retryAfterMs: 6000,
      retryable: true,
    });
    expect(await p.generate(edit(), context())).toHaveLength(1);
    expect(fake.server.requestsTo(GENERATION_PATH)).toHaveLength(2);
  });

  test.each([
    ["Throttling.AllocationQuota", "provider_quota", "quota", dashscopeError.allocationQuota()],
    ["Arrearage", "provider_quota", "quota", dashscopeError.arrearage()],
    ["InvalidParameter", "provider_invalid_request", "invalid_request", dashscopeError.invalidParameter()],
  ])("%s → %s, not retried", async (_name, code, kind, reply) => {
    fake.server.script(reply);
    const err = await failureOf(provider().generate(edit(), context()));
    expect(err).toMatchObject({ kind, code, retryable: false, refundable: true });
  });

  test("a wrong key → provider_auth", async () => {
    const err = await failureOf(provider({ apiKey: "sk-wrong" }).generate(edit(), context()));
    expect(err).toMatchObject({ code: "provider_auth", retryable: false });
  });

  test("InternalError (500) is retryable and the next attempt succeeds", async () => {
    fake.server.script(dashscopeError.internal());
    const p = provider();
    expect(await failureOf(p.generate(edit(), context()))).toMatchObject({ code: "provider_unavailable" });
    expect(await p.generate(edit(), context())).toHaveLength(1);
  });

  test("a hanging call is cut at the request timeout as a retryable timeout", async () => {
    fake.server.script(HANG);
    const err = await failureOf(provider({ timeoutMs: 150 }).generate(edit(), context()));
    expect(err).toMatchObject({ kind: "timeout", code: "provider_timeout" });
  });
});
