/**
 * Fake Alibaba DashScope multimodal generation (docs/providers.md "Alibaba DashScope").
 *
 * Happy path: `POST /api/v1/services/aigc/multimodal-generation/generation` with `Bearer <apiKey>` answers one
 * choice holding `parameters.n` image URLs, which the fake serves under `/oss/` (standing in for OSS links).
 * A wrong key gets DashScope's 401 `InvalidApiKey`. Other errors in its `{request_id, code, message}` shape
 * are built by `dashscopeError.*`.
 */
import { FakeServer, json, type RecordedRequest, testImage } from "./base";

export const GENERATION_PATH = "/api/v1/services/aigc/multimodal-generation/generation";

function error(
  status: number,
  code: string,
  message: string,
  headers: Record<string, string> = {},
): Response {
  return json({ request_id: crypto.randomUUID(), code, message }, status, headers);
}

export class DashscopeFake {
  readonly server: FakeServer;
  #image: Uint8Array = new Uint8Array();

  constructor(readonly apiKey = "sk-test") {
    this.server = new FakeServer((req) => this.#route(req));
  }

  async start(): Promise<this> {
    this.#image = await testImage({ format: "png", width: 16, height: 24 });
    await this.server.start();
    return this;
  }

  get url(): string {
    return this.server.url;
  }

  get image(): Uint8Array {
    return this.#image;
  }

  reset(): void {
    this.server.reset();
  }

  stop(): Promise<void> {
    return this.server.stop();
  }

  #generate(req: RecordedRequest): Response {
    if (req.headers.get("authorization") !== `Bearer ${this.apiKey}`) {
      return error(401, "InvalidApiKey", "Invalid API-key provided.");
    }
    const body = req.json as { parameters?: { n?: number } } | undefined;
    const n = body?.parameters?.n ?? 1;
    const content = Array.from({ length: n }, (_, i) => ({
      image: `${this.url}/oss/out-${i}.png?Expires=1`,
    }));
    return json({
      output: { choices: [{ finish_reason: "stop", message: { role: "assistant", content } }] },
      usage: { width: 16, height: 24, image_count: n },
      request_id: crypto.randomUUID(),
    });
  }

  #route(req: RecordedRequest): Response | undefined {
    if (req.method === "POST" && req.path === GENERATION_PATH) return this.#generate(req);
    if (req.method === "GET" && req.path.startsWith("/oss/")) {
      return new Response(this.#image, { headers: { "content-type": "image/png" } });
    }
    return undefined;
  }
}

/** Error answers as DashScope sends them. */
export const dashscopeError = {
  dataInspection: () => error(400, "DataInspectionFailed", "Input data may contain inappropriate content."),
  /** With `retryAfterSeconds`, the standard header a gateway (or DashScope itself) may add. */
  rateQuota: (retryAfterSeconds?: number) =>
    error(
      429,
      "Throttling.RateQuota",
      "Requests rate limit exceeded, please try again later.",
      retryAfterSeconds === undefined ? {} : { "retry-after": String(retryAfterSeconds) },
    ),
  allocationQuota: () => error(429, "Throttling.AllocationQuota", "Free allocated quota exceeded."),
  invalidParameter: () => error(400, "InvalidParameter", "The size is not match the allowed size."),
  arrearage: () =>
    error(400, "Arrearage", "Access denied, please make sure your account is in good standing."),
  internal: () => error(500, "InternalError", "An internal error has occured, please try again later."),
  /** Some gateways answer 200 with the error code in the body and no output. */
  inspectionIn200: () =>
    json({
      request_id: "r",
      code: "DataInspectionFailed",
      message: "Output data may contain inappropriate content.",
    }),
};
