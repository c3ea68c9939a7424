/**
 * OpenAI Images (PROVIDERS.md "OpenAI Images"): `POST /images/generations` (JSON) and `POST /images/edits`
 * (multipart), for OpenAI itself and OpenAI-compatible servers (sd-server, LocalAI, gateways) via `baseUrl`.
 *
 * - Sizes are snapped to the model's allowed sizes by aspect ratio (the image pipeline resizes afterwards);
 *   unknown models (compatible servers) get the requested size as is.
 * - OpenAI has no negative prompt: it is appended to the prompt as "Avoid: …".
 * - dall-e-3 accepts only n=1, so n images become n calls.
 * - `req.params` is passed through as extra body fields (quality, output_format, background, moderation…).
 */
import {
  badResponse,
  contentPolicyError,
  downloadImage,
  type EnsureOkOptions,
  ensureOk,
  imageFromBase64,
  parseSize,
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

const MODELS = ["gpt-image-1", "gpt-image-1-mini", "gpt-image-1.5", "dall-e-3", "dall-e-2"];

const SIZES: Record<string, string[]> = {
  gpt: ["1024x1024", "1536x1024", "1024x1536"],
  "dall-e-3": ["1024x1024", "1792x1024", "1024x1792"],
  "dall-e-2": ["256x256", "512x512", "1024x1024"],
};

function sizesFor(model: string): string[] | undefined {
  if (model.startsWith("gpt-image")) return SIZES.gpt;
  return SIZES[model];
}

/** The allowed size closest in aspect ratio (then in area) to the request; `auto` and exact matches pass. */
export function snapSize(model: string, size: string): string {
  const allowed = sizesFor(model);
  if (!allowed || size === "auto" || allowed.includes(size)) return size;
  const want = parseSize(size);
  const score = (s: string) => {
    const { width, height } = parseSize(s);
    const ratio = Math.abs(Math.log(width / height) - Math.log(want.width / want.height));
    const area = Math.abs(Math.log((width * height) / (want.width * want.height)));
    return ratio * 10 + area;
  };
  return allowed.reduce((best, s) => (score(s) < score(best) ? s : best));
}

function promptText(req: GenerateRequest): string {
  return req.negativePrompt ? `${req.prompt}\n\nAvoid: ${req.negativePrompt}` : req.prompt;
}

/** Body fields shared by generations and edits; params come first so our core fields cannot be overridden. */
function fields(req: GenerateRequest, model: string, n: number): Record<string, unknown> {
  const body: Record<string, unknown> = { size: snapSize(model, req.size), ...req.params };
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

  async function generate(req: GenerateRequest, ctx: GenerateContext): Promise<GeneratedImage[]> {
    const model = req.model ?? info.defaultModel;
    const n = Math.max(1, req.n);
    const calls = model === "dall-e-3" ? Array.from({ length: n }, () => 1) : [n];
    const out: GeneratedImage[] = [];
    for (const count of calls) {
      out.push(...(await toImages(await call(req, model, count, ctx.signal), req, ctx.signal)));
    }
    return out;
  }

  return { info, generate, requestCost: (req) => (req.model === "dall-e-3" ? Math.max(1, req.n) : 1) };
}
