/**
 * fal.ai queue (docs/providers.md "fal.ai queue"): submit, poll the returned `status_url` (queue position and
 * logs become progress), fetch `response_url`, download the images; `PUT cancel_url` when the job is aborted.
 * FLUX text models take `image_size`; FLUX Kontext edits `image_url` and takes an `aspect_ratio` instead.
 */
import {
  capabilitiesFor,
  type ModelCapabilities,
  matchAspectRatio,
  type ProviderCapabilities,
} from "./capabilities";
import { ProviderError } from "./errors";
import {
  badResponse,
  contentPolicyError,
  downloadImage,
  type EnsureOkOptions,
  type ErrorBodyInfo,
  parseSize,
  sleep,
  toDataUrl,
} from "./http";
import { fetchJson, isRecord, percentFromLogs, progressReporter, sendCancel, trimBase } from "./remote";
import type { GenerateContext, GeneratedImage, GenerateRequest, Provider, ProviderInfo } from "./types";

const PROVIDER = "fal";

export type FalOptions = {
  key: string;
  /** @defaultValue "https://queue.fal.run" */
  queueBaseUrl?: string;
  /** Delay between status polls. @defaultValue 500 */
  pollIntervalMs?: number;
  /** Per-request timeout for API calls and downloads. @defaultValue http.DEFAULT_TIMEOUT_MS */
  timeoutMs?: number;
  /** Cap on each downloaded output. @defaultValue http.DEFAULT_MAX_DOWNLOAD_BYTES */
  maxDownloadBytes?: number;
};

export type FalSubmission = {
  request_id: string;
  status_url: string;
  response_url: string;
  cancel_url: string;
};

export type FalResult = {
  images: Array<{ url: string; content_type?: string; width?: number; height?: number }>;
  seed?: number;
  has_nsfw_concepts?: boolean[];
};

const FLUX: ModelCapabilities = {
  input: "text",
  maxInputImages: 0,
  mask: false,
  sizes: { kind: "range", min: 256, max: 2048, step: 16 },
  imagesPerCall: 4,
  negativePrompt: "none",
  seed: true,
  outputFormats: ["jpeg", "png"],
};

export const CAPABILITIES: ProviderCapabilities = {
  models: {
    "fal-ai/flux/schnell": FLUX,
    "fal-ai/flux/dev": FLUX,
    "fal-ai/flux-pro/v1.1": FLUX,
    "fal-ai/flux-pro/kontext": {
      ...FLUX,
      input: "edit",
      maxInputImages: 1,
      sizes: { kind: "aspect", ratios: ["21:9", "16:9", "4:3", "3:2", "1:1", "2:3", "3:4", "9:16", "9:21"] },
    },
  },
};

const MODELS = Object.keys(CAPABILITIES.models);

/** fal's named sizes; any other size goes as `{width, height}`. */
const NAMED_SIZES: Record<string, string> = {
  "1024x1024": "square_hd",
  "512x512": "square",
  "768x1024": "portrait_4_3",
  "576x1024": "portrait_16_9",
  "1024x768": "landscape_4_3",
  "1024x576": "landscape_16_9",
};

/** `X-Fal-Error-Type` values that describe fal's infrastructure rather than our input. */
const TRANSIENT_ERROR_TYPE = /timeout|runner|scheduling|internal|server_error|disconnect|connection/i;
const QUOTA_TEXT = /balance|billing|locked|credit/i;

export function imageSize(size: string): string | { width: number; height: number } {
  const { width, height } = parseSize(size);
  return NAMED_SIZES[`${width}x${height}`] ?? { width, height };
}

/** `image_size`, or for aspect-ratio models `aspect_ratio` (left out when no size was asked: Kontext follows the input). */
function sizeInput(req: GenerateRequest, caps: ModelCapabilities | undefined): Record<string, unknown> {
  if (caps?.sizes.kind !== "aspect") return { image_size: imageSize(req.size) };
  if (req.sizeGiven === false) return {};
  const ratio = matchAspectRatio(req.size, caps.sizes.ratios);
  return ratio ? { aspect_ratio: ratio } : {};
}

export function buildInput(req: GenerateRequest, model?: string): Record<string, unknown> {
  const caps = model === undefined ? undefined : capabilitiesFor(CAPABILITIES, model);
  const input: Record<string, unknown> = {
    prompt: req.prompt,
    ...sizeInput(req, caps),
    num_images: req.n,
    enable_safety_checker: true,
    output_format: "png",
  };
  if (req.negativePrompt && caps?.negativePrompt !== "none") input.negative_prompt = req.negativePrompt;
  if (req.seed !== undefined) input.seed = req.seed;
  const images = req.images ?? [];
  if (images[0]) input.image_url = toDataUrl(images[0]);
  if (images.length > 1) input.image_urls = images.map(toDataUrl);
  if (req.mask) input.mask_url = toDataUrl(req.mask);
  return { ...input, ...req.params };
}

function detailTypes(body: ErrorBodyInfo): string[] {
  const detail = isRecord(body.json) ? body.json.detail : undefined;
  if (!Array.isArray(detail)) return [];
  return detail.flatMap((d) => (isRecord(d) && typeof d.type === "string" ? [d.type] : []));
}

/** fal-specific shapes before the shared rules: safety in `detail[].type`, infra errors, exhausted balance. */
export const classify: EnsureOkOptions["classify"] = (status, headers, _text, body) => {
  const details = { provider: PROVIDER, status };
  if (detailTypes(body).includes("content_policy_violation")) {
    return contentPolicyError(PROVIDER, body.message ?? "content policy violation", details);
  }
  const errorType = headers.get("x-fal-error-type");
  if (errorType && TRANSIENT_ERROR_TYPE.test(errorType)) {
    return new ProviderError(
      "transient",
      `${PROVIDER}: ${errorType}${body.message ? `: ${body.message}` : ""}`,
      {
        details: { ...details, errorType },
      },
    );
  }
  if ((status === 403 || status === 402) && QUOTA_TEXT.test(body.message ?? "")) {
    return new ProviderError("quota", `${PROVIDER}: ${body.message}`, { details });
  }
  return undefined;
};

export function parseSubmission(value: unknown): FalSubmission {
  if (!isRecord(value) || typeof value.request_id !== "string") {
    throw badResponse(PROVIDER, "submit answer without request_id");
  }
  const strings = ["status_url", "response_url", "cancel_url"].every((k) => typeof value[k] === "string");
  if (!strings) throw badResponse(PROVIDER, "submit answer without status_url/response_url/cancel_url");
  return value as FalSubmission;
}

/**
 * Drops images fal's checker flagged (they come back blacked out). All flagged is a safety rejection; some
 * flagged is a smaller result, which the job reports as such.
 */
export function keptImages(result: FalResult): FalResult["images"] {
  const flags = result.has_nsfw_concepts ?? [];
  const kept = result.images.filter((_, i) => flags[i] !== true);
  if (kept.length === 0 && flags.some(Boolean)) {
    throw contentPolicyError(PROVIDER, "every image was flagged as NSFW", { flagged: flags.length });
  }
  if (kept.length === 0) throw badResponse(PROVIDER, "result without images");
  return kept;
}

export function parseResult(value: unknown): FalResult {
  const images = isRecord(value) ? value.images : undefined;
  if (!Array.isArray(images) || !images.every((img) => isRecord(img) && typeof img.url === "string")) {
    throw badResponse(PROVIDER, "result without a list of image URLs");
  }
  return value as FalResult;
}

type QueueStatus = { status: string; queue_position?: number; logs?: Array<{ message?: string }> | null };

function parseStatus(value: unknown): QueueStatus {
  if (!isRecord(value) || typeof value.status !== "string") {
    throw badResponse(PROVIDER, "status without status");
  }
  return value as QueueStatus;
}

export function createFalProvider(opts: FalOptions): Provider {
  const base = trimBase(opts.queueBaseUrl ?? "https://queue.fal.run");
  const pollMs = opts.pollIntervalMs ?? 500;
  const auth = { authorization: `Key ${opts.key}` };
  const info: ProviderInfo = {
    name: PROVIDER,
    defaultModel: MODELS[0]!,
    models: MODELS,
    supportsEdits: true,
    capabilities: CAPABILITIES,
    limits: { concurrency: 4, rpm: 120 },
  };

  const call = (url: string | URL, init: RequestInit, signal: AbortSignal) =>
    fetchJson(PROVIDER, url, init, { signal, classify, timeoutMs: opts.timeoutMs });

  async function submit(req: GenerateRequest, signal: AbortSignal): Promise<FalSubmission> {
    const model = (req.model ?? info.defaultModel).replace(/^\/+|\/+$/g, "");
    const init = {
      method: "POST",
      headers: { ...auth, "content-type": "application/json" },
      body: JSON.stringify(buildInput(req, model)),
    };
    return parseSubmission(await call(`${base}/${model}`, init, signal));
  }

  async function waitForCompletion(sub: FalSubmission, ctx: GenerateContext): Promise<void> {
    const report = progressReporter(ctx);
    const url = new URL(sub.status_url);
    url.searchParams.set("logs", "1");
    let pct = 0;
    for (;;) {
      const status = parseStatus(await call(url, { headers: auth }, ctx.signal));
      // A failed run is COMPLETED too; its response_url answers with the failure's status and body.
      if (status.status === "COMPLETED") return;
      if (status.status === "IN_QUEUE") {
        report(
          0,
          `queued${status.queue_position !== undefined ? ` (position ${status.queue_position})` : ""}`,
        );
      } else {
        const logs = (status.logs ?? []).map((l) => l.message ?? "").join("\n");
        pct = percentFromLogs(logs) ?? pct;
        report(pct, "processing");
      }
      await sleep(pollMs, ctx.signal);
    }
  }

  async function fetchImages(sub: FalSubmission, signal: AbortSignal): Promise<GeneratedImage[]> {
    const result = parseResult(await call(sub.response_url, { headers: auth }, signal));
    return Promise.all(
      keptImages(result).map(async (img) => {
        const dl = { signal, provider: PROVIDER, timeoutMs: opts.timeoutMs, maxBytes: opts.maxDownloadBytes };
        const out = await downloadImage(img.url, dl);
        return typeof result.seed === "number" ? { ...out, seed: result.seed } : out;
      }),
    );
  }

  async function generate(req: GenerateRequest, ctx: GenerateContext): Promise<GeneratedImage[]> {
    const sub = await submit(req, ctx.signal);
    try {
      await waitForCompletion(sub, ctx);
    } catch (err) {
      if (ctx.signal.aborted) await sendCancel(PROVIDER, sub.cancel_url, { method: "PUT", headers: auth });
      throw err;
    }
    return fetchImages(sub, ctx.signal);
  }

  return { info, generate };
}
