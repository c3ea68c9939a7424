/**
 * OpenAI Images (docs/providers.md "OpenAI Images"): `POST /images/generations` (JSON) and `POST /images/edits`
 * (multipart), for OpenAI itself and OpenAI-compatible servers (sd-server, LocalAI, gateways) via `baseUrl`.
 *
 * - Sizes are sent as requested: each model's fixed list (CAPABILITIES) is enforced at submit, and models of
 *   compatible servers take their own. An edit that names no size asks GPT image models for `auto`, which
 *   keeps the input's shape.
 * - OpenAI has no negative prompt: it is appended to the prompt as "Avoid: …". No model takes a seed.
 * - dall-e-3 accepts only n=1, so n images become n calls (and n above a model's per-call maximum, several).
 * - `req.params` is passed through as extra body fields (quality, output_format, background, moderation…).
 */
import {
  capabilitiesFor,
  imagesPerCallSplit,
  type ModelCapabilities,
  type ProviderCapabilities,
} from "./capabilities";
import {
  badResponse,
  contentPolicyError,
  downloadImage,
  type EnsureOkOptions,
  ensureOk,
  imageFromBase64,
  providerFetch,
  readJson,
  toBlob,
} from "./http";
import type {
  GenerateContext,
  GeneratedImage,
  GenerateRequest,
  InputImage,
  Provider,
  ProviderInfo,
} from "./types";

const PROVIDER = "openai";

export type OpenAIOptions = {
  apiKey: string;
  /** @defaultValue "https://api.openai.com/v1" (env OPENAI_BASE_URL) */
  baseUrl?: string;
  /** @defaultValue "gpt-image-1" */
  defaultModel?: string;
  /** Per-request timeout. @defaultValue http.DEFAULT_TIMEOUT_MS */
  timeoutMs?: number;
  /** Cap on downloaded `url` outputs. @defaultValue http.DEFAULT_MAX_DOWNLOAD_BYTES */
  maxDownloadBytes?: number;
};

const GPT_IMAGE: ModelCapabilities = {
  input: "both",
  maxInputImages: 16,
  mask: true,
  sizes: { kind: "fixed", sizes: ["1024x1024", "1536x1024", "1024x1536"] },
  imagesPerCall: 10,
  negativePrompt: "in-prompt",
  seed: false,
  outputFormats: ["png", "jpeg", "webp"],
};

export const CAPABILITIES: ProviderCapabilities = {
  models: {
    "gpt-image-1": GPT_IMAGE,
    "gpt-image-1-mini": GPT_IMAGE,
    "gpt-image-1.5": GPT_IMAGE,
    "dall-e-3": {
      ...GPT_IMAGE,
      input: "text",
      maxInputImages: 0,
      mask: false,
      sizes: { kind: "fixed", sizes: ["1024x1024", "1792x1024", "1024x1792"] },
      imagesPerCall: 1,
      outputFormats: ["png"],
    },
    // dall-e-2 edits one square PNG, with an optional mask.
    "dall-e-2": {
      ...GPT_IMAGE,
      maxInputImages: 1,
      sizes: { kind: "fixed", sizes: ["256x256", "512x512", "1024x1024"] },
      outputFormats: ["png"],
    },
  },
};

const MODELS = Object.keys(CAPABILITIES.models);

/** `auto` for a GPT image edit that named no size (keeps the input's shape); otherwise the size asked. */
function sizeField(req: GenerateRequest, model: string): string {
  const edit = (req.images?.length ?? 0) > 0;
  return edit && req.sizeGiven === false && model.startsWith("gpt-image") ? "auto" : req.size;
}

function promptText(req: GenerateRequest): string {
  return req.negativePrompt ? `${req.prompt}\n\nAvoid: ${req.negativePrompt}` : req.prompt;
}

/** Body fields shared by generations and edits; params come first so our core fields cannot be overridden. */
function fields(req: GenerateRequest, model: string, n: number): Record<string, unknown> {
  const body: Record<string, unknown> = { size: sizeField(req, model), ...req.params };
  body.model = model;
  body.prompt = promptText(req);
  body.n = n;
  // GPT image models always answer base64 and reject response_format; dall-e defaults to expiring URLs.
  if (model.startsWith("dall-e") && body.response_format === undefined) body.response_format = "b64_json";
  return body;
}

const EXT: Record<string, string> = { "image/png": "png", "image/jpeg": "jpg", "image/webp": "webp" };

function fileName(image: InputImage, base: string): string {
  return `${base}.${EXT[image.mime] ?? "png"}`;
}

export function editForm(req: GenerateRequest, model: string, n: number): FormData {
  const form = new FormData();
  for (const [k, v] of Object.entries(fields(req, model, n))) {
    if (v !== undefined && v !== null) form.append(k, typeof v === "string" ? v : JSON.stringify(v));
  }
  const images = req.images ?? [];
  // One image goes as `image` (every server understands it); several as repeated `image[]`.
  const key = images.length > 1 ? "image[]" : "image";
  images.forEach((img, i) => {
    form.append(key, toBlob(img), fileName(img, `image-${i}`));
  });
  if (req.mask) form.append("mask", toBlob(req.mask), fileName(req.mask, "mask"));
  return form;
}

/**
 * OpenAI's safety rejections are sometimes a plain 400 whose only tell is the message; the coded
 * ones (`content_policy_violation`, `moderation_blocked`) are handled by the shared classifier.
 */
const classify: EnsureOkOptions["classify"] = (status, _headers, _text, body) => {
  if (status === 400 && /safety system|content policy/i.test(body.message ?? "")) {
    return contentPolicyError(PROVIDER, body.message ?? "rejected", { status });
  }
  return undefined;
};

type ImagesResponse = { data?: Array<{ b64_json?: string; url?: string; revised_prompt?: string }> };

export function createOpenAIProvider(opts: OpenAIOptions): Provider {
  const base = (opts.baseUrl ?? "https://api.openai.com/v1").replace(/\/+$/, "");
  const info: ProviderInfo = {
    name: PROVIDER,
    defaultModel: opts.defaultModel ?? "gpt-image-1",
    models: MODELS,
    supportsEdits: true,
    capabilities: CAPABILITIES,
    limits: { concurrency: 4, rpm: 50 },
  };

  async function call(
    req: GenerateRequest,
    model: string,
    n: number,
    signal: AbortSignal,
  ): Promise<ImagesResponse> {
    const edit = (req.images?.length ?? 0) > 0;
    const headers: Record<string, string> = { authorization: `Bearer ${opts.apiKey}` };
    let body: FormData | string;
    if (edit) body = editForm(req, model, n);
    else {
      headers["content-type"] = "application/json";
      body = JSON.stringify(fields(req, model, n));
    }
    const url = `${base}/images/${edit ? "edits" : "generations"}`;
    const res = await providerFetch(
      PROVIDER,
      url,
      { method: "POST", headers, body },
      {
        signal,
        ...(opts.timeoutMs !== undefined && { timeoutMs: opts.timeoutMs }),
      },
    );
    await ensureOk(PROVIDER, res, { signal, classify });
    return (await readJson(PROVIDER, res, signal)) as ImagesResponse;
  }

  async function toImages(
    resp: ImagesResponse,
    req: GenerateRequest,
    signal: AbortSignal,
  ): Promise<GeneratedImage[]> {
    const data = Array.isArray(resp?.data) ? resp.data : [];
    if (data.length === 0) throw badResponse(PROVIDER, "response without data[]");
    const format = req.params?.output_format;
    const hint = typeof format === "string" ? `image/${format === "jpg" ? "jpeg" : format}` : undefined;
    return Promise.all(
      data.map(async (d) => {
        let img: { bytes: Uint8Array; mime: string };
        if (typeof d.b64_json === "string") img = imageFromBase64(PROVIDER, d.b64_json, hint);
        else if (typeof d.url === "string") {
          img = await downloadImage(d.url, {
            signal,
            provider: PROVIDER,
            ...(opts.maxDownloadBytes !== undefined && { maxBytes: opts.maxDownloadBytes }),
            ...(opts.timeoutMs !== undefined && { timeoutMs: opts.timeoutMs }),
          });
        } else throw badResponse(PROVIDER, "data item without b64_json or url");
        return d.revised_prompt ? { ...img, revisedPrompt: d.revised_prompt } : img;
      }),
    );
  }

  /** Images per call: dall-e-3 makes one, the others up to 10; compatible servers' models get `n` at once. */
  const callCounts = (req: GenerateRequest) => {
    const caps = capabilitiesFor(CAPABILITIES, req.model ?? info.defaultModel);
    return imagesPerCallSplit(req.n, caps?.imagesPerCall ?? req.n);
  };

  async function generate(req: GenerateRequest, ctx: GenerateContext): Promise<GeneratedImage[]> {
    const model = req.model ?? info.defaultModel;
    const calls = callCounts(req);
    const out: GeneratedImage[] = [];
    for (const count of calls) {
      out.push(...(await toImages(await call(req, model, count, ctx.signal), req, ctx.signal)));
    }
    return out;
  }

  return { info, generate, requestCost: (req) => callCounts(req).length };
}
