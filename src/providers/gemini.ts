/**
 * Google Gemini image output and Imagen (docs/providers.md "Google Gemini / Imagen").
 *
 * - Models starting `imagen-` use `:predict` (`sampleCount` up to 4 per call); every other model uses
 *   `:generateContent`, one image per call, so n images are n parallel calls.
 * - Safety arrives as HTTP 200: `promptFeedback.blockReason`, a safety `finishReason`, or Imagen's
 *   `raiFilteredReason` / an empty `predictions` → `content_policy` (not refundable).
 * - `finishReason` NO_IMAGE / IMAGE_OTHER / OTHER, or a STOP without an image, is the model answering in text
 *   only. Sampling is random and a new attempt usually draws an image, so it is `transient`
 *   `provider_no_image` (bounded by the job's attempts) rather than a policy verdict.
 * - 429 RESOURCE_EXHAUSTED with a RetryInfo `retryDelay` → `rate_limited` with that wait, unless its
 *   QuotaFailure names a per-day quota or the message says `limit: 0` (a model the plan does not include):
 *   that will not refill within the job's retries → `quota` (`provider_quota`).
 *   400 with reason API_KEY_INVALID → `provider_auth`.
 */
import {
  capabilitiesFor,
  imagesPerCallSplit,
  type ModelCapabilities,
  type ProviderCapabilities,
} from "./capabilities";
import { ProviderError } from "./errors";
import {
  allOrAbort,
  badResponse,
  bytesToBase64,
  contentPolicyError,
  type EnsureOkOptions,
  ensureOk,
  httpError,
  imageFromBase64,
  isRecord,
  parseSize,
  providerFetch,
  readJson,
  sizeToAspectRatio,
} from "./http";
import type { GenerateContext, GeneratedImage, GenerateRequest, Provider, ProviderInfo } from "./types";

const PROVIDER = "gemini";

export type GeminiOptions = {
  apiKey: string;
  /** @defaultValue "https://generativelanguage.googleapis.com/v1beta" */
  baseUrl?: string;
  /** @defaultValue "gemini-2.5-flash-image" */
  defaultModel?: string;
  /** Per-request timeout. @defaultValue http.DEFAULT_TIMEOUT_MS */
  timeoutMs?: number;
};

const GEMINI_RATIOS = ["1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9"];
const IMAGEN_RATIOS = ["1:1", "3:4", "4:3", "9:16", "16:9"];
const IMAGEN_MAX_SAMPLES = 4;

/** Gemini image models edit the images sent as inline data; no mask, one image per call. */
const GEMINI_IMAGE: ModelCapabilities = {
  input: "both",
  maxInputImages: 3,
  mask: false,
  sizes: { kind: "aspect", ratios: GEMINI_RATIOS },
  imagesPerCall: 1,
  negativePrompt: "in-prompt",
  seed: true,
  outputFormats: ["png"],
};
/** Imagen draws from text only; the Gemini API documents no seed and no negative prompt for it. */
const IMAGEN: ModelCapabilities = {
  input: "text",
  maxInputImages: 0,
  mask: false,
  sizes: { kind: "aspect", ratios: IMAGEN_RATIOS },
  imagesPerCall: IMAGEN_MAX_SAMPLES,
  negativePrompt: "none",
  seed: false,
  outputFormats: ["png", "jpeg"],
};

export const CAPABILITIES: ProviderCapabilities = {
  models: {
    "gemini-2.5-flash-image": GEMINI_IMAGE,
    "gemini-3-pro-image-preview": { ...GEMINI_IMAGE, maxInputImages: 14 },
    "imagen-4.0-generate-001": IMAGEN,
    "imagen-4.0-fast-generate-001": IMAGEN,
    "imagen-4.0-ultra-generate-001": { ...IMAGEN, imagesPerCall: 1 },
    "imagen-3.0-generate-002": IMAGEN,
  },
};

const MODELS = Object.keys(CAPABILITIES.models);

const SAFETY_REASONS = new Set([
  "SAFETY",
  "PROHIBITED_CONTENT",
  "BLOCKLIST",
  "SPII",
  "RECITATION",
  "IMAGE_SAFETY",
  "IMAGE_PROHIBITED_CONTENT",
  "IMAGE_RECITATION",
]);

type InlineData = { mimeType?: string; mime_type?: string; data?: string };
type Part = { text?: string; inlineData?: InlineData; inline_data?: InlineData };
type Candidate = { content?: { parts?: Part[] }; finishReason?: string; finishMessage?: string };
type GenerateContentResponse = {
  candidates?: Candidate[];
  promptFeedback?: { blockReason?: string; blockReasonMessage?: string };
};
type PredictResponse = {
  predictions?: Array<{ bytesBase64Encoded?: string; mimeType?: string; raiFilteredReason?: string }>;
};

const isImagen = (model: string) => model.startsWith("imagen-");

/** Gemini 3 image models take an output size class; 2.5 rejects the field, so only send it there. */
function imageSize(model: string, size: string): string | undefined {
  if (!model.startsWith("gemini-3")) return undefined;
  const { width, height } = parseSize(size);
  const side = Math.max(width, height);
  return side <= 1024 ? "1K" : side <= 2048 ? "2K" : "4K";
}

export function generateContentBody(
  req: GenerateRequest,
  model: string,
  seed?: number,
): Record<string, unknown> {
  const text = req.negativePrompt ? `${req.prompt}\n\nAvoid: ${req.negativePrompt}` : req.prompt;
  const parts: unknown[] = [{ text }];
  for (const img of req.images ?? []) {
    parts.push({ inlineData: { mimeType: img.mime, data: bytesToBase64(img.bytes) } });
  }
  // Without an aspect ratio an edit keeps its input's; only a size the caller asked for overrides it.
  const followInput = (req.images?.length ?? 0) > 0 && req.sizeGiven === false;
  const imageConfig: Record<string, unknown> = followInput
    ? {}
    : { aspectRatio: sizeToAspectRatio(req.size, GEMINI_RATIOS) };
  const sizeClass = imageSize(model, req.size);
  if (sizeClass) imageConfig.imageSize = sizeClass;
  const generationConfig: Record<string, unknown> = {
    responseModalities: ["TEXT", "IMAGE"],
    imageConfig,
    ...req.params,
  };
  if (seed !== undefined) generationConfig.seed = seed;
  return { contents: [{ role: "user", parts }], generationConfig };
}

/** Imagen calls for n images: up to 4 per call (Ultra: 1). */
function sampleCounts(n: number, model: string): number[] {
  return imagesPerCallSplit(n, capabilitiesFor(CAPABILITIES, model)?.imagesPerCall ?? IMAGEN_MAX_SAMPLES);
}

export function predictBody(req: GenerateRequest, sampleCount: number): Record<string, unknown> {
  return {
    instances: [{ prompt: req.prompt }],
    parameters: {
      sampleCount,
      aspectRatio: sizeToAspectRatio(req.size, IMAGEN_RATIOS),
      // Without it a filtered image silently vanishes; with it we can say why.
      includeRaiReason: true,
      ...req.params,
    },
  };
}

/** quotaIds of the QuotaFailure violations in a Google error body. */
function quotaIds(json: unknown): string[] {
  const details = isRecord(json) && isRecord(json.error) ? json.error.details : undefined;
  if (!Array.isArray(details)) return [];
  return details.flatMap((d) =>
    isRecord(d) && Array.isArray(d.violations)
      ? d.violations.flatMap((v) => (isRecord(v) && typeof v.quotaId === "string" ? [v.quotaId] : []))
      : [],
  );
}

/**
 * A 400 "API key not valid" is INVALID_ARGUMENT on the wire, but it is an auth problem. A 429 for a per-day
 * quota, or for a quota of 0, is exhausted quota rather than a rate limit: retrying after RetryInfo's few
 * seconds would only spend the job's attempts.
 */
const classify: EnsureOkOptions["classify"] = (status, headers, text, body) => {
  if (status === 400 && (text.includes("API_KEY_INVALID") || /api key not valid/i.test(body.message ?? ""))) {
    return httpError(PROVIDER, 401, headers, text);
  }
  if (status === 429) {
    const ids = quotaIds(body.json);
    const daily = ids.some((id) => /per\s*day/i.test(id));
    if (daily || /\blimit:\s*0\b/.test(body.message ?? "")) {
      return new ProviderError(
        "quota",
        `${PROVIDER}: HTTP 429: ${(body.message ?? "quota exhausted").slice(0, 500)}`,
        {
          details: { provider: PROVIDER, status, providerCode: "RESOURCE_EXHAUSTED", quotaIds: ids },
        },
      );
    }
  }
  return undefined;
};

function noImage(reason: string, details: Record<string, unknown>): ProviderError {
  return new ProviderError("transient", `${PROVIDER}: the model returned no image (${reason})`, {
    code: "provider_no_image",
    details: { provider: PROVIDER, ...details },
  });
}

export function imagesFromContent(resp: GenerateContentResponse): Array<{ bytes: Uint8Array; mime: string }> {
  const block = resp.promptFeedback?.blockReason;
  if (block) {
    throw contentPolicyError(PROVIDER, resp.promptFeedback?.blockReasonMessage ?? block, {
      blockReason: block,
    });
  }
  const candidate = resp.candidates?.[0];
  if (!candidate) throw badResponse(PROVIDER, "response without candidates");
  const reason = candidate.finishReason ?? "STOP";
  if (SAFETY_REASONS.has(reason)) {
    throw contentPolicyError(PROVIDER, candidate.finishMessage ?? reason, { finishReason: reason });
  }
  const images = (candidate.content?.parts ?? []).flatMap((p) => {
    const inline = p.inlineData ?? p.inline_data;
    if (typeof inline?.data !== "string") return [];
    return [imageFromBase64(PROVIDER, inline.data, inline.mimeType ?? inline.mime_type)];
  });
  if (images.length === 0) throw noImage(reason, { finishReason: reason });
  return images;
}

export function imagesFromPredict(resp: PredictResponse): Array<{ bytes: Uint8Array; mime: string }> {
  const predictions = resp.predictions ?? [];
  const images = predictions.flatMap((p) =>
    typeof p.bytesBase64Encoded === "string"
      ? [imageFromBase64(PROVIDER, p.bytesBase64Encoded, p.mimeType)]
      : [],
  );
  if (images.length > 0) return images;
  // Imagen drops filtered images; when every one is filtered the answer is empty or reasons only.
  const reasons = predictions.flatMap((p) => (p.raiFilteredReason ? [p.raiFilteredReason] : []));
  throw contentPolicyError(PROVIDER, reasons.join("; ") || "all images were filtered", {
    raiFilteredReasons: reasons,
  });
}

export function createGeminiProvider(opts: GeminiOptions): Provider {
  const base = (opts.baseUrl ?? "https://generativelanguage.googleapis.com/v1beta").replace(/\/+$/, "");
  const info: ProviderInfo = {
    name: PROVIDER,
    defaultModel: opts.defaultModel ?? MODELS[0]!,
    models: MODELS,
    supportsEdits: true,
    capabilities: CAPABILITIES,
    limits: { concurrency: 4, rpm: 10 },
  };

  async function post(model: string, method: string, body: unknown, signal: AbortSignal): Promise<unknown> {
    const url = `${base}/models/${encodeURIComponent(model)}:${method}`;
    const init = {
      method: "POST",
      headers: { "x-goog-api-key": opts.apiKey, "content-type": "application/json" },
      body: JSON.stringify(body),
    };
    const res = await providerFetch(PROVIDER, url, init, {
      signal,
      ...(opts.timeoutMs !== undefined && { timeoutMs: opts.timeoutMs }),
    });
    await ensureOk(PROVIDER, res, { signal, classify });
    return readJson(PROVIDER, res, signal);
  }

  async function viaPredict(
    req: GenerateRequest,
    model: string,
    signal: AbortSignal,
  ): Promise<GeneratedImage[]> {
    const out: GeneratedImage[] = [];
    for (const count of sampleCounts(req.n, model)) {
      const resp = (await post(model, "predict", predictBody(req, count), signal)) as PredictResponse;
      out.push(...imagesFromPredict(resp));
    }
    return out;
  }

  async function viaGenerateContent(req: GenerateRequest, model: string, signal: AbortSignal) {
    const perCall = await allOrAbort(Math.max(1, req.n), signal, async (i, s) => {
      const seed = req.seed === undefined ? undefined : req.seed + i;
      const resp = await post(model, "generateContent", generateContentBody(req, model, seed), s);
      const images = imagesFromContent(resp as GenerateContentResponse);
      return seed === undefined ? images : images.map((img) => ({ ...img, seed }));
    });
    return perCall.flat();
  }

  async function generate(req: GenerateRequest, ctx: GenerateContext): Promise<GeneratedImage[]> {
    const model = req.model ?? info.defaultModel;
    if (isImagen(model) && req.images?.length) {
      throw new ProviderError(
        "unsupported",
        `${PROVIDER}: ${model} does not take input images; use a Gemini image model`,
      );
    }
    return isImagen(model) ? viaPredict(req, model, ctx.signal) : viaGenerateContent(req, model, ctx.signal);
  }

  function requestCost(req: GenerateRequest): number {
    const model = req.model ?? info.defaultModel;
    return isImagen(model) ? sampleCounts(req.n, model).length : Math.max(1, req.n);
  }

  return { info, generate, requestCost };
}
