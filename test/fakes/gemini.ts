/**
 * Fake Gemini API (docs/providers.md "Google Gemini / Imagen"). Base URL for adapters: `${fake.url}/v1beta`.
 * `POST /v1beta/models/<gemini…>:generateContent` answers one inline PNG (camelCase, or snake_case when
 * `snakeCase` is set); `POST /v1beta/models/imagen-…:predict` answers `sampleCount` predictions.
 * Safety outcomes come back as HTTP 200 in the API's own shapes; errors as `{error:{code,message,status,details}}`.
 */
import { FakeServer, HANG, json, type RecordedRequest, testImage } from "./base";

export class GeminiFake extends FakeServer {
  snakeCase = false;
  image = new Uint8Array();

  constructor() {
    super((req, fake) => (fake as GeminiFake).route(req));
  }

  static async create(): Promise<GeminiFake> {
    const fake = new GeminiFake();
    fake.image = await testImage({ format: "png", width: 16, height: 16 });
    return fake.start();
  }

  get baseUrl(): string {
    return `${this.url}/v1beta`;
  }

  get b64(): string {
    return Buffer.from(this.image).toString("base64");
  }

  private route(req: RecordedRequest): Response | undefined {
    const m = /^\/v1beta\/models\/([^/:]+):(generateContent|predict)$/.exec(req.path);
    if (req.method !== "POST" || !m) return undefined;
    if (m[2] === "predict") {
      const params = (req.json as { parameters?: { sampleCount?: number } }).parameters;
      const predictions = Array.from({ length: params?.sampleCount ?? 1 }, () => ({
        bytesBase64Encoded: this.b64,
        mimeType: "image/png",
      }));
      return json({ predictions });
    }
    const image = this.snakeCase
      ? { inline_data: { mime_type: "image/png", data: this.b64 } }
      : { inlineData: { mimeType: "image/png", data: this.b64 } };
    return json(this.content([{ text: "Here is your image." }, image], "STOP"));
  }

  content(parts: unknown[], finishReason: string): Record<string, unknown> {
    return {
      candidates: [{ content: { role: "model", parts }, finishReason, index: 0 }],
      usageMetadata: { promptTokenCount: 10 },
      modelVersion: "gemini-2.5-flash-image",
    };
  }

  private error(code: number, status: string, message: string, details: unknown[] = []) {
    return this.script(json({ error: { code, message, status, details } }, code));
  }

  resourceExhausted(retryDelay?: string): this {
    const details = retryDelay
      ? [{ "@type": "type.googleapis.com/google.rpc.RetryInfo", retryDelay }]
      : [{ "@type": "type.googleapis.com/google.rpc.QuotaFailure", violations: [] }];
    return this.error(429, "RESOURCE_EXHAUSTED", "You exceeded your current quota.", details);
  }

  /**
   * A quota that will not come back within a retry: the per-day limit, or a limit of 0 (a model the free tier
   * does not include). Google still attaches a short RetryInfo, as the real API does.
   */
  quotaExceeded(kind: "daily" | "zero" = "daily"): this {
    const quotaId =
      kind === "daily"
        ? "GenerateRequestsPerDayPerProjectPerModel-FreeTier"
        : "GenerateRequestsPerMinutePerProjectPerModel-FreeTier";
    const limit = kind === "daily" ? 100 : 0;
    const metric = "generativelanguage.googleapis.com/generate_content_free_tier_requests";
    return this.error(
      429,
      "RESOURCE_EXHAUSTED",
      "You exceeded your current quota, please check your plan and billing details. For more information on " +
        "this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.\n" +
        `* Quota exceeded for metric: ${metric}, limit: ${limit}, model: gemini-2.5-flash-image`,
      [
        {
          "@type": "type.googleapis.com/google.rpc.QuotaFailure",
          violations: [
            {
              quotaMetric: metric,
              quotaId,
              quotaDimensions: { location: "global", model: "gemini-2.5-flash-image" },
              ...(kind === "daily" && { quotaValue: "100" }),
            },
          ],
        },
        {
          "@type": "type.googleapis.com/google.rpc.Help",
          links: [
            {
              description: "Learn more about Gemini API quotas",
              url: "https://ai.google.dev/gemini-api/docs/rate-limits",
            },
          ],
        },
        { "@type": "type.googleapis.com/google.rpc.RetryInfo", retryDelay: "27s" },
      ],
    );
  }

  /** A per-minute limit: the same status, but a retry after RetryInfo's delay will work. */
  perMinuteLimit(): this {
    return this.error(429, "RESOURCE_EXHAUSTED", "You exceeded your current quota.", [
      {
        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
        violations: [
          {
            quotaMetric: "generativelanguage.googleapis.com/generate_content_paid_tier_requests",
            quotaId: "GenerateRequestsPerMinutePerProjectPerModel",
            quotaValue: "500",
          },
        ],
      },
      { "@type": "type.googleapis.com/google.rpc.RetryInfo", retryDelay: "8s" },
    ]);
  }

  invalidArgument(): this {
    return this.error(400, "INVALID_ARGUMENT", "Request contains an invalid argument.");
  }

  invalidApiKey(): this {
    return this.error(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.", [
      {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        reason: "API_KEY_INVALID",
        domain: "googleapis.com",
      },
    ]);
  }

  permissionDenied(): this {
    return this.error(403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers.");
  }

  unavailable(): this {
    return this.error(503, "UNAVAILABLE", "The model is overloaded. Please try again later.");
  }

  /** A 200 whose candidate stopped for `finishReason` without an image. */
  finished(finishReason: string): this {
    return this.script(json(this.content([{ text: "I can't help with that." }], finishReason)));
  }

  blockedPrompt(blockReason = "PROHIBITED_CONTENT"): this {
    return this.script(json({ promptFeedback: { blockReason }, usageMetadata: { promptTokenCount: 10 } }));
  }

  /** Imagen: every image filtered, reasons given. */
  imagenFiltered(): this {
    return this.script(
      json({
        predictions: [{ raiFilteredReason: "Your current safety filter threshold filtered out the image." }],
      }),
    );
  }

  hang(): this {
    return this.script(HANG);
  }
}
