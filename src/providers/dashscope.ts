/**
 * Alibaba DashScope multimodal generation (PROVIDERS.md "Alibaba DashScope"): Qwen image edit takes the input
 * image and the instruction as one chat message and answers with image URLs to download. Its error codes
 * (`DataInspectionFailed`, `Throttling.*`, `Arrearage`) are classified by the shared rules in http.ts.
 */
import { UnrecoverableError } from "../queue/errors";
import {
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
const MODELS = ["qwen-image-edit", "qwen-image-edit-plus"];

export type DashscopeOptions = {
  apiKey: string;
  /** @defaultValue "https://dashscope-intl.aliyuncs.com" (mainland China: https://dashscope.aliyuncs.com) */
  baseUrl?: string;
  /** Per-request timeout for the call and downloads. @defaultValue http.DEFAULT_TIMEOUT_MS */
  timeoutMs?: number;
  /** Cap on each downloaded output. @defaultValue http.DEFAULT_MAX_DOWNLOAD_BYTES */
  maxDownloadBytes?: number;
};

function invalid(message: string): UnrecoverableError {
  return new UnrecoverableError(`${PROVIDER}: ${message}`, {
    code: "provider_invalid_request",
    refundable: true,
  });
}

export function buildBody(req: GenerateRequest, model: string): Record<string, unknown> {
  const images = req.images ?? [];
  if (images.length === 0) throw invalid(`${model} edits an image: send at least one input image`);
  if (req.mask) throw invalid(`${model} does not take a mask; describe the edit in the prompt`);
  const { width, height } = parseSize(req.size);
  const parameters: Record<string, unknown> = { n: req.n, size: `${width}*${height}`, watermark: false };
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
    limits: { concurrency: 2, rpm: 60 },
  };

  async function call(req: GenerateRequest, signal: AbortSignal): Promise<unknown> {
    const body = buildBody(req, req.model ?? info.defaultModel);
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

  async function generate(req: GenerateRequest, ctx: GenerateContext): Promise<GeneratedImage[]> {
    const urls = imageUrls(await call(req, ctx.signal));
    if (urls.length === 0) throw badResponse(PROVIDER, "response without output images");
    const dl = {
      signal: ctx.signal,
      provider: PROVIDER,
      timeoutMs: opts.timeoutMs,
      maxBytes: opts.maxDownloadBytes,
    };
    const images = await Promise.all(urls.map((url) => downloadImage(url, dl)));
    const seed = req.seed;
    return seed === undefined ? images : images.map((img) => ({ ...img, seed }));
  }

  return { info, generate };
}
