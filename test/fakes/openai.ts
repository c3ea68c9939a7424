/**
 * Fake OpenAI Images API (docs/providers.md "OpenAI Images"). Base URL for adapters: `${fake.url}/v1`.
 * Happy path: `/v1/images/generations` and `/v1/images/edits` answer `n` images as `b64_json`, or as
 * `url`s served by the fake itself when `responseMode = "url"`. Scenario helpers script the failures.
 */
import { FakeServer, HANG, json, type RecordedRequest, testImage } from "./base";

export class OpenAIFake extends FakeServer {
  responseMode: "b64" | "url" = "b64";
  image = new Uint8Array();

  constructor() {
    super((req, fake) => (fake as OpenAIFake).route(req));
  }

  static async create(): Promise<OpenAIFake> {
    const fake = new OpenAIFake();
    fake.image = await testImage({ format: "png", width: 16, height: 16 });
    return fake.start();
  }

  get baseUrl(): string {
    return `${this.url}/v1`;
  }

  private route(req: RecordedRequest): Response | undefined {
    if (req.method === "GET" && req.path.startsWith("/files/")) {
      return new Response(this.image, { headers: { "content-type": "image/png" } });
    }
    if (req.method !== "POST" || !/^\/v1\/images\/(generations|edits)$/.test(req.path)) return undefined;
    const n = Number(this.field(req, "n") ?? 1);
    const data = Array.from({ length: n }, (_, i) =>
      this.responseMode === "url"
        ? { url: `${this.url}/files/out-${i}.png`, revised_prompt: `revised ${i}` }
        : { b64_json: Buffer.from(this.image).toString("base64") },
    );
    return json({ created: 1_700_000_000, data, usage: { total_tokens: 100 } });
  }

  /** A body field from either the JSON or the multipart body. */
  field(req: RecordedRequest, name: string): unknown {
    if (req.json && typeof req.json === "object") return (req.json as Record<string, unknown>)[name];
    return req.form?.find(([k]) => k === name)?.[1];
  }

  private error(status: number, error: Record<string, unknown>, headers: Record<string, string> = {}) {
    return this.script(json({ error: { param: null, ...error } }, status, headers));
  }

  rateLimited(headers: Record<string, string> = {}): this {
    return this.error(
      429,
      { message: "Rate limit reached for images", type: "requests", code: "rate_limit_exceeded" },
      headers,
    );
  }

  insufficientQuota(): this {
    return this.error(429, {
      message: "You exceeded your current quota, please check your plan and billing details.",
      type: "insufficient_quota",
      code: "insufficient_quota",
    });
  }

  contentPolicy(code: "content_policy_violation" | "moderation_blocked" = "moderation_blocked"): this {
    return this.error(400, {
      message: "Your request was rejected as a result of our safety system.",
      type: code === "moderation_blocked" ? "image_generation_user_error" : "invalid_request_error",
      code,
    });
  }

  invalidRequest(): this {
    return this.error(400, {
      message: "Invalid value for 'size'.",
      type: "invalid_request_error",
      code: null,
    });
  }

  unauthorized(): this {
    return this.error(401, {
      message: "Incorrect API key provided.",
      type: "invalid_request_error",
      code: "invalid_api_key",
    });
  }

  serverError(status = 500): this {
    return this.error(status, {
      message: "The server had an error processing your request.",
      type: "server_error",
    });
  }

  hang(): this {
    return this.script(HANG);
  }
}
