/**
 * Hugging Face Inference (docs/providers.md "Hugging Face Inference"): `POST {base}/hf-inference/models/<model>`
 * with `{inputs, parameters}`; the answer is raw image bytes (JSON `{data:[{b64_json}]}` / `{output:[url]}`
 * tolerated). One image per call, so n images are n parallel calls with seeds `seed, seed+1, …`; the first
 * failure aborts the siblings. A 503 "model is loading" with `estimated_time` is `transient` with that wait (`retryAfterMs`).
 * HF has no safety error code: a 400/422 whose `error` text is a checker's refusal (NSFW, content policy,
 * flagged) is a `content_policy` rejection, so it is neither retried nor refunded like a bad parameter.
 */

import { capabilitiesFor, type ModelCapabilities, type ProviderCapabilities } from "./capabilities";
import { ProviderError } from "./errors";
import {
  allOrAbort,
  badResponse,
  contentPolicyError,
  downloadImage,
  type EnsureOkOptions,
  ensureOk,
  imageFromBase64,
  parseSize,
  providerFetch,
  readBytes,
  sniffMime,
} from "./http";
import type { GenerateContext, GeneratedImage, GenerateRequest, Provider, ProviderInfo } from "./types";

const PROVIDER = "huggingface";

export type HuggingFaceOptions = {
  token: string;
  /** @defaultValue "https://router.huggingface.co" */
  baseUrl?: string;
  /** @defaultValue "black-forest-labs/FLUX.1-dev" */
  defaultModel?: string;
  /** Send `x-wait-for-model: true` so a cold model answers when loaded instead of 503. @defaultValue false */
  waitForModel?: boolean;
  /** Per-request timeout. @defaultValue http.DEFAULT_TIMEOUT_MS */
  timeoutMs?: number;
  /** Cap on `{output:[url]}` downloads. @defaultValue http.DEFAULT_MAX_DOWNLOAD_BYTES */
  maxDownloadBytes?: number;
  /** Seed source when the request has none (tests pass a fixed one). @defaultValue random 31-bit */
  randomSeed?: () => number;
};

/** FLUX takes width/height in multiples of 16 and no negative prompt; SDXL multiples of 8 and one. */
const FLUX: ModelCapabilities = {
  input: "text",
  maxInputImages: 0,
  mask: false,
  sizes: { kind: "range", min: 256, max: 2048, step: 16 },
  imagesPerCall: 1,
  negativePrompt: "none",
  seed: true,
  outputFormats: ["jpeg"],
};

export const CAPABILITIES: ProviderCapabilities = {
  models: {
    "black-forest-labs/FLUX.1-dev": FLUX,
    "black-forest-labs/FLUX.1-schnell": FLUX,
    "stabilityai/stable-diffusion-xl-base-1.0": {
      ...FLUX,
      sizes: { kind: "range", min: 512, max: 2048, step: 8 },
      negativePrompt: "native",
    },
  },
};

const MODELS = Object.keys(CAPABILITIES.models);

/** A checker's refusal; narrow on purpose, so "`enable_safety_checker` must be a boolean" stays a 422. */
const SAFETY_TEXT = /nsfw|content[ _-]?polic|unsafe content|inappropriate content|flagged/i;

export const classify: EnsureOkOptions["classify"] = (status, _headers, _text, body) => {
  if ((status === 400 || status === 422) && body.message && SAFETY_TEXT.test(body.message)) {
    return contentPolicyError(PROVIDER, body.message.slice(0, 500), { status });
  }
  return undefined;
};

export function modelUrl(base: string, model: string): string {
  return `${base}/hf-inference/models/${model.split("/").map(encodeURIComponent).join("/")}`;
}

export function buildBody(req: GenerateRequest, seed: number, model?: string): Record<string, unknown> {
  const { width, height } = parseSize(req.size);
  const parameters: Record<string, unknown> = { width, height, seed, ...req.params };
  const caps = model === undefined ? undefined : capabilitiesFor(CAPABILITIES, model);
  if (req.negativePrompt && caps?.negativePrompt !== "none") parameters.negative_prompt = req.negativePrompt;
  return { inputs: req.prompt, parameters };
}

type JsonOutput = { data?: Array<{ b64_json?: string }>; output?: unknown[] };

/** Reads whichever of the tolerated answer shapes came back. */
async function readImage(res: Response, signal: AbortSignal, maxBytes?: number) {
  const bytes = await readBytes(PROVIDER, res, signal);
  const sniffed = sniffMime(bytes);
  if (sniffed) return { bytes, mime: sniffed };
  let json: JsonOutput;
  try {
    json = JSON.parse(new TextDecoder().decode(bytes)) as JsonOutput;
  } catch {
    throw badResponse(PROVIDER, `answer is neither an image nor JSON (${res.headers.get("content-type")})`);
  }
  const b64 = json?.data?.[0]?.b64_json;
  if (typeof b64 === "string") return imageFromBase64(PROVIDER, b64);
  const url = json?.output?.[0];
  if (typeof url === "string") {
    return downloadImage(url, { signal, provider: PROVIDER, ...(maxBytes !== undefined && { maxBytes }) });
  }
  throw badResponse(PROVIDER, "JSON answer without data[].b64_json or output[]");
}

export function createHuggingFaceProvider(opts: HuggingFaceOptions): Provider {
  const base = (opts.baseUrl ?? "https://router.huggingface.co").replace(/\/+$/, "");
  const randomSeed = opts.randomSeed ?? (() => Math.floor(Math.random() * 2 ** 31));
  const info: ProviderInfo = {
    name: PROVIDER,
    defaultModel: opts.defaultModel ?? MODELS[0]!,
    models: MODELS,
    capabilities: CAPABILITIES,
    supportsEdits: false,
    limits: { concurrency: 2, rpm: 60 },
  };

  async function one(req: GenerateRequest, model: string, seed: number, signal: AbortSignal) {
    const headers: Record<string, string> = {
      authorization: `Bearer ${opts.token}`,
      "content-type": "application/json",
      accept: "image/png, image/jpeg, image/webp, application/json",
    };
    if (opts.waitForModel) headers["x-wait-for-model"] = "true";
    const res = await providerFetch(
      PROVIDER,
      modelUrl(base, model),
      { method: "POST", headers, body: JSON.stringify(buildBody(req, seed, model)) },
      { signal, ...(opts.timeoutMs !== undefined && { timeoutMs: opts.timeoutMs }) },
    );
    await ensureOk(PROVIDER, res, { signal, classify });
    return { ...(await readImage(res, signal, opts.maxDownloadBytes)), seed };
  }

  async function generate(req: GenerateRequest, ctx: GenerateContext): Promise<GeneratedImage[]> {
    if (req.images?.length) {
      throw new ProviderError("unsupported", `${PROVIDER}: edits are not supported`);
    }
    const model = req.model ?? info.defaultModel;
    const seed = req.seed ?? randomSeed();
    const n = Math.max(1, req.n);
    return allOrAbort(n, ctx.signal, (i, signal) => one(req, model, (seed + i) % 2 ** 32, signal));
  }

  return { info, generate, requestCost: (req) => Math.max(1, req.n) };
}
