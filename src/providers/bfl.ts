/**
 * FLUX from Black Forest Labs' own API (docs/providers.md "Black Forest Labs"): `POST {base}/v1/<model>` with
 * the `x-key` header answers `{id, polling_url}`; the returned polling URL (which may be another regional host)
 * is polled with the same header until `Ready`, whose `result.sample` is a signed delivery URL valid for about
 * ten minutes, so it is downloaded at once.
 *
 * - Moderation is a poll status, not an HTTP error: `Request Moderated` (the prompt or input) and `Content
 *   Moderated` (the output) → `content_policy`, not refundable. `Error` / `Failed` → retryable `provider_failed`;
 *   `Task not found` (the task was lost) → retryable too, so the next attempt submits again.
 * - 429 is "too many active tasks" (24; 6 for Kontext Max): retryable, after any wait the answer states. 402 is
 *   out of credits (`provider_quota`), 422 a validation error, 5xx retryable (shared rules in http.ts).
 * - One image per task: n images are n tasks with seeds one apart. The API has no cancel: an aborted job stops
 *   polling and the task runs out on BFL's side.
 */
import {
  capabilitiesFor,
  type ModelCapabilities,
  matchAspectRatio,
  type ProviderCapabilities,
} from "./capabilities";
import { ProviderError } from "./errors";
import {
  allOrAbort,
  badResponse,
  bytesToBase64,
  contentPolicyError,
  downloadImage,
  parseSize,
  sizeToAspectRatio,
  sleep,
} from "./http";
import { fetchJson, isRecord, progressReporter, trimBase } from "./remote";
import type { GenerateContext, GeneratedImage, GenerateRequest, Provider, ProviderInfo } from "./types";

const PROVIDER = "bfl";

export type BflOptions = {
  apiKey: string;
  /** @defaultValue "https://api.bfl.ai" (regional: https://api.eu.bfl.ai, https://api.us.bfl.ai) */
  baseUrl?: string;
  /** @defaultValue "flux-pro-1.1" */
  defaultModel?: string;
  /** Delay between polls of the polling URL. @defaultValue 500 */
  pollIntervalMs?: number;
  /** Per-request timeout for API calls and the download. @defaultValue http.DEFAULT_TIMEOUT_MS */
  timeoutMs?: number;
  /** Cap on the downloaded result. @defaultValue http.DEFAULT_MAX_DOWNLOAD_BYTES */
  maxDownloadBytes?: number;
};

const FLUX_PRO: ModelCapabilities = {
  input: "text",
  maxInputImages: 0,
  mask: false,
  sizes: { kind: "range", min: 256, max: 1440, step: 32 },
  imagesPerCall: 1,
  negativePrompt: "none",
  seed: true,
  outputFormats: ["jpeg", "png"],
};
/** Kontext edits (or draws from text) at about one megapixel, in any ratio from 3:7 to 7:3. */
const KONTEXT: ModelCapabilities = {
  ...FLUX_PRO,
  input: "both",
  maxInputImages: 1,
  sizes: {
    kind: "aspect",
    ratios: ["3:7", "9:21", "1:2", "9:16", "2:3", "3:4", "1:1", "4:3", "3:2", "16:9", "2:1", "21:9", "7:3"],
  },
};

export const CAPABILITIES: ProviderCapabilities = {
  models: {
    "flux-pro-1.1": FLUX_PRO,
    "flux-dev": FLUX_PRO,
    "flux-pro-1.1-ultra": {
      ...FLUX_PRO,
      sizes: {
        kind: "aspect",
        ratios: ["21:9", "16:9", "3:2", "4:3", "5:4", "1:1", "4:5", "3:4", "2:3", "9:16", "9:21"],
      },
    },
    "flux-kontext-pro": KONTEXT,
    "flux-kontext-max": { ...KONTEXT, maxInputImages: 4 },
  },
};

const MODELS = Object.keys(CAPABILITIES.models);

/** Statuses after which polling stops. */
const MODERATED = new Set(["Request Moderated", "Content Moderated"]);
const FAILED = new Set(["Error", "Failed", "Task not found"]);

export type BflTask = { id: string; polling_url: string };
export type BflResult = {
  id?: string;
  status: string;
  result?: { sample?: string; seed?: number } | null;
  progress?: number | null;
  details?: unknown;
};

/** Size inputs as the model takes them: width/height, an aspect ratio, or none (Kontext follows its input). */
function sizeInput(req: GenerateRequest, caps: ModelCapabilities | undefined): Record<string, unknown> {
  const { width, height } = parseSize(req.size);
  if (!caps || caps.sizes.kind === "range") return { width, height };
  if (caps.sizes.kind !== "aspect" || (req.images?.length && req.sizeGiven === false)) return {};
  const ratio =
    matchAspectRatio(req.size, caps.sizes.ratios) ?? sizeToAspectRatio(req.size, caps.sizes.ratios);
  return { aspect_ratio: ratio };
}

/** The task body for one image: `input_image`, `input_image_2`… as base64 for Kontext edits. */
export function buildBody(req: GenerateRequest, model: string): Record<string, unknown> {
  const caps = capabilitiesFor(CAPABILITIES, model);
  const body: Record<string, unknown> = { prompt: req.prompt, ...sizeInput(req, caps), output_format: "png" };
  if (req.seed !== undefined) body.seed = req.seed;
  (req.images ?? []).forEach((img, i) => {
    body[i === 0 ? "input_image" : `input_image_${i + 1}`] = bytesToBase64(img.bytes);
  });
  return { ...body, ...req.params };
}

export function parseTask(value: unknown): BflTask {
  if (!isRecord(value) || typeof value.id !== "string" || typeof value.polling_url !== "string") {
    throw badResponse(PROVIDER, "submit answer without id and polling_url");
  }
  return value as BflTask;
}

function parseResult(value: unknown): BflResult {
  if (!isRecord(value) || typeof value.status !== "string")
    throw badResponse(PROVIDER, "poll answer without status");
  return value as BflResult;
}

/** A task that ended without an image: moderation is the request's fault, anything else worth another try. */
export function taskFailure(r: BflResult) {
  const details = {
    provider: PROVIDER,
    taskId: r.id,
    status: r.status,
    ...(r.details ? { reasons: r.details } : {}),
  };
  if (MODERATED.has(r.status)) {
    const why = r.details ? `${r.status}: ${JSON.stringify(r.details).slice(0, 300)}` : r.status;
    return contentPolicyError(PROVIDER, why, details);
  }
  return new ProviderError("transient", `${PROVIDER}: task ${r.status}`, {
    code: "provider_failed",
    details,
  });
}

/**
 * A delivery URL refused (403, an expired signature) or gone is a result we can no longer fetch, not a bad key:
 * a new attempt makes a new task with a fresh URL.
 */
function expiredSample(err: unknown, taskId: string): unknown {
  const code = err instanceof ProviderError ? err.code : undefined;
  if (code !== "provider_auth" && code !== "provider_output_missing") return err;
  return new ProviderError("transient", `${PROVIDER}: the signed result URL expired before it was fetched`, {
    code: "provider_output_expired",
    details: { provider: PROVIDER, taskId },
    cause: err,
  });
}

export function createBflProvider(opts: BflOptions): Provider {
  const base = trimBase(opts.baseUrl ?? "https://api.bfl.ai");
  const pollMs = opts.pollIntervalMs ?? 500;
  const auth = { "x-key": opts.apiKey, accept: "application/json" };
  const info: ProviderInfo = {
    name: PROVIDER,
    defaultModel: opts.defaultModel ?? "flux-pro-1.1",
    models: MODELS,
    supportsEdits: true,
    capabilities: CAPABILITIES,
    // BFL counts active tasks (24; 6 on Kontext Max), not requests per minute.
    limits: { concurrency: 6, rpm: 0 },
  };

  const call = (url: string, init: RequestInit, signal: AbortSignal) =>
    fetchJson(PROVIDER, url, init, { signal, timeoutMs: opts.timeoutMs });

  async function submit(req: GenerateRequest, model: string, signal: AbortSignal): Promise<BflTask> {
    const init = {
      method: "POST",
      headers: { ...auth, "content-type": "application/json" },
      body: JSON.stringify(buildBody(req, model)),
    };
    return parseTask(await call(`${base}/v1/${encodeURIComponent(model)}`, init, signal));
  }

  async function settle(task: BflTask, ctx: GenerateContext, signal: AbortSignal): Promise<BflResult> {
    const report = progressReporter(ctx);
    for (;;) {
      const r = parseResult(await call(task.polling_url, { headers: auth }, signal));
      if (r.status === "Ready" || MODERATED.has(r.status) || FAILED.has(r.status)) return r;
      const p = typeof r.progress === "number" ? r.progress : 0;
      report(p <= 1 ? p * 100 : p, r.status.toLowerCase());
      await sleep(pollMs, signal);
    }
  }

  async function one(req: GenerateRequest, model: string, ctx: GenerateContext, signal: AbortSignal) {
    const task = await submit(req, model, signal);
    const r = await settle(task, ctx, signal);
    if (r.status !== "Ready") throw taskFailure({ ...r, id: r.id ?? task.id });
    const sample = r.result?.sample;
    if (typeof sample !== "string")
      throw badResponse(PROVIDER, "Ready without result.sample", { taskId: task.id });
    // The signed URL expires in minutes: fetch it now, without our key (it is another host).
    const img = await downloadImage(sample, {
      signal,
      provider: PROVIDER,
      timeoutMs: opts.timeoutMs,
      maxBytes: opts.maxDownloadBytes,
    }).catch((err: unknown) => {
      throw expiredSample(err, task.id);
    });
    const seed = typeof r.result?.seed === "number" ? r.result.seed : req.seed;
    return seed === undefined ? img : { ...img, seed };
  }

  async function generate(req: GenerateRequest, ctx: GenerateContext): Promise<GeneratedImage[]> {
    const model = req.model ?? info.defaultModel;
    const n = Math.max(1, req.n);
    return allOrAbort(n, ctx.signal, (i, signal) => {
      const seeded = req.seed === undefined || n === 1 ? req : { ...req, seed: req.seed + i };
      return one(seeded, model, n === 1 ? ctx : { signal }, signal);
    });
  }

  return { info, generate, requestCost: (req) => Math.max(1, req.n) };
}
