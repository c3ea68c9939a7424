/**
 * AUTOMATIC1111 / Forge web UI API (docs/providers.md "AUTOMATIC1111 / Forge"). `txt2img`/`img2img` block until the
 * images are ready, so progress comes from polling `/sdapi/v1/progress` alongside; an abort sends
 * `/sdapi/v1/interrupt` so the GPU stops working on an image nobody will take.
 */
import type { ProviderCapabilities } from "./capabilities";
import { badResponse, bytesToBase64, imageFromBase64, parseSize, sleep } from "./http";
import { fetchJson, isRecord, progressReporter, sendCancel, trimBase } from "./remote";
import type { GenerateContext, GeneratedImage, GenerateRequest, Provider, ProviderInfo } from "./types";

const PROVIDER = "automatic1111";
/** Means "whatever checkpoint the server has loaded": no `override_settings` is sent. */
const LOADED_MODEL = "default";

export type Automatic1111Options = {
  url: string;
  auth?: { username: string; password: string };
  /** Delay between `/sdapi/v1/progress` polls while a generation blocks. @defaultValue 1000 */
  progressIntervalMs?: number;
  /** Timeout of the blocking generation call (the job's own timeout still applies). @defaultValue 600000 */
  timeoutMs?: number;
};

/** Every checkpoint on the box: txt2img, or img2img (with an optional inpainting mask) from one input image. */
export const CAPABILITIES: ProviderCapabilities = {
  models: {},
  anyModel: {
    input: "both",
    maxInputImages: 1,
    mask: true,
    sizes: { kind: "range", min: 64, max: 2048, step: 8 },
    imagesPerCall: 8,
    negativePrompt: "native",
    seed: true,
    outputFormats: ["png"],
  },
};

type A1111Response = { images: string[]; info?: string };

export function buildBody(req: GenerateRequest): { path: string; body: Record<string, unknown> } {
  const { width, height } = parseSize(req.size);
  const body: Record<string, unknown> = {
    prompt: req.prompt,
    negative_prompt: req.negativePrompt ?? "",
    seed: req.seed ?? -1,
    steps: 20,
    cfg_scale: 7,
    width,
    height,
    sampler_name: "Euler a",
    batch_size: req.n,
    n_iter: 1,
  };
  if (req.model && req.model !== LOADED_MODEL) body.override_settings = { sd_model_checkpoint: req.model };
  const images = req.images ?? [];
  if (images.length === 0) return { path: "/sdapi/v1/txt2img", body: { ...body, ...req.params } };
  body.init_images = images.map((img) => bytesToBase64(img.bytes));
  body.denoising_strength = 0.75;
  if (req.mask) body.mask = bytesToBase64(req.mask.bytes);
  return { path: "/sdapi/v1/img2img", body: { ...body, ...req.params } };
}

type Info = { all_seeds?: unknown; seed?: unknown; index_of_first_image?: unknown };

function parseInfo(info: string | undefined): Info {
  try {
    const v: unknown = JSON.parse(info ?? "{}");
    return isRecord(v) ? v : {};
  } catch {
    return {};
  }
}

/**
 * Decodes the batch. A grid image may lead the list (`index_of_first_image`) and extensions such as ControlNet
 * append their own images after it, so only `n` images from the first real one are taken.
 */
export function decodeImages(res: A1111Response, n: number): GeneratedImage[] {
  const info = parseInfo(res.info);
  const first = typeof info.index_of_first_image === "number" ? info.index_of_first_image : 0;
  const seeds = Array.isArray(info.all_seeds) ? info.all_seeds : [info.seed];
  if (res.images.length <= first) throw badResponse(PROVIDER, "response without images");
  return res.images.slice(first, first + n).map((b64, i) => {
    const img: GeneratedImage = imageFromBase64(PROVIDER, b64, "image/png");
    const seed = seeds[i];
    return typeof seed === "number" ? { ...img, seed } : img;
  });
}

function parseResponse(value: unknown): A1111Response {
  if (!isRecord(value) || !Array.isArray(value.images)) {
    throw badResponse(PROVIDER, "response without images");
  }
  const images = value.images.filter((i): i is string => typeof i === "string");
  return { images, info: typeof value.info === "string" ? value.info : undefined } as A1111Response;
}

export function createAutomatic1111Provider(opts: Automatic1111Options): Provider {
  const base = trimBase(opts.url);
  const progressMs = opts.progressIntervalMs ?? 1000;
  const headers: Record<string, string> = {};
  if (opts.auth) {
    const token = Buffer.from(`${opts.auth.username}:${opts.auth.password}`).toString("base64");
    headers.authorization = `Basic ${token}`;
  }
  const info: ProviderInfo = {
    name: PROVIDER,
    defaultModel: LOADED_MODEL,
    models: [LOADED_MODEL],
    supportsEdits: true,
    capabilities: CAPABILITIES,
    limits: { concurrency: 1, rpm: 0 },
  };

  /** 0..1 while something generates; undefined when idle or when the poll failed (progress is best effort). */
  async function readProgress(signal: AbortSignal): Promise<number | undefined> {
    const url = `${base}/sdapi/v1/progress?skip_current_image=true`;
    const p = await fetchJson(PROVIDER, url, { headers }, { signal, timeoutMs: progressMs * 5 }).catch(
      () => {},
    );
    return isRecord(p) && typeof p.progress === "number" && p.progress > 0 ? p.progress : undefined;
  }

  /** Polls progress until `stop` fires; its failures never affect the generation itself. */
  async function watchProgress(ctx: GenerateContext, stop: AbortSignal): Promise<void> {
    const report = progressReporter(ctx);
    const signal = AbortSignal.any([stop, ctx.signal]);
    while (!signal.aborted) {
      await sleep(progressMs, signal).catch(() => {});
      if (signal.aborted) return;
      const progress = await readProgress(signal);
      if (progress !== undefined) report(progress * 100, "generating");
    }
  }

  async function generate(req: GenerateRequest, ctx: GenerateContext): Promise<GeneratedImage[]> {
    const { path, body } = buildBody(req);
    const init = {
      method: "POST",
      headers: { ...headers, "content-type": "application/json" },
      body: JSON.stringify(body),
    };
    const done = new AbortController();
    const watcher = ctx.onProgress ? watchProgress(ctx, done.signal) : Promise.resolve();
    try {
      const raw = await fetchJson(PROVIDER, `${base}${path}`, init, {
        signal: ctx.signal,
        timeoutMs: opts.timeoutMs ?? 600_000,
      });
      return decodeImages(parseResponse(raw), req.n);
    } catch (err) {
      // The API has no per-request id: interrupt stops whatever runs, which is ours as long as Easel is the
      // box's only client (the limiter keeps one call in flight).
      if (ctx.signal.aborted) {
        await sendCancel(PROVIDER, `${base}/sdapi/v1/interrupt`, { method: "POST", headers });
      }
      throw err;
    } finally {
      done.abort();
      await watcher;
    }
  }

  return { info, generate };
}
