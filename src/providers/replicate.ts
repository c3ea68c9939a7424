/**
 * Replicate predictions (docs/providers.md "Replicate"): create with `Prefer: wait`, poll `urls.get` when the
 * model is slower than the wait, download the output URLs, cancel with `urls.cancel` when the job is aborted.
 *
 * Each FLUX model takes its own inputs (CAPABILITIES): schnell/dev an `aspect_ratio` and `num_outputs`,
 * 1.1 pro `aspect_ratio: "custom"` with width/height, Kontext an `input_image`; the ones that make one image
 * per prediction get one prediction per image. A model not in the table gets every input as before.
 */
import {
  capabilitiesFor,
  imagesPerCallSplit,
  type ModelCapabilities,
  matchAspectRatio,
  type ProviderCapabilities,
} from "./capabilities";
import { ProviderError } from "./errors";
import {
  allOrAbort,
  badResponse,
  contentPolicyError,
  downloadImage,
  parseSize,
  sizeToAspectRatio,
  sleep,
  toDataUrl,
} from "./http";
import { fetchJson, isRecord, percentFromLogs, progressReporter, sendCancel, trimBase } from "./remote";
import type { GenerateContext, GeneratedImage, GenerateRequest, Provider, ProviderInfo } from "./types";

const PROVIDER = "replicate";

export type ReplicateOptions = {
  apiToken: string;
  /** @defaultValue "https://api.replicate.com/v1" */
  baseUrl?: string;
  /** Delay between status polls once the create call returned unfinished. @defaultValue 1000 */
  pollIntervalMs?: number;
  /** `Prefer: wait=N` on create (1–60 s; 0 sends no header and always polls). @defaultValue 60 */
  waitSeconds?: number;
  /**
   * `Cancel-After` deadline on create ("90s", "10m"): Replicate cancels the prediction itself when it runs longer.
   * The only cancel that reaches a prediction whose create call was aborted during `Prefer: wait` (we never got
   * its id). @defaultValue none
   */
  cancelAfter?: string;
  /** Per-request timeout for API calls and downloads; keep it above `waitSeconds`. @defaultValue http.DEFAULT_TIMEOUT_MS */
  timeoutMs?: number;
  /** Cap on each downloaded output. @defaultValue http.DEFAULT_MAX_DOWNLOAD_BYTES */
  maxDownloadBytes?: number;
};

export type Prediction = {
  id?: string;
  status: string;
  output?: unknown;
  error?: unknown;
  logs?: string;
  urls?: { get?: string; cancel?: string };
};

/** The ratios FLUX models on Replicate accept; models outside the table get width/height too. */
const ASPECT_RATIOS = ["1:1", "16:9", "21:9", "3:2", "2:3", "4:5", "5:4", "3:4", "4:3", "9:16", "9:21"];
const KONTEXT_RATIOS = [...ASPECT_RATIOS, "2:1", "1:2"];

const FLUX: ModelCapabilities = {
  input: "text",
  maxInputImages: 0,
  mask: false,
  sizes: { kind: "aspect", ratios: ASPECT_RATIOS },
  imagesPerCall: 4,
  negativePrompt: "none",
  seed: true,
  outputFormats: ["png", "jpg", "webp"],
};

export const CAPABILITIES: ProviderCapabilities = {
  models: {
    "black-forest-labs/flux-schnell": FLUX,
    // flux-dev's `image` is img2img: the prompt redraws the input (no mask).
    "black-forest-labs/flux-dev": { ...FLUX, input: "both", maxInputImages: 1 },
    "black-forest-labs/flux-1.1-pro": {
      ...FLUX,
      sizes: { kind: "range", min: 256, max: 1440, step: 32 },
      imagesPerCall: 1,
    },
    "black-forest-labs/flux-kontext-pro": {
      ...FLUX,
      input: "both",
      maxInputImages: 1,
      sizes: { kind: "aspect", ratios: KONTEXT_RATIOS },
      imagesPerCall: 1,
      outputFormats: ["png", "jpg"],
    },
  },
};

const MODELS = Object.keys(CAPABILITIES.models);
const TERMINAL = new Set(["succeeded", "failed", "canceled", "aborted"]);
const SAFETY_TEXT = /nsfw|sensitive|safety|content polic|inappropriate|flagged/i;

type Target = { url: string; version?: string };

/** `owner/name` → the model's own endpoint; `owner/name:version` or a bare version id → `/predictions`. */
export function predictionTarget(baseUrl: string, model: string): Target {
  if (/^[0-9a-f]{32,}$/i.test(model)) return { url: `${baseUrl}/predictions`, version: model };
  const m = /^([\w.-]+)\/([\w.-]+)(?::([0-9a-f]+))?$/i.exec(model);
  if (!m) {
    throw new ProviderError("invalid_request", `replicate: model "${model}" is not owner/name[:version]`);
  }
  if (m[3]) return { url: `${baseUrl}/predictions`, version: m[3] };
  return { url: `${baseUrl}/models/${m[1]}/${m[2]}/predictions` };
}

/** Size inputs as the model takes them; a model outside the table gets all of them. */
function sizeInput(req: GenerateRequest, caps: ModelCapabilities | undefined): Record<string, unknown> {
  const { width, height } = parseSize(req.size);
  if (!caps) return { aspect_ratio: sizeToAspectRatio(req.size, ASPECT_RATIOS), width, height };
  if (caps.sizes.kind === "range") return { aspect_ratio: "custom", width, height };
  if (caps.sizes.kind !== "aspect") return {};
  // Kontext keeps the input image's shape unless a size was asked for.
  if (req.images?.length && req.sizeGiven === false) return { aspect_ratio: "match_input_image" };
  return {
    aspect_ratio:
      matchAspectRatio(req.size, caps.sizes.ratios) ?? sizeToAspectRatio(req.size, caps.sizes.ratios),
  };
}

/** The prediction input for `count` images of `req` on `model`: only the inputs the model takes. */
export function buildInput(req: GenerateRequest, model: string, count = req.n): Record<string, unknown> {
  const caps = capabilitiesFor(CAPABILITIES, model);
  const input: Record<string, unknown> = {
    prompt: req.prompt,
    ...sizeInput(req, caps),
    output_format: "png",
  };
  if (!caps || caps.imagesPerCall > 1) input.num_outputs = count;
  if (req.negativePrompt && (!caps || caps.negativePrompt === "native")) {
    input.negative_prompt = req.negativePrompt;
  }
  if (req.seed !== undefined) input.seed = req.seed;
  const first = req.images?.[0];
  // Kontext models name their input `input_image`; most Cog image models call it `image`.
  if (first) input[model.includes("kontext") ? "input_image" : "image"] = toDataUrl(first);
  if (req.mask) input.mask = toDataUrl(req.mask);
  return { ...input, ...req.params };
}

/** Predictions one request needs: one per image on models that make one image per prediction. */
function predictionCounts(req: GenerateRequest, model: string): number[] {
  const caps = capabilitiesFor(CAPABILITIES, model);
  return caps ? imagesPerCallSplit(req.n, caps.imagesPerCall) : [req.n];
}

export function parsePrediction(value: unknown): Prediction {
  if (!isRecord(value) || typeof value.status !== "string") {
    throw badResponse(PROVIDER, "prediction without a status");
  }
  return value as Prediction;
}

/** `output` is one URL or a list of them; some models wrap them in an object. */
export function outputUrls(output: unknown): string[] {
  if (typeof output === "string") return [output];
  if (Array.isArray(output)) return output.flatMap(outputUrls);
  if (isRecord(output)) return Object.values(output).flatMap(outputUrls);
  return [];
}

function seedFromLogs(logs: string | undefined): number | undefined {
  const m = /seed[^\d\n]{0,12}(\d+)/i.exec(logs ?? "");
  return m ? Number(m[1]) : undefined;
}

/** A prediction that ended without output: safety, a remote cancel, or a model failure. */
export function predictionFailure(p: Prediction) {
  const text =
    typeof p.error === "string" ? p.error : p.error ? JSON.stringify(p.error) : `prediction ${p.status}`;
  const details = { provider: PROVIDER, predictionId: p.id, status: p.status };
  if (SAFETY_TEXT.test(text)) return contentPolicyError(PROVIDER, text, details);
  return new ProviderError("transient", `${PROVIDER}: prediction ${p.status}: ${text}`, {
    code: "provider_failed",
    details,
  });
}

export function createReplicateProvider(opts: ReplicateOptions): Provider {
  const base = trimBase(opts.baseUrl ?? "https://api.replicate.com/v1");
  const pollMs = opts.pollIntervalMs ?? 1000;
  const waitSeconds = Math.min(60, Math.max(0, Math.round(opts.waitSeconds ?? 60)));
  const auth = { authorization: `Bearer ${opts.apiToken}` };
  const info: ProviderInfo = {
    name: PROVIDER,
    defaultModel: MODELS[0]!,
    models: MODELS,
    supportsEdits: true,
    capabilities: CAPABILITIES,
    limits: { concurrency: 4, rpm: 600 },
  };

  const call = (url: string, init: RequestInit, signal: AbortSignal) =>
    fetchJson(PROVIDER, url, init, { signal, timeoutMs: opts.timeoutMs });

  async function create(
    req: GenerateRequest,
    model: string,
    count: number,
    signal: AbortSignal,
  ): Promise<Prediction> {
    const target = predictionTarget(base, model);
    const input = buildInput(req, model, count);
    const body = target.version ? { version: target.version, input } : { input };
    const headers: Record<string, string> = { ...auth, "content-type": "application/json" };
    if (waitSeconds > 0) headers.prefer = `wait=${waitSeconds}`;
    if (opts.cancelAfter) headers["cancel-after"] = opts.cancelAfter;
    return parsePrediction(
      await call(target.url, { method: "POST", headers, body: JSON.stringify(body) }, signal),
    );
  }

  async function settle(first: Prediction, ctx: GenerateContext): Promise<Prediction> {
    const report = progressReporter(ctx);
    let p = first;
    while (!TERMINAL.has(p.status)) {
      const pct = percentFromLogs(p.logs ?? "");
      report(pct ?? 0, p.status);
      await sleep(pollMs, ctx.signal);
      const url = p.urls?.get ?? (p.id ? `${base}/predictions/${p.id}` : undefined);
      if (!url) throw badResponse(PROVIDER, "unfinished prediction without urls.get");
      p = parsePrediction(await call(url, { headers: auth }, ctx.signal));
    }
    return p;
  }

  async function download(
    p: Prediction,
    req: GenerateRequest,
    signal: AbortSignal,
  ): Promise<GeneratedImage[]> {
    const urls = outputUrls(p.output);
    if (urls.length === 0) throw badResponse(PROVIDER, "prediction succeeded without output", { id: p.id });
    const seed = req.seed ?? seedFromLogs(p.logs);
    return Promise.all(
      urls.map(async (url) => {
        const img = await downloadImage(url, {
          signal,
          provider: PROVIDER,
          timeoutMs: opts.timeoutMs,
          maxBytes: opts.maxDownloadBytes,
        });
        return seed === undefined ? img : { ...img, seed };
      }),
    );
  }

  async function predict(
    req: GenerateRequest,
    model: string,
    count: number,
    ctx: GenerateContext,
  ): Promise<GeneratedImage[]> {
    const prediction = await create(req, model, count, ctx.signal);
    let done: Prediction;
    try {
      done = await settle(prediction, ctx);
    } catch (err) {
      const cancel = prediction.urls?.cancel;
      if (ctx.signal.aborted && cancel) await sendCancel(PROVIDER, cancel, { method: "POST", headers: auth });
      throw err;
    }
    if (done.status !== "succeeded") {
      ctx.signal.throwIfAborted();
      throw predictionFailure(done);
    }
    return download(done, req, ctx.signal);
  }

  async function generate(req: GenerateRequest, ctx: GenerateContext): Promise<GeneratedImage[]> {
    const model = req.model ?? info.defaultModel;
    const counts = predictionCounts(req, model);
    if (counts.length === 1) return predict(req, model, counts[0]!, ctx);
    // One image per prediction: seeds step by one so the images differ yet stay reproducible.
    const per = await allOrAbort(counts.length, ctx.signal, (i, signal) => {
      const one = req.seed === undefined ? req : { ...req, seed: req.seed + i };
      return predict(one, model, counts[i]!, { ...ctx, signal });
    });
    return per.flat();
  }

  return {
    info,
    generate,
    requestCost: (req) => predictionCounts(req, req.model ?? info.defaultModel).length,
  };
}
