/**
 * Alibaba DashScope multimodal generation (docs/providers.md "Alibaba DashScope"): Qwen image edit takes the
 * input image and the instruction as one chat message and answers with image URLs to download. Its error codes
 * (`DataInspectionFailed`, `Throttling.*`, `Arrearage`) are classified by the shared rules in http.ts.
 *
 * `qwen-image-edit` takes neither `size` (its output follows the input image) nor `n` (one image per call),
 * so n images are n calls; the plus and max series take `size` (512–2048 per side) and `n` (1–6).
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
  downloadImage,
  httpError,
  parseErrorBody,
  parseSize,
  providerFetch,
  readText,
  toDataUrl,
} from "./http";
import { isRecord, trimBase } from "./remote";
import type { GenerateContext, GeneratedImage, GenerateRequest, Provider, ProviderInfo } from "./types";

const PROVIDER = "dashscope";
const PATH = "/api/v1/services/aigc/multimodal-generation/generation";
const QWEN_EDIT: ModelCapabilities = {
  input: "edit",
  maxInputImages: 1,
  mask: false,
  sizes: { kind: "input" },
  imagesPerCall: 1,
  negativePrompt: "native",
  seed: true,
  outputFormats: ["png"],
};
const QWEN_EDIT_PLUS: ModelCapabilities = {
  ...QWEN_EDIT,
  maxInputImages: 3,
  sizes: { kind: "range", min: 512, max: 2048, step: 1 },
  imagesPerCall: 6,
};

export const CAPABILITIES: ProviderCapabilities = {
  models: {
    "qwen-image-edit": QWEN_EDIT,
    "qwen-image-edit-plus": QWEN_EDIT_PLUS,
    "qwen-image-edit-max": QWEN_EDIT_PLUS,
  },
};

const MODELS = Object.keys(CAPABILITIES.models);

export type DashscopeOptions = {
  apiKey: string;
  /** @defaultValue "https://dashscope-intl.aliyuncs.com" (mainland China: https://dashscope.aliyuncs.com) */
  baseUrl?: string;
  /** Per-request timeout for the call and downloads. @defaultValue http.DEFAULT_TIMEOUT_MS */
  timeoutMs?: number;
  /** Cap on each downloaded output. @defaultValue http.DEFAULT_MAX_DOWNLOAD_BYTES */
  maxDownloadBytes?: number;
};

function invalid(message: string): ProviderError {
  return new ProviderError("invalid_request", `${PROVIDER}: ${message}`);
}

/** The request body for `count` images; `size` and `n` only for models that take them. */
export function buildBody(req: GenerateRequest, model: string, count = req.n): Record<string, unknown> {
  const images = req.images ?? [];
  if (images.length === 0) throw invalid(`${model} edits an image: send at least one input image`);
  if (req.mask) throw invalid(`${model} does not take a mask; describe the edit in the prompt`);
  const caps = capabilitiesFor(CAPABILITIES, model);
  const parameters: Record<string, unknown> = { watermark: false };
  if (!caps || caps.imagesPerCall > 1) parameters.n = count;
  // Unset, the plus/max series keep the input's aspect ratio too; a model outside the table gets the size.
  const takesSize = !caps || caps.sizes.kind === "range";
  if (takesSize && req.sizeGiven !== false) {
    const { width, height } = parseSize(req.size);
    parameters.size = `${width}*${height}`;
  }
  if (req.negativePrompt) parameters.negative_prompt = req.negativePrompt;
  if (req.seed !== undefined) parameters.seed = req.seed;
  const content = [...images.map((img) => ({ image: toDataUrl(img) })), { text: req.prompt }];
  return {
    model,
    input: { messages: [{ role: "user", content }] },
    parameters: { ...parameters, ...req.params },
  };
}

/** Every `content[].image` URL across the choices. */
export function imageUrls(body: unknown): string[] {
  const output = isRecord(body) ? body.output : undefined;
  const choices = isRecord(output) && Array.isArray(output.choices) ? output.choices : [];
  return choices.flatMap((choice) => {
    const message = isRecord(choice) ? choice.message : undefined;
    const content = isRecord(message) && Array.isArray(message.content) ? message.content : [];
    return content.flatMap((part) => (isRecord(part) && typeof part.image === "string" ? [part.image] : []));
  });
}

export function createDashscopeProvider(opts: DashscopeOptions): Provider {
  const base = trimBase(opts.baseUrl ?? "https://dashscope-intl.aliyuncs.com");
  const info: ProviderInfo = {
    name: PROVIDER,
    defaultModel: MODELS[0]!,
    models: MODELS,
    supportsEdits: true,
    capabilities: CAPABILITIES,
    limits: { concurrency: 2, rpm: 60 },
  };

  async function call(req: GenerateRequest, count: number, signal: AbortSignal): Promise<unknown> {
    const body = buildBody(req, req.model ?? info.defaultModel, count);
    const init = {
      method: "POST",
      headers: { authorization: `Bearer ${opts.apiKey}`, "content-type": "application/json" },
      body: JSON.stringify(body),
    };
    const res = await providerFetch(PROVIDER, `${base}${PATH}`, init, { signal, timeoutMs: opts.timeoutMs });
    const text = await readText(PROVIDER, res, signal);
    const parsed = parseErrorBody(text);
    // An error code in a 200 body is still an error (the shared rules map it, e.g. DataInspectionFailed).
    const coded = isRecord(parsed.json) && typeof parsed.json.code === "string" && parsed.json.code !== "";
    if (!res.ok || (coded && imageUrls(parsed.json).length === 0)) {
      throw httpError(PROVIDER, res.ok ? 400 : res.status, res.headers, text);
    }
    if (parsed.json === undefined) throw badResponse(PROVIDER, `expected JSON, got: ${text.slice(0, 200)}`);
    return parsed.json;
  }

  async function one(req: GenerateRequest, count: number, signal: AbortSignal): Promise<GeneratedImage[]> {
    const urls = imageUrls(await call(req, count, signal));
    if (urls.length === 0) throw badResponse(PROVIDER, "response without output images");
    const dl = { signal, provider: PROVIDER, timeoutMs: opts.timeoutMs, maxBytes: opts.maxDownloadBytes };
    const images = await Promise.all(urls.map((url) => downloadImage(url, dl)));
    const seed = req.seed;
    return seed === undefined ? images : images.map((img) => ({ ...img, seed }));
  }

  const callCounts = (req: GenerateRequest) => {
    const caps = capabilitiesFor(CAPABILITIES, req.model ?? info.defaultModel);
    return caps ? imagesPerCallSplit(req.n, caps.imagesPerCall) : [req.n];
  };

  async function generate(req: GenerateRequest, ctx: GenerateContext): Promise<GeneratedImage[]> {
    const counts = callCounts(req);
    // One image per call: seeds step by one so the images differ yet stay reproducible.
    const per = await allOrAbort(counts.length, ctx.signal, (i, signal) => {
      const seeded = req.seed === undefined || counts.length === 1 ? req : { ...req, seed: req.seed + i };
      return one(seeded, counts[i]!, signal);
    });
    return per.flat();
  }

  return { info, generate, requestCost: (req) => callCounts(req).length };
}
